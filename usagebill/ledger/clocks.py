"""Test-clock advances in flight: the absolute target of an advance is written before Stripe
is asked to move the clock and removed once the ledger has caught up, so a retry after a
failure or a kill finishes that advance instead of starting another."""

from __future__ import annotations


from .db import Ledger, Row


def unfinished_advance(ledger: Ledger, clock_id: str) -> Row | None:
    return ledger.one("SELECT * FROM clock_advances WHERE clock_id = ?", (clock_id,))


def start_advance(ledger: Ledger, clock_id: str, from_time: int, target: int, spec: str, now: int) -> None:
    with ledger.transaction() as db:
        db.execute(
            "INSERT INTO clock_advances (clock_id, from_time, target, spec, started_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (clock_id) DO UPDATE SET from_time = excluded.from_time, target = excluded.target, "
            "spec = excluded.spec, started_at = excluded.started_at",
            (clock_id, int(from_time), int(target), spec, int(now)),
        )


def finish_advance(ledger: Ledger, clock_id: str) -> None:
    with ledger.transaction() as db:
        db.execute("DELETE FROM clock_advances WHERE clock_id = ?", (clock_id,))


def stale_clock_of(ledger: Ledger, user_id: str) -> Row | None:
    """The customer's clock when an advance of it has not been finished in the ledger."""
    return ledger.one(
        "SELECT a.* FROM customers c JOIN clock_advances a ON a.clock_id = c.test_clock WHERE c.user_id = ?",
        (user_id,),
    )
