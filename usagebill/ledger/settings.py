"""The ledger's own settings (which Stripe it belongs to, which config): one key, one value."""

from __future__ import annotations

from .db import Ledger


def get(ledger: Ledger, key: str) -> str | None:
    row = ledger.one("SELECT value FROM settings WHERE key = ?", (key,))
    return None if row is None else row["value"]


def put(ledger: Ledger, key: str, value: str) -> None:
    with ledger.transaction() as db:
        db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
