"""The unit prices a subscription's usage features are billed at over time (the
``subscription_prices`` table): written when subscribing and when ``sync`` moves a live
subscription to a changed price."""

from __future__ import annotations

from decimal import Decimal

from .db import Ledger


def add(ledger: Ledger, subscription_id: int, feature: str, unit_price: Decimal, effective_from: int) -> None:
    ledger.execute(
        "INSERT INTO subscription_prices (subscription_id, feature, unit_price, effective_from) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (subscription_id, feature, effective_from) DO UPDATE SET unit_price = excluded.unit_price",
        (subscription_id, feature, str(unit_price), int(effective_from)),
    )


def latest(ledger: Ledger, subscription_id: int) -> dict[str, int]:
    """feature -> when its current price took effect."""
    rows = ledger.all(
        "SELECT feature, MAX(effective_from) FROM subscription_prices WHERE subscription_id = ? GROUP BY feature",
        (subscription_id,),
    )
    return {r[0]: r[1] for r in rows}


def history(ledger: Ledger, subscription_id: int) -> dict[str, list[tuple[int, Decimal]]]:
    """feature -> [(effective_from, unit price)], oldest first."""
    out: dict[str, list[tuple[int, Decimal]]] = {}
    rows = ledger.all(
        "SELECT feature, unit_price, effective_from FROM subscription_prices WHERE subscription_id = ? "
        "ORDER BY feature, effective_from",
        (subscription_id,),
    )
    for r in rows:
        out.setdefault(r["feature"], []).append((r["effective_from"], Decimal(r["unit_price"])))
    return out

