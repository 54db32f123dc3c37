"""Usage totals per customer, feature, hour and day (``usage_totals``), so that a window's
usage costs the same to read whatever the number of events in it.

Every insert into ``usage_events`` adds its events here in the same transaction (record and
charge through ``events.insert_event``, import through ``events.insert_imported``; the
migration that made the table counted the events before it). A window ``[start, end)`` is
then read as the whole days it covers (``usage_totals``, span 86400), the whole hours around
them (span 3600), and only its two ends of less than an hour from the events themselves:
a month is about 31 + 46 rows and two short index ranges, at 10 events or at 10^6.

Buckets are UTC hours and days: ``since`` is the first second of one, a multiple of ``span``
(event times are from 1970 on, never negative). Usage events are immutable, so totals only
grow."""

from __future__ import annotations

from typing import Iterable

from .db import Ledger

HOUR, DAY = 3600, 86400
SPANS = (HOUR, DAY)  # the bucket sizes counted, finest first; each divides the next

_ADD = ("INSERT INTO usage_totals (user_id, feature, span, since, units, events)",
        "ON CONFLICT (user_id, feature, span, since) DO UPDATE SET units = usage_totals.units + excluded.units, "
        "events = usage_totals.events + excluded.events")
_CHUNK = 500  # rows a statement


def _insert(ledger: Ledger, head: str, rows: list[tuple], tail: str = "") -> None:
    """``head VALUES (...), (...) tail``, a statement per 500 rows: one round trip each, and
    outside a transaction one commit each, not one per row."""
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i:i + _CHUNK]
        marks = "(" + ", ".join(["?"] * len(chunk[0])) + ")"
        ledger.defer(f"{head} VALUES {', '.join([marks] * len(chunk))} {tail}", [x for row in chunk for x in row])


def add(ledger: Ledger, events: Iterable[tuple[str, str, int, int]]) -> None:
    """Count new events, ``(user_id, feature, timestamp, amount)``, in their hour and their
    day, inside the transaction that inserts them."""
    acc: dict[tuple[str, str, int, int], list[int]] = {}
    for user_id, feature, ts, amount in events:
        for span in SPANS:
            key = (user_id, feature, span, ts - ts % span)
            got = acc.get(key)
            if got is None:
                acc[key] = [amount, 1]
            else:
                got[0] += amount
                got[1] += 1
    # in key order, so writers running at once (PostgreSQL) lock shared rows in one order;
    # each key once a statement (a record's hour and day: one statement)
    with ledger.transaction():  # the caller's: it inserts the events
        _insert(ledger, _ADD[0], [(*key, units, n) for key, (units, n) in sorted(acc.items())], _ADD[1])


def add_inserted_after(ledger: Ledger, before: int, inserted: int) -> bool:
    """Count, in one statement, the events this transaction has just inserted, when they are
    exactly the ``inserted`` events after seq ``before`` (the largest seq before they were
    inserted): always on SQLite (one writer at a time), and on PostgreSQL when no other
    writer's events have become visible after ``before`` meanwhile. Returns False when they
    are not (nothing counted then: the caller counts its own rows)."""
    (after,) = ledger.one("SELECT COALESCE(MAX(seq), 0) FROM usage_events")
    spans = " UNION ALL ".join(f"SELECT {s} AS span" for s in SPANS)
    changed = ledger.execute(
        f"{_ADD[0]} SELECT e.user_id, e.feature, s.span, e.timestamp - e.timestamp % s.span, SUM(e.amount), COUNT(*) "
        f"FROM usage_events e CROSS JOIN ({spans}) s WHERE e.seq > ? AND e.seq <= ? "
        "AND (SELECT COUNT(*) FROM usage_events WHERE seq > ? AND seq <= ?) = ? "
        f"GROUP BY e.user_id, e.feature, s.span, e.timestamp - e.timestamp % s.span {_ADD[1]}",
        (before, after, before, after, inserted),
    ).rowcount
    return changed > 0


