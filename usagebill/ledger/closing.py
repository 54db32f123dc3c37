"""The ledger's mirror of Stripe's period invoices (``period_invoices``): per subscription and
billing period, the invoice that bills its usage and whether Stripe has finalized it. Written
by whoever meets Stripe's invoices (test clock advance, cancel, push, reconcile); read by the
closing rule (``usagebill.closing``) and reconcile."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Ledger


@dataclass(frozen=True)
class PeriodInvoice:
    subscription_id: int
    period_start: int
    period_end: int
    invoice_id: str
    status: str
    finalized_at: int | None

    @property
    def finalized(self) -> bool:
        return self.finalized_at is not None


def _row(r) -> PeriodInvoice:
    return PeriodInvoice(r["subscription_id"], r["period_start"], r["period_end"], r["invoice_id"], r["status"],
                         r["finalized_at"])


def put(ledger: Ledger, items: list[PeriodInvoice]) -> None:
    now = int(time.time())
    with ledger.transaction() as db:
        db.executemany(
            "INSERT INTO period_invoices (subscription_id, period_start, period_end, invoice_id, status, finalized_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subscription_id, period_start) DO UPDATE SET "
            "period_end = excluded.period_end, invoice_id = excluded.invoice_id, status = excluded.status, "
            "finalized_at = excluded.finalized_at, updated_at = excluded.updated_at",
            [(p.subscription_id, p.period_start, p.period_end, p.invoice_id, p.status, p.finalized_at, now)
             for p in items],
        )


def get(ledger: Ledger, subscription_id: int, period_start: int) -> PeriodInvoice | None:
    r = ledger.one("SELECT * FROM period_invoices WHERE subscription_id = ? AND period_start = ?",
                   (subscription_id, period_start))
    return None if r is None else _row(r)


def of_subscription(ledger: Ledger, subscription_id: int) -> list[PeriodInvoice]:
    return [_row(r) for r in ledger.all(
        "SELECT * FROM period_invoices WHERE subscription_id = ? ORDER BY period_start", (subscription_id,))]


def last_closed(ledger: Ledger, subscription_id: int) -> PeriodInvoice | None:
    """The latest period of the subscription whose invoice Stripe has finalized."""
    r = ledger.one(
        "SELECT * FROM period_invoices WHERE subscription_id = ? AND finalized_at IS NOT NULL "
        "ORDER BY period_end DESC LIMIT 1",
        (subscription_id,),
    )
    return None if r is None else _row(r)


def stripe_subscription_id(ledger: Ledger, subscription_id: int) -> str | None:
    row = ledger.one("SELECT stripe_subscription_id FROM subscriptions WHERE id = ?", (subscription_id,))
    return None if row is None else row[0]


def subscriptions_of(ledger: Ledger, user_id: str) -> list:
    """Every subscription of the customer, active or ended, oldest first (rows)."""
    return ledger.all("SELECT * FROM subscriptions WHERE user_id = ? ORDER BY id", (user_id,))


def customers_in_stripe(ledger: Ledger) -> list[str]:
    """Customers with a Stripe id and at least one subscription (what reconcile looks at)."""
    return [r[0] for r in ledger.all(
        "SELECT DISTINCT c.user_id FROM customers c JOIN subscriptions s ON s.user_id = c.user_id "
        "WHERE c.stripe_customer_id IS NOT NULL ORDER BY c.user_id"
    )]


def previous_end(ledger: Ledger, user_id: str, subscription_id: int) -> int | None:
    """When the customer's subscription before this one was cancelled (None: there was none)."""
    r = ledger.one("SELECT MAX(canceled_at) FROM subscriptions WHERE user_id = ? AND id < ?", (user_id, subscription_id))
    return None if r is None else r[0]


def latest_event_time(ledger: Ledger, user_id: str) -> int | None:
    r = ledger.one("SELECT MAX(timestamp) FROM usage_events WHERE user_id = ?", (user_id,))
    return None if r is None else r[0]
