"""Append-only balance journals (credits per customer and feature, the wallet per customer)
and the renewals applied: every SQL statement over ``credit_ledger``, ``wallet_ledger`` and
``renewals``. Each journal row carries the balance after it."""

from __future__ import annotations


from .db import Ledger, Row

CREDITS = "credit_ledger"
WALLET = "wallet_ledger"
_UNIT = {CREDITS: "feature", WALLET: "currency"}


def last_row(ledger: Ledger, table: str, user_id: str, unit: str | None = None) -> Row | None:
    """The newest row (``balance_after``, ``unit``) of a customer's journal (per feature for
    credits; the wallet has one journal per customer). Inside a transaction, a row this
    transaction wrote or read is not read again (``ledger.memo``): the transaction holds
    the customer, so no one else writes its journals meanwhile."""
    memo_key = (table, user_id, unit if table == CREDITS else None)
    if ledger.in_transaction and memo_key in ledger.memo:
        return ledger.memo[memo_key]
    sql = f"SELECT balance_after, {_UNIT[table]} AS unit FROM {table} WHERE user_id = ?"
    args: list = [user_id]
    if table == CREDITS:
        sql += " AND feature = ?"
        args.append(unit)
    row = ledger.one(sql + " ORDER BY id DESC LIMIT 1", args)
    if ledger.in_transaction:
        ledger.memo[memo_key] = None if row is None else {"balance_after": row["balance_after"], "unit": row["unit"]}
    return row


def read_feature(ledger: Ledger, user_id: str, feature: str, target: str) -> None:
    """Inside a transaction: the feature's credit balance and what is left of its allocation
    (``target``) in one statement, kept in ``ledger.memo`` for ``last_row`` and
    ``allocation_left`` (consume reads both: one round trip instead of two)."""
    if not ledger.in_transaction:
        return
    row = ledger.one(
        "SELECT (SELECT balance_after FROM credit_ledger WHERE user_id = ? AND feature = ? ORDER BY id DESC LIMIT 1), "
        "(SELECT remaining FROM allocations_left WHERE user_id = ? AND target = ?)",
        (user_id, feature, user_id, target),
    )
    balance, left = row[0], row[1]
    ledger.memo[(CREDITS, user_id, feature)] = None if balance is None else {"balance_after": balance, "unit": feature}
    ledger.memo[("allocation", user_id, target)] = 0 if left is None else int(left)


def insert_row(
    ledger: Ledger, table: str, user_id: str, unit: str, delta: int, balance_after: int, reason: str,
    period_start: int | None, idempotency_key: str | None, now: int, expires_at: int | None = None,
) -> None:
    if table == CREDITS:
        ledger.defer(
            "INSERT INTO credit_ledger (user_id, feature, delta, balance_after, reason, period_start, idempotency_key, "
            "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (user_id, unit, delta, balance_after, reason, period_start, idempotency_key, now, expires_at),
        )
    else:
        ledger.defer(
            "INSERT INTO wallet_ledger (user_id, currency, delta, balance_after, reason, period_start, idempotency_key, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (user_id, unit, delta, balance_after, reason, period_start, idempotency_key, now),
        )
    if ledger.in_transaction:
        ledger.memo[(table, user_id, unit if table == CREDITS else None)] = {"balance_after": balance_after, "unit": unit}


def history_rows(
    ledger: Ledger, table: str, user_id: str, unit: str | None = None, limit: int | None = None,
    since: int | None = None,
) -> list[Row]:
    """Newest first; ``unit`` filters credits by feature, ``since`` keeps rows created then or later."""
    sql = f"SELECT *, {_UNIT[table]} AS unit FROM {table} WHERE user_id = ?"
    args: list = [user_id]
    if unit is not None and table == CREDITS:
        sql += " AND feature = ?"
        args.append(unit)
    if since is not None:
        sql += " AND created_at >= ?"
        args.append(int(since))
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return ledger.all(sql, args)


# -- renewals --------------------------------------------------------------------------------

