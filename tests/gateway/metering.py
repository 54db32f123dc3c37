"""Helpers for delivery and reconcile tests: customers in the sandbox and the ledger, many
events at once, and what the sandbox holds."""

from __future__ import annotations

import sqlite3
import time

from usagebill.gateway.sync import sync

DAY = 86400


def setup_stripe(billing, conn) -> None:
    sync(billing, conn)  # meters (and their ids in the ledger), products, prices


def customer(billing, conn, user_id: str, plan: str = "Pro", *, anchor: int | None = None,
             in_stripe: bool = True) -> str | None:
    """A customer in the sandbox (unless ``in_stripe`` is False) and in the ledger, on
    ``plan`` from ``anchor`` (default: now)."""
    stripe_id = None
    if in_stripe:
        stripe_id = conn.client.v1.customers.create(params={"name": user_id}).id
    billing.customers.add(user_id, stripe_customer_id=stripe_id)
    billing.subscriptions.start(user_id, plan, "month", anchor=anchor)
    return stripe_id


def record_many(billing, user_id: str, n: int, feature: str = "api_calls", *, at: int | None = None,
                amount=lambda i: 1, push: bool = False) -> list[str]:
    """``n`` events in the ledger, pending for ``push`` (unless ``push``: delivered one by one)."""
    ids = []
    for i in range(n):
        ids.append(billing.usage.record(user_id, feature, amount(i), at=at, push=push).id)
    return ids


def meter_rows(sandbox_or_path) -> list[tuple]:
    """(identifier, event_name, customer, value, timestamp) of every meter event the sandbox
    holds, from its state (for exactly-once checks that no API offers)."""
    sql = "SELECT identifier, event_name, customer, value, timestamp FROM meter_events WHERE cancelled_at IS NULL"
    if isinstance(sandbox_or_path, (str, bytes)) or hasattr(sandbox_or_path, "__fspath__"):
        db = sqlite3.connect(sandbox_or_path)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    return sandbox_or_path.store.db.execute(sql).fetchall()


def stripe_totals(rows) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for _, name, cus, value, _ in rows:
        totals[(cus, name)] = totals.get((cus, name), 0) + value
    return totals


def ledger_totals(billing) -> dict[tuple[str, str], int]:
    rows = billing.ledger.all(
        "SELECT c.stripe_customer_id, e.feature, SUM(e.amount) FROM usage_events e "
        "JOIN customers c ON c.user_id = e.user_id GROUP BY 1, 2"
    )
    return {(r[0], r[1]): r[2] for r in rows}


def now() -> int:
    return int(time.time())
