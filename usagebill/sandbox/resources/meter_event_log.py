"""Meter events live in their own table, not as JSON objects: there may be millions, and the
billing engine sums them per (meter, customer, period) on every invoice.

``received`` is the sandbox's real time of receipt (drives the visibility delay and the
24-hour identifier window); ``timestamp`` is the event's own time, in the customer's clock."""

from __future__ import annotations

import json
from typing import Iterable

from ..store import EXTRA_SCHEMA, Store

EXTRA_SCHEMA.append(
    """
CREATE TABLE IF NOT EXISTS meter_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier TEXT NOT NULL,
    event_name TEXT NOT NULL,
    customer TEXT NOT NULL,
    value INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    received INTEGER NOT NULL,
    cancelled_at INTEGER,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS meter_events_by_customer ON meter_events (event_name, customer, timestamp);
CREATE INDEX IF NOT EXISTS meter_events_by_identifier ON meter_events (identifier, received);
"""
)

IDENTIFIER_WINDOW = 24 * 3600  # Stripe enforces identifier uniqueness for (at least) 24 hours
_KV_NS = "sandbox"


def set_visibility_delay(store: Store, seconds: float) -> None:
    store.kv_set(_KV_NS, "visibility_delay", seconds)


def visibility_delay(store: Store) -> float:
    return store.kv_get(_KV_NS, "visibility_delay") or 0


def insert_events(store: Store, events: Iterable[dict], received: int) -> None:
    """Append validated events: dicts with identifier, event_name, customer, value, timestamp,
    payload. One executemany, so a stream batch of 100 costs one statement."""
    store.db.executemany(
        "INSERT INTO meter_events (identifier, event_name, customer, value, timestamp, received, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (e["identifier"], e["event_name"], e["customer"], e["value"], e["timestamp"], received,
             json.dumps(e["payload"]))
            for e in events
        ],
    )


def taken_identifiers(store: Store, identifiers: list[str], now: int) -> set[str]:
    """Which of these identifiers were used by an event received in the last 24 hours."""
    taken: set[str] = set()
    for i in range(0, len(identifiers), 500):  # stay under SQLite's variable limit
        chunk = identifiers[i : i + 500]
        marks = ",".join("?" * len(chunk))
        rows = store.db.execute(
            f"SELECT identifier FROM meter_events WHERE identifier IN ({marks}) AND received > ?",
            [*chunk, now - IDENTIFIER_WINDOW],
        )
        taken.update(r[0] for r in rows)
    return taken


def find_recent(store: Store, identifier: str, now: int) -> dict | None:
    row = store.db.execute(
        "SELECT seq, event_name, customer, received, cancelled_at FROM meter_events "
        "WHERE identifier = ? AND received > ? ORDER BY seq DESC LIMIT 1",
        (identifier, now - IDENTIFIER_WINDOW),
    ).fetchone()
    if row is None:
        return None
    return dict(zip(("seq", "event_name", "customer", "received", "cancelled_at"), row))


def cancel(store: Store, seq: int, now: int) -> None:
    store.db.execute("UPDATE meter_events SET cancelled_at = ? WHERE seq = ?", (now, seq))


def aggregate(store: Store, meter: dict, customer_id: str, start: int, end: int, now: int) -> int:
    """The meter's formula over one customer's events with ``start <= timestamp < end``.

    Cancelled events never count; events received less than the visibility delay before
    ``now`` (real time) are not counted yet, as Stripe's aggregation lags ingestion."""
    where = (
        "event_name = ? AND customer = ? AND timestamp >= ? AND timestamp < ? "
        "AND cancelled_at IS NULL AND received <= ?"
    )
    args = (meter["event_name"], customer_id, start, end, now - visibility_delay(store))
    formula = meter["default_aggregation"]["formula"]
    if formula == "sum":
        sql = f"SELECT COALESCE(SUM(value), 0) FROM meter_events WHERE {where}"
    elif formula == "count":
        sql = f"SELECT COUNT(*) FROM meter_events WHERE {where}"
    elif formula == "last":
        sql = f"SELECT value FROM meter_events WHERE {where} ORDER BY timestamp DESC, seq DESC LIMIT 1"
    else:
        raise ValueError(f"unknown meter formula {formula!r}")
    row = store.db.execute(sql, args).fetchone()
    return int(row[0]) if row else 0