def cover(start: int, end: int, spans: tuple[int, ...] = SPANS) -> list[tuple[int, int, int]]:
    """``[start, end)`` as ``(span, lo, hi)`` ranges, in time order: span 0 is the events
    with lo <= timestamp < hi, any other the totals of that span with lo <= since < hi. The
    coarsest whole buckets first, then finer ones at the ends."""
    if start >= end:
        return []
    if not spans:
        return [(0, start, end)]
    span, finer = spans[-1], spans[:-1]
    lo, hi = -(-start // span) * span, end - end % span
    if lo >= hi:
        return cover(start, end, finer)
    return [*cover(start, lo, finer), (span, lo, hi), *cover(hi, end, finer)]


_EVENTS = "FROM usage_events WHERE user_id = ? AND feature = ? AND timestamp >= ? AND timestamp < ?"
_TOTALS = "FROM usage_totals WHERE user_id = ? AND feature = ? AND span = ? AND since >= ? AND since < ?"


def _args(user_id: str, feature: str, span: int, lo: int, hi: int) -> list:
    return [user_id, feature, lo, hi] if span == 0 else [user_id, feature, span, lo, hi]


def window(ledger: Ledger, user_id: str, feature: str, start: int, end: int) -> tuple[int, int]:
    """(units, events) of a feature with start <= timestamp < end."""
    parts, args = [], []
    for span, lo, hi in cover(start, end):
        parts.append("SELECT COALESCE(SUM(amount), 0) AS units, COUNT(*) AS n " + _EVENTS if span == 0 else
                     "SELECT COALESCE(SUM(units), 0) AS units, COALESCE(SUM(events), 0) AS n " + _TOTALS)
        args += _args(user_id, feature, span, lo, hi)
    if not parts:
        return 0, 0
    row = ledger.one(f"SELECT SUM(units) AS units, SUM(n) AS n FROM ({' UNION ALL '.join(parts)}) parts", args)
    return int(row["units"]), int(row["n"])


def buckets(ledger: Ledger, user_id: str, feature: str, start: int, end: int, size: int,
            offset: int) -> dict[int, int]:
    """Units per bucket of ``size`` seconds (buckets begin at ``offset`` + k * size) of the
    events in [start, end): {k: units}. Totals serve whichever of their spans fit whole in
    a bucket (hours for hourly buckets; days too for days and weeks)."""
    spans = tuple(s for s in SPANS if size % s == 0 and offset % s == 0)
    parts, args = [], []
    for span, lo, hi in cover(start, end, spans):
        parts.append("SELECT (timestamp - ?) / ? AS k, SUM(amount) AS units " + _EVENTS + " GROUP BY k" if span == 0
                     else "SELECT (since - ?) / ? AS k, SUM(units) AS units " + _TOTALS + " GROUP BY k")
        args += [offset, size, *_args(user_id, feature, span, lo, hi)]
    if not parts:
        return {}
    rows = ledger.all(f"SELECT k, SUM(units) AS units FROM ({' UNION ALL '.join(parts)}) parts GROUP BY k", args)
    return {int(r["k"]): int(r["units"]) for r in rows}


def in_windows(ledger: Ledger, windows: Iterable[tuple[str, str, int, int]]) -> dict[tuple[str, str], tuple[int, int]]:
    """Units and events per (customer, feature), each in its own [start, end) window, for the
    windows with events: {(user_id, feature): (units, events)}. Each window's pieces
    (``cover``) go in a temporary table, joined with the totals and the events of the ends."""
    ledger.execute(
        "CREATE TEMP TABLE IF NOT EXISTS window_pieces (user_id TEXT NOT NULL, feature TEXT NOT NULL, "
        "span BIGINT NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL, PRIMARY KEY (user_id, feature, span, lo))"
        + ledger.without_rowid
    )
    ledger.execute("DELETE FROM window_pieces")
    _insert(ledger, "INSERT INTO window_pieces", [(u, f, *p) for u, f, start, end in windows for p in cover(start, end)])
    try:
        # pieces keyed by (customer, feature): read in that order, each join's rows come out
        # grouped, without a temporary B-tree for the GROUP BY
        rows = ledger.all(
            "SELECT p.user_id, p.feature, SUM(e.amount) AS units, COUNT(*) AS n FROM window_pieces p "
            "JOIN usage_events e ON e.user_id = p.user_id AND e.feature = p.feature "
            "AND e.timestamp >= p.lo AND e.timestamp < p.hi WHERE p.span = 0 GROUP BY p.user_id, p.feature "
            "UNION ALL "
            "SELECT p.user_id, p.feature, SUM(t.units) AS units, SUM(t.events) AS n FROM window_pieces p "
            "JOIN usage_totals t ON t.user_id = p.user_id AND t.feature = p.feature AND t.span = p.span "
            "AND t.since >= p.lo AND t.since < p.hi WHERE p.span > 0 GROUP BY p.user_id, p.feature"
        )
    finally:
        ledger.execute("DELETE FROM window_pieces")
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for r in rows:
        units, n = out.get((r["user_id"], r["feature"]), (0, 0))
        out[r["user_id"], r["feature"]] = (units + int(r["units"]), n + int(r["n"]))
    return out
