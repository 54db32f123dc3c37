"""Append-only balance ledgers (credits per feature, wallet per customer): every change is a
row carrying the balance after it, so the balance is the last row's ``balance_after`` and
always equals the sum of the deltas."""

from __future__ import annotations

from dataclasses import dataclass

from .ledger import Ledger
from .ledger import balances as journal
from .ledger.balances import CREDITS, WALLET  # noqa: F401  (the two journals, by name)
from .rules import check_balance


@dataclass(frozen=True)
class Entry:
    """One row of a credit or wallet ledger."""

    id: int
    user_id: str
    unit: str  # the feature key (credits) or currency (wallet)
    delta: int
    balance_after: int
    reason: str
    created_at: int
    period_start: int | None = None
    idempotency_key: str | None = None
    expires_at: int | None = None  # credits granted with an expiry


def last(ledger: Ledger, table: str, user_id: str, unit: str | None = None):
    return journal.last_row(ledger, table, user_id, unit)


def balance(ledger: Ledger, table: str, user_id: str, unit: str | None = None) -> int:
    row = journal.last_row(ledger, table, user_id, unit)
    return 0 if row is None else row["balance_after"]


def append(
    ledger: Ledger,
    table: str,
    user_id: str,
    unit: str,
    delta: int,
    reason: str,
    now: int,
    *,
    period_start: int | None = None,
    idempotency_key: str | None = None,
    expires_at: int | None = None,
) -> int:
    """Add a row (inside the caller's transaction); returns the new balance."""
    before = balance(ledger, table, user_id, unit if table == CREDITS else None)
    what = f"{user_id!r}'s {unit} credits" if table == CREDITS else f"{user_id!r}'s wallet"
    after = check_balance(before + delta, what)
    journal.insert_row(ledger, table, user_id, unit, delta, after, reason, period_start, idempotency_key, now, expires_at)
    return after


def history(
    ledger: Ledger, table: str, user_id: str, unit: str | None = None, limit: int | None = None,
    since: int | None = None,
) -> list[Entry]:
    """Newest first."""
    return [
        Entry(
            id=r["id"],
            user_id=r["user_id"],
            unit=r["unit"],
            delta=r["delta"],
            balance_after=r["balance_after"],
            reason=r["reason"],
            created_at=r["created_at"],
            period_start=r["period_start"],
            idempotency_key=r["idempotency_key"],
            expires_at=r["expires_at"] if table == CREDITS else None,
        )
        for r in journal.history_rows(ledger, table, user_id, unit, limit, since)
    ]
