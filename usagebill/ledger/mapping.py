"""The ledger's record of which Stripe object stands for which piece of the config
(``stripe_objects``), and which Stripe (sandbox / test / live) the ledger is bound to."""

from __future__ import annotations

import json
import time

from ..errors import UsagebillError
from .db import Ledger


def fingerprint(fields: dict) -> str:
    return json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))


def get(ledger: Ledger, key: str) -> str | None:
    row = ledger.one("SELECT stripe_id FROM stripe_objects WHERE key = ?", (key,))
    return None if row is None else row["stripe_id"]


def put(ledger: Ledger, key: str, stripe_id: str, fields: dict) -> None:
    with ledger.transaction():
        ledger.execute(
            "INSERT INTO stripe_objects (key, stripe_id, fingerprint, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET stripe_id = excluded.stripe_id, fingerprint = excluded.fingerprint, "
            "updated_at = excluded.updated_at",
            (key, stripe_id, fingerprint(fields), int(time.time())),
        )


def forget(ledger: Ledger, key: str) -> None:
    with ledger.transaction():
        ledger.execute("DELETE FROM stripe_objects WHERE key = ?", (key,))


def all_keys(ledger: Ledger, prefix: str = "") -> dict[str, str]:
    rows = ledger.all("SELECT key, stripe_id FROM stripe_objects WHERE key LIKE ? ORDER BY key", (prefix + "%",))
    return {r["key"]: r["stripe_id"] for r in rows}


def bind(ledger: Ledger, mode: str) -> None:
    """A ledger belongs to one Stripe: its customers, subscriptions and delivered events
    live there. Refuse to mix (a sandbox ledger pointed at test mode, say)."""
    with ledger.transaction():
        row = ledger.one("SELECT value FROM settings WHERE key = 'stripe_mode'")
        if row is None:
            ledger.execute("INSERT INTO settings (key, value) VALUES ('stripe_mode', ?)", (mode,))
        elif row["value"] != mode:
            raise UsagebillError(
                f"this ledger ({ledger.path}) belongs to the {row['value']}, not Stripe {mode} mode: "
                "use another --db for it"
                if row["value"] == "sandbox"
                else f"this ledger ({ledger.path}) belongs to Stripe {row['value']} mode, not the {mode}: use another --db"
            )
