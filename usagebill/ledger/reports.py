"""Read queries for reports and shell completion: usage per time bucket, usage per customer
over each customer's own window, and the names completion offers. Reads only."""

from __future__ import annotations

from typing import Iterable

from . import totals


def usage_buckets(ledger, user_id: str, feature: str, start: int, end: int, size: int, offset: int) -> dict[int, int]:
    """Units per bucket of ``size`` seconds (buckets begin at ``offset`` + k * size), for
    events in [start, end): {bucket start: units}. From the hourly and daily totals, and the
    events of the ends (``totals.buckets``)."""
    units = totals.buckets(ledger, user_id, feature, start, end, size, offset)
    return {k * size + offset: n for k, n in units.items()}


def usage_in_windows(ledger, windows: Iterable[tuple[str, str, int, int]]) -> dict[tuple[str, str], tuple[int, int]]:
    """Units and events per (customer, feature), each in its own [start, end) window (customers
    have their own billing periods): {(user_id, feature): (units, events)}, for the windows
    with events. From the hourly and daily totals (``totals.in_windows``)."""
    return totals.in_windows(ledger, windows)


def active_customers(ledger) -> list[str]:
    return [r[0] for r in ledger.all("SELECT user_id FROM subscriptions WHERE status = 'active' ORDER BY user_id")]


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def customer_ids(ledger, prefix: str = "", limit: int = 200) -> list[str]:
    return [r[0] for r in ledger.all(
        "SELECT user_id FROM customers WHERE user_id LIKE ? ESCAPE '\\' ORDER BY user_id LIMIT ?", (_like(prefix), limit))]


def clock_ids(ledger, prefix: str = "", limit: int = 200) -> list[tuple[str, str | None]]:
    return [(r[0], r[1]) for r in ledger.all(
        "SELECT id, name FROM test_clocks WHERE id LIKE ? ESCAPE '\\' ORDER BY updated_at DESC LIMIT ?",
        (_like(prefix), limit))]


# The ledger keeps no invoices (Stripe does): the ids usagebill has shown lately are kept in
# ``settings`` so that completion can offer them without a Stripe call.
SEEN_INVOICES = "completion.invoices"
MAX_SEEN = 200


def remember_invoices(ledger, ids: list[str]) -> None:
    import json

    with ledger.transaction():
        row = ledger.one("SELECT value FROM settings WHERE key = ?", (SEEN_INVOICES,))
        old = json.loads(row[0]) if row else []
        seen = list(dict.fromkeys([*ids, *old]))[:MAX_SEEN]
        if seen != old:
            ledger.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (SEEN_INVOICES, json.dumps(seen)))


def invoice_ids(ledger, prefix: str = "") -> list[str]:
    import json

    row = ledger.one("SELECT value FROM settings WHERE key = ?", (SEEN_INVOICES,))
    return [i for i in (json.loads(row[0]) if row else []) if i.startswith(prefix)]


def read_only(path) -> "Ledger | None":
    """The ledger at ``path`` opened for reading only (no migration, no file created), or None
    when there is none: for shell completion, which must be fast and change nothing."""
    import os
    import sqlite3

    from .db import Ledger, is_url

    if is_url(path):
        from .postgres import open_pg

        try:
            ledger = open_pg(path, read_only=True)
            ledger.one("SELECT 1 FROM customers LIMIT 1")
            return ledger
        except Exception:  # no server, no extra, no ledger yet: nothing to offer
            return None
    if not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT 1 FROM customers LIMIT 1")
    except sqlite3.Error:
        return None
    return Ledger(conn, str(path))
