"""Idempotency keys of writes other than usage events (whose key is on the event itself)."""

from __future__ import annotations


from .db import Ledger, Row


def get_key(ledger: Ledger, user_id: str, key: str) -> Row | None:
    return ledger.one(
        "SELECT operation, request, response FROM idempotency_keys WHERE user_id = ? AND key = ?", (user_id, key)
    )


def key_exists(ledger: Ledger, user_id: str, key: str) -> bool:
    return ledger.one("SELECT 1 FROM idempotency_keys WHERE user_id = ? AND key = ?", (user_id, key)) is not None


def any_key(ledger: Ledger) -> bool:
    """Whether any operation key exists at all (the importer skips a join when none does)."""
    return ledger.one("SELECT 1 FROM idempotency_keys LIMIT 1") is not None


def insert_key(ledger: Ledger, user_id: str, key: str, operation: str, request: str, response: str, now: int) -> None:
    ledger.execute(
        "INSERT INTO idempotency_keys (user_id, key, operation, request, response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, key, operation, request, response, now),
    )
