"""Append-only balance ledgers (credits per feature, wallet per customer): every change is a
row carrying the balance after it, so the balance is the last row's ``balance_after`` and
always equals the sum of the deltas. Plan allocations are renewed lazily, once per period."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Allocation
from .ledger import Ledger
from .ledger import balances as journal
from .ledger.balances import CREDITS, WALLET  # noqa: F401  (the two journals, by name)


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
) -> int:
    """Add a row (inside the caller's transaction); returns the new balance."""
    after = balance(ledger, table, user_id, unit if table == CREDITS else None) + delta
    journal.insert_row(ledger, table, user_id, unit, delta, after, reason, period_start, idempotency_key, now)
    return after


def history(ledger: Ledger, table: str, user_id: str, unit: str | None = None, limit: int | None = None) -> list[Entry]:
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
        )
        for r in journal.history_rows(ledger, table, user_id, unit, limit)
    ]


def renew(
    ledger: Ledger, table: str, user_id: str, unit: str, target: str, grant: Allocation, period_start: int, now: int, *, first: bool
) -> bool:
    """Apply a plan allocation for the period starting at ``period_start``, once: the first
    period grants it, later ones ``reset`` the balance to it or ``add`` it. Returns whether
    anything was applied. Keyed by (customer, target, period start) in ``renewals``."""
    if not journal.claim_renewal(ledger, user_id, target, period_start):
        return False
    current = balance(ledger, table, user_id, unit if table == CREDITS else None)
    if first:
        delta, reason = grant.allocation, "plan_grant"
    elif grant.on_renewal == "reset":
        delta, reason = grant.allocation - current, "renewal_reset"
    else:
        delta, reason = grant.allocation, "renewal_add"
    append(ledger, table, user_id, unit, delta, reason, now, period_start=period_start)
    return True
