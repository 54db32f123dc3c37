"""Meter events Stripe accepted and dropped later (its asynchronous validation of the v2 meter
event stream): they are marked failed with Stripe's reason, so ``status`` lists them and
``reconcile`` does not count them as billed. Also where reading Stripe's error reports got
to, and when the stream was last used (reports may come minutes after a batch)."""

from __future__ import annotations

import json
import time

from .db import Ledger

READ_KEY = "meter_errors_read"  # {"since": RFC 3339 of the newest report read, "ids": [its event ids]}
STREAMED_KEY = "meter_stream_sent_at"  # Unix time of the last stream request


def _get(ledger: Ledger, key: str):
    row = ledger.one("SELECT value FROM settings WHERE key = ?", (key,))
    return None if row is None else json.loads(row[0])


def _set(ledger: Ledger, key: str, value) -> None:
    with ledger.transaction(rows_only=True) as db:
        db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   (key, json.dumps(value)))


def read_position(ledger: Ledger) -> tuple[str | None, set[str]]:
    """(created time of the newest error report read, the ids of the reports at that time)."""
    saved = _get(ledger, READ_KEY) or {}
    return saved.get("since"), set(saved.get("ids") or ())


def save_read_position(ledger: Ledger, since: str, ids: set[str]) -> None:
    _set(ledger, READ_KEY, {"since": since, "ids": sorted(ids)})


def note_streamed(ledger: Ledger, at: int | None = None) -> None:
    _set(ledger, STREAMED_KEY, int(time.time() if at is None else at))


def streamed_at(ledger: Ledger) -> int | None:
    return _get(ledger, STREAMED_KEY)


def mark_dropped(ledger: Ledger, reasons: dict[str, str]) -> dict[str, int]:
    """Mark failed what each identifier stands for (a usage event sent on its own, or a
    coalesced batch and its events), with Stripe's reason. Returns identifier -> usage events
    newly marked (0: not ours, or already failed). The delivered and invoiced totals lose what
    they counted of them."""
    now = int(time.time())
    marked: dict[str, int] = {}
    seq = "seq = COALESCE(seq, (SELECT e.seq FROM usage_events e WHERE e.id = event_delivery.event_id))"
    with ledger.transaction(rows_only=True) as db:
        for identifier, reason in reasons.items():
            if db.execute("SELECT 1 FROM delivery_batches WHERE id = ?", (identifier,)).fetchone():
                db.execute("UPDATE delivery_batches SET status = 'failed', updated_at = ?, claimed_until = NULL, "
                           "claimed_by = NULL WHERE id = ?", (now, identifier))
                which, args = "batch_id = ?", [identifier]
            else:
                which, args = "event_id = ? AND batch_id IS NULL", [identifier]
            was = {r[0]: int(r[1]) for r in db.all(
                f"SELECT status, COUNT(*) FROM event_delivery WHERE {which} AND status != 'failed' GROUP BY status", args)}
            cur = db.execute(
                f"UPDATE event_delivery SET status = 'failed', last_error = ?, updated_at = ?, claimed_until = NULL, "
                f"claimed_by = NULL, {seq} WHERE {which} AND status != 'failed'", [reason, now, *args])
            for status in ("delivered", "invoiced"):
                if was.get(status):
                    db.execute("UPDATE delivery_totals SET events = events - ? WHERE status = ?", (was[status], status))
            marked[identifier] = cur.rowcount
    return marked
