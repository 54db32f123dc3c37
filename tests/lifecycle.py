"""Helpers for tests over billing periods: a customer on a test clock from Jan 1 2026, and
what Stripe invoiced (quantities by line description)."""

from __future__ import annotations

import pytest

from usagebill import Billing
from usagebill.gateway.accounts import add_customer, subscribe
from usagebill.gateway.clocks import create_clock
from usagebill.gateway.invoices import list_invoices
from usagebill.gateway.sync import sync

JAN_1 = "2026-01-01T00:00:00Z"


@pytest.fixture
def app(config_path):
    """An app as the README writes it: ``Billing.open``, nothing else (the sandbox beside the
    ledger, opened on first delivery). Import it into a test module to use it."""
    b = Billing.open(config_path)
    yield b
    b.close()


def on_clock(b: Billing, user_id: str = "alice", plan: str = "Pro", *, clock: str | None = None) -> str:
    """Sync, a test clock at Jan 1 (unless ``clock``), the customer on it, subscribed to ``plan``."""
    conn = b.connection
    if clock is None:
        sync(b, conn)
        clock = create_clock(b, conn, at=JAN_1).id
    add_customer(b, conn, user_id, test_clock=clock)
    subscribe(b, conn, user_id, plan, "month")
    return clock


def invoices(b: Billing, user_id: str = "alice", reason: str | None = "subscription_cycle") -> list:
    """The customer's invoices, oldest first (only those of ``reason`` unless None)."""
    found = list_invoices(b, b.connection, user_id)[::-1]
    return [i for i in found if reason is None or i.billing_reason == reason]


def lines(inv) -> list[tuple[str, int, int]]:
    return [(x.description, x.quantity, x.amount) for x in inv.lines]
