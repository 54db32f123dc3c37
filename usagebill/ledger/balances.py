"""Append-only balance journals (credits per customer and feature, the wallet per customer)
and the renewals applied: every SQL statement over ``credit_ledger``, ``wallet_ledger`` and
``renewals``. Each journal row carries the balance after it."""

from __future__ import annotations

import sqlite3

from .db import Ledger

CREDITS = "credit_ledger"
WALLET = "wallet_ledger"
_UNIT = {CREDITS: "feature", WALLET: "currency"}


def last_row(ledger: Ledger, table: str, user_id: str, unit: str | None = None) -> sqlite3.Row | None:
    """The newest row (``balance_after``, ``unit``) of a customer's journal (per feature for
    credits; the wallet has one journal per customer)."""
    sql = f"SELECT balance_after, {_UNIT[table]} AS unit FROM {table} WHERE user_id = ?"
    args: list = [user_id]
    if table == CREDITS:
        sql += " AND feature = ?"
        args.append(unit)
    return ledger.one(sql + " ORDER BY id DESC LIMIT 1", args)


def insert_row(
    ledger: Ledger, table: str, user_id: str, unit: str, delta: int, balance_after: int, reason: str,
    period_start: int | None, idempotency_key: str | None, now: int,
) -> None:
    ledger.conn.execute(
        f"INSERT INTO {table} (user_id, {_UNIT[table]}, delta, balance_after, reason, period_start, idempotency_key, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (user_id, unit, delta, balance_after, reason, period_start, idempotency_key, now),
    )


def history_rows(
    ledger: Ledger, table: str, user_id: str, unit: str | None = None, limit: int | None = None
) -> list[sqlite3.Row]:
    """Newest first; ``unit`` filters credits by feature."""
    sql = f"SELECT *, {_UNIT[table]} AS unit FROM {table} WHERE user_id = ?"
    args: list = [user_id]
    if unit is not None and table == CREDITS:
        sql += " AND feature = ?"
        args.append(unit)
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return ledger.all(sql, args)


# -- renewals --------------------------------------------------------------------------------

def claim_renewal(ledger: Ledger, user_id: str, target: str, period_start: int) -> bool:
    """Mark (customer, target, period start) as renewed; False when it was already."""
    cur = ledger.conn.execute(
        "INSERT OR IGNORE INTO renewals (user_id, target, period_start) VALUES (?, ?, ?)", (user_id, target, period_start)
    )
    return cur.rowcount > 0


def renewed_targets(ledger: Ledger, user_id: str, period_start: int) -> set[str]:
    return {
        r["target"]
        for r in ledger.all("SELECT target FROM renewals WHERE user_id = ? AND period_start = ?", (user_id, period_start))
    }
