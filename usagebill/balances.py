"""Append-only balance ledgers (credits per feature, wallet per customer): every change is a
row carrying the balance after it, so the balance is the last row's ``balance_after`` and
always equals the sum of the deltas. Plan allocations are renewed lazily, once per period."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Allocation
from .ledger import Ledger

_UNIT = {"credit_ledger": "feature", "wallet_ledger": "currency"}


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
    sql = f"SELECT balance_after, {_UNIT[table]} AS unit FROM {table} WHERE user_id = ?"
    args: list = [user_id]
    if table == "credit_ledger":
        sql += " AND feature = ?"
        args.append(unit)
    return ledger.one(sql + " ORDER BY id DESC LIMIT 1", args)


def balance(ledger: Ledger, table: str, user_id: str, unit: str | None = None) -> int:
    row = last(ledger, table, user_id, unit)
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
    after = balance(ledger, table, user_id, unit if table == "credit_ledger" else None) + delta
    ledger.conn.execute(
        f"INSERT INTO {table} (user_id, {_UNIT[table]}, delta, balance_after, reason, period_start, idempotency_key, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (user_id, unit, delta, after, reason, period_start, idempotency_key, now),
    )
    return after


def history(ledger: Ledger, table: str, user_id: str, unit: str | None = None, limit: int | None = None) -> list[Entry]:
    """Newest first."""
    sql = f"SELECT * FROM {table} WHERE user_id = ?"
    args: list = [user_id]
    if unit is not None and table == "credit_ledger":
        sql += " AND feature = ?"
        args.append(unit)
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [
        Entry(
            id=r["id"],
            user_id=r["user_id"],
            unit=r[_UNIT[table]],
            delta=r["delta"],
            balance_after=r["balance_after"],
            reason=r["reason"],
            created_at=r["created_at"],
            period_start=r["period_start"],
            idempotency_key=r["idempotency_key"],
        )
        for r in ledger.all(sql, args)
    ]


def renew(
    ledger: Ledger, table: str, user_id: str, unit: str, target: str, grant: Allocation, period_start: int, now: int, *, first: bool
) -> bool:
    """Apply a plan allocation for the period starting at ``period_start``, once: the first
    period grants it, later ones ``reset`` the balance to it or ``add`` it. Returns whether
    anything was applied. Keyed by (customer, target, period start) in ``renewals``."""
    cur = ledger.conn.execute(
        "INSERT OR IGNORE INTO renewals (user_id, target, period_start) VALUES (?, ?, ?)", (user_id, target, period_start)
    )
    if cur.rowcount == 0:
        return False
    current = balance(ledger, table, user_id, unit if table == "credit_ledger" else None)
    if first:
        delta, reason = grant.allocation, "plan_grant"
    elif grant.on_renewal == "reset":
        delta, reason = grant.allocation - current, "renewal_reset"
    else:
        delta, reason = grant.allocation, "renewal_add"
    append(ledger, table, user_id, unit, delta, reason, now, period_start=period_start)
    return True
