"""Idempotency keys of writes other than usage events (whose key is on the event itself)."""

from __future__ import annotations


from .db import Ledger, Row


def get_key_or_usage(ledger: Ledger, user_id: str, key: str) -> tuple[Row | None, bool]:
    """The operation stored under the customer's key (or None), and whether the key names a
    usage event instead: both in one statement (a replay check is a round trip on PostgreSQL)."""
    row = ledger.one(
        "SELECT k.operation, k.request, k.response, "
        "(SELECT 1 FROM usage_events e WHERE e.user_id = ? AND e.idempotency_key = ?) AS usage "
        "FROM (SELECT 1 AS one) x LEFT JOIN idempotency_keys k ON k.user_id = ? AND k.key = ?",
        (user_id, key, user_id, key),
    )
    return (None if row["operation"] is None else row), row["usage"] is not None


def key_exists(ledger: Ledger, user_id: str, key: str) -> bool:
    return ledger.one("SELECT 1 FROM idempotency_keys WHERE user_id = ? AND key = ?", (user_id, key)) is not None


def any_key(ledger: Ledger) -> bool:
    """Whether any operation key exists at all (the importer skips a join when none does)."""
    return ledger.one("SELECT 1 FROM idempotency_keys LIMIT 1") is not None


def insert_key(ledger: Ledger, user_id: str, key: str, operation: str, request: str, response: str, now: int) -> None:
    ledger.defer(
        "INSERT INTO idempotency_keys (user_id, key, operation, request, response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, key, operation, request, response, now),
    )