def claim_renewal(
    ledger: Ledger, user_id: str, target: str, period_start: int, period_end: int | None = None,
    subscription_id: int | None = None, granted: int | None = None,
) -> bool:
    """Mark (customer, target, period start) as renewed; False when it was already.
    ``granted`` is the allocation level the period got (see ``allocation_covering``)."""
    cur = ledger.execute(
        "INSERT INTO renewals (user_id, target, period_start, period_end, subscription_id, granted) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (user_id, target, period_start, period_end, subscription_id, granted),
    )
    return cur.rowcount > 0


def last_renewal_start(ledger: Ledger, user_id: str, target: str, subscription_id: int) -> int | None:
    """The newest period start renewed for this subscription, or None before its first."""
    row = ledger.one(
        "SELECT MAX(period_start) FROM renewals WHERE user_id = ? AND target = ? AND subscription_id = ?",
        (user_id, target, subscription_id),
    )
    return None if row is None else row[0]


def allocation_covering(ledger: Ledger, user_id: str, target: str, at: int, subscription_id: int) -> int | None:
    """The highest allocation level other subscriptions' renewals gave periods containing
    ``at`` (None: none did): a re-subscription within a period tops up to its own level."""
    row = ledger.one(
        "SELECT COUNT(*), COALESCE(MAX(granted), 0) FROM renewals WHERE user_id = ? AND target = ? "
        "AND period_start <= ? AND ? < period_end AND (subscription_id IS NULL OR subscription_id <> ?)",
        (user_id, target, at, at, subscription_id),
    )
    return int(row[1]) if row[0] else None


# -- the parts of a balance: what is left of the allocation, and granted lots ---------------------

def allocation_left(ledger: Ledger, user_id: str, target: str) -> int:
    memo_key = ("allocation", user_id, target)
    if ledger.in_transaction and memo_key in ledger.memo:  # see last_row
        return ledger.memo[memo_key]
    row = ledger.one("SELECT remaining FROM allocations_left WHERE user_id = ? AND target = ?", (user_id, target))
    left = 0 if row is None else int(row[0])
    if ledger.in_transaction:
        ledger.memo[memo_key] = left
    return left


def set_allocation_left(ledger: Ledger, user_id: str, target: str, remaining: int) -> None:
    ledger.defer(
        "INSERT INTO allocations_left (user_id, target, remaining) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id, target) DO UPDATE SET remaining = excluded.remaining",
        (user_id, target, remaining),
    )
    if ledger.in_transaction:
        ledger.memo[("allocation", user_id, target)] = remaining


def insert_grant(
    ledger: Ledger, user_id: str, feature: str, amount: int, expires_at: int | None, reason: str, now: int
) -> int:
    return ledger.insert_id(
        "INSERT INTO credit_grants (user_id, feature, amount, remaining, expires_at, reason, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, feature, amount, amount, expires_at, reason, now),
    )


def open_grants(ledger: Ledger, user_id: str, feature: str) -> list[Row]:
    """Lots with credits left, in the order consumption takes them: soonest expiry first,
    lots without expiry last, older first."""
    return ledger.all(
        "SELECT id, remaining, expires_at FROM credit_grants WHERE user_id = ? AND feature = ? AND remaining > 0 "
        "ORDER BY expires_at IS NULL, expires_at, id",
        (user_id, feature),
    )


def set_grant_remaining(ledger: Ledger, grant_id: int, remaining: int) -> None:
    ledger.execute("UPDATE credit_grants SET remaining = ? WHERE id = ?", (remaining, grant_id))


def grants_due_to_expire(ledger: Ledger, user_id: str, now: int) -> list[Row]:
    return ledger.all(
        "SELECT id, feature, remaining, expires_at FROM credit_grants WHERE user_id = ? AND remaining > 0 "
        "AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, id",
        (user_id, now),
    )


# -- the wallet's carried sub-cent remainders ------------------------------------------------------

def paid_ahead(ledger: Ledger, user_id: str, feature: str) -> str | None:
    row = ledger.one("SELECT paid_ahead FROM wallet_remainders WHERE user_id = ? AND feature = ?", (user_id, feature))
    return None if row is None else row[0]


def set_paid_ahead(ledger: Ledger, user_id: str, feature: str, value: str) -> None:
    ledger.execute(
        "INSERT INTO wallet_remainders (user_id, feature, paid_ahead) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id, feature) DO UPDATE SET paid_ahead = excluded.paid_ahead",
        (user_id, feature, value),
    )
