"""The ledger's side of ``reconcile``, for many customers at once: which customers there are
to reconcile, which features they have usage of, and their units in every compared window,
grouped in SQL (one statement over all the windows, not one query per customer).

The windows, customers and probes go into temporary tables of the ledger's connection, so a
statement joins them with the ledger's indexes, looking each one up (``Ledger.index_joins``):
a window's units come from ``usage_totals`` and the time index ``usage_events_by_time`` over
its two ends, and its delivery states from the few events not delivered on their own
(``UNITS_SQL``), so the cost follows the windows, not the ledger's history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from . import outbox, totals
from .db import Ledger
from .outbox import DELIVERED, FAILED, OPEN, PENDING_SQL


_KEYS = (("user_id", "TEXT NOT NULL"), ("feature", "TEXT NOT NULL"))
_INT = "BIGINT NOT NULL"


def _empty(ledger: Ledger, table: str) -> None:
    ledger.execute(f"DELETE FROM {table}")


@dataclass(frozen=True)
class Customer:
    user_id: str
    stripe_customer_id: str | None
    subscribed: bool  # has had a subscription (active or not)
    clock_time: int | None = None  # its test clock's time, as the ledger last saw it (None: no clock, or unknown)
    advancing: bool = False  # an advance of its clock is not finished in the ledger


_CUSTOMER = ("c.user_id, c.stripe_customer_id, CASE WHEN EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = "
             "c.user_id) THEN 1 ELSE 0 END, CASE WHEN c.test_clock IS NULL THEN NULL ELSE t.frozen_time END, "
             "CASE WHEN EXISTS (SELECT 1 FROM clock_advances a WHERE a.clock_id = c.test_clock) THEN 1 ELSE 0 END")


def _scoped(ledger: Ledger, user_ids: Iterable[str]) -> None:
    ledger.fill_temp("reconcile_customers", _KEYS[:1], "user_id", ((u,) for u in set(user_ids)))


def customers(ledger: Ledger, user_ids: list[str] | None = None) -> list[Customer]:
    """The customers to reconcile, by user id, with their clocks: without ``user_ids``, every
    customer in Stripe that has had a subscription; with them, those of the given ids that the
    ledger knows (in any state: the caller tells the others apart)."""
    clock = "LEFT JOIN test_clocks t ON t.id = c.test_clock"
    if user_ids is None:
        rows = [r for r in ledger.all(f"SELECT {_CUSTOMER} FROM customers c {clock} "
                                      "WHERE c.stripe_customer_id IS NOT NULL ORDER BY c.user_id") if r[2]]
    else:
        _scoped(ledger, user_ids)
        try:
            rows = ledger.all(f"SELECT {_CUSTOMER} FROM reconcile_customers r JOIN customers c ON c.user_id = r.user_id "
                              f"{clock} ORDER BY c.user_id")
        finally:
            _empty(ledger, "reconcile_customers")
    return [Customer(r[0], r[1], bool(r[2]), r[3], bool(r[4])) for r in rows]


def subscriptions(ledger: Ledger, user_ids: list[str]) -> tuple[list, dict[int, dict[str, int]]]:
    """Every subscription of these customers (rows, by customer then age), each with when the
    customer's subscription before it ended (``before_end``) and its last finalized period's
    end and invoice (``closed_until``, ``closed_invoice``); and per subscription, feature ->
    when its current price took effect. What ``closing.subscriptions_of``, ``previous_end``,
    ``last_closed`` and ``subscription_prices.latest`` read one subscription at a time."""
    _scoped(ledger, user_ids)
    last = ("(SELECT i.{} FROM period_invoices i WHERE i.subscription_id = s.id AND i.finalized_at IS NOT NULL "
            "ORDER BY i.period_end DESC LIMIT 1)")
    try:
        rows = ledger.all(
            "SELECT s.*, MAX(s.canceled_at) OVER (PARTITION BY s.user_id ORDER BY s.id ROWS BETWEEN UNBOUNDED "
            f"PRECEDING AND 1 PRECEDING) AS before_end, {last.format('period_end')} AS closed_until, "
            f"{last.format('invoice_id')} AS closed_invoice "
            "FROM reconcile_customers r JOIN subscriptions s ON s.user_id = r.user_id ORDER BY s.user_id, s.id"
        )
        priced: dict[int, dict[str, int]] = {}
        for r in ledger.all(
            "SELECT p.subscription_id, p.feature, MAX(p.effective_from) FROM reconcile_customers r "
            "JOIN subscriptions s ON s.user_id = r.user_id JOIN subscription_prices p ON p.subscription_id = s.id "
            "GROUP BY p.subscription_id, p.feature"
        ):
            priced.setdefault(r[0], {})[r[1]] = r[2]
    finally:
        _empty(ledger, "reconcile_customers")
    return rows, priced


def features_with_usage(ledger: Ledger, probes: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (user_id, feature) pairs have at least one usage event (an index probe
    each, whatever their number of events)."""
    ledger.fill_temp("reconcile_probes", _KEYS, "user_id, feature", probes)
    try:
        rows = ledger.all(
            "SELECT p.user_id, p.feature FROM reconcile_probes p WHERE EXISTS "
            "(SELECT 1 FROM usage_events e WHERE e.user_id = p.user_id AND e.feature = p.feature)"
        )
    finally:
        _empty(ledger, "reconcile_probes")
    return {(r[0], r[1]) for r in rows}


@dataclass(frozen=True)
class Window:
    """One customer's feature over one compared billing period: the usage times its invoice
    bills, [start, end), and for an open period the minute-aligned window Stripe's meter
    totals are asked for, [meter_start, meter_end)."""

    id: int
    user_id: str
    feature: str
    start: int
    end: int
    meter_start: int | None = None
    meter_end: int | None = None


@dataclass(frozen=True)
class WindowUnits:
    total: int = 0  # every unit in [start, end)
    pending: int = 0  # of those, not in Stripe yet (never sent, sending, batched, late item unconfirmed)
    failed: int = 0  # of those, refused by Stripe for good
    delivered: int = 0  # in the meter window: sent as meter events and confirmed (on their own or batched)
    meter_pending: int = 0  # in the meter window: not in Stripe yet


# A window's units without reading each of its events (reconcile over every customer is then
# linear in customers and windows, not in events):
# - its totals come from usage_totals (whole hours and days, ``totals.cover``) and the events of
#   its two ends of under an hour (the covering index usage_events_by_time);
# - what needs an event's delivery state is read only for the events not delivered on their own
#   ("exceptions"): every event that has no delivery row, or a pending, failed, batched or late
#   one, is among those found through the outbox's own indexes (below). Delivered on their own
#   is then the meter window's total less its exceptions that are not.
_BILLED = "e.timestamp >= w.start_time AND e.timestamp < w.end_time"
_METERED = "e.timestamp >= w.meter_start AND e.timestamp < w.meter_end"
_OWN = f"d.status = '{DELIVERED}' AND d.batch_id IS NULL"  # delivered on its own, as its own meter event
# every event not delivered on its own (and some that are): above the watermark (no delivery row
# yet, or a new one; the watermark only moves up, so a value read before the statement can only
# be lower, and then a few more events are read); pending and failed rows (event_delivery_open,
# event_delivery_failed); in a batch or a late item, whatever their state (event_delivery_by_batch,
# event_delivery_by_late_item). Invoiced rows keep their late item; ledger/checks.py reports a
# row in any other state.
_EXCEPTIONS = (
    f"SELECT d.event_id AS id FROM event_delivery d WHERE {OPEN} "
    f"UNION SELECT d.event_id FROM event_delivery d WHERE d.status = '{FAILED}' "
    "UNION SELECT d.event_id FROM event_delivery d WHERE d.batch_id IS NOT NULL "
    "UNION SELECT d.event_id FROM event_delivery d WHERE d.late_item_id IS NOT NULL "
    "UNION SELECT e.id FROM usage_events e WHERE e.seq >= :watermark"
)
# one statement, so one snapshot of the ledger: a push or an insert running meanwhile cannot
# be half counted. Rows: (kind, window id, piece kind or '', four sums).
UNITS_SQL = (
    "SELECT 'totals', p.id, p.kind, SUM(e.amount), 0, 0, 0 FROM reconcile_pieces p JOIN usage_events e "
    "ON e.user_id = p.user_id AND e.feature = p.feature AND e.timestamp >= p.lo AND e.timestamp < p.hi "
    "WHERE p.span = 0 GROUP BY p.user_id, p.feature, p.id, p.kind "
    "UNION ALL "
    "SELECT 'totals', p.id, p.kind, SUM(t.units), 0, 0, 0 FROM reconcile_pieces p JOIN usage_totals t "
    "ON t.user_id = p.user_id AND t.feature = p.feature AND t.span = p.span AND t.since >= p.lo AND t.since < p.hi "
    "WHERE p.span > 0 GROUP BY p.user_id, p.feature, p.id, p.kind "
    "UNION ALL "
    "SELECT 'exceptions', w.id, '', "
    f"COALESCE(SUM(CASE WHEN {_BILLED} AND {PENDING_SQL} THEN e.amount END), 0), "
    f"COALESCE(SUM(CASE WHEN {_BILLED} AND d.status = '{FAILED}' THEN e.amount END), 0), "
    f"COALESCE(SUM(CASE WHEN {_METERED} AND NOT (d.event_id IS NOT NULL AND {_OWN}) THEN e.amount END), 0), "
    f"COALESCE(SUM(CASE WHEN {_METERED} AND {PENDING_SQL} THEN e.amount END), 0) "
    f"FROM ({_EXCEPTIONS}) x JOIN usage_events e ON e.id = x.id "
    "JOIN reconcile_windows w ON w.user_id = e.user_id AND w.feature = e.feature "
    "AND e.timestamp >= w.scan_start AND e.timestamp < w.scan_end "
    "LEFT JOIN event_delivery d ON d.event_id = e.id "
    "GROUP BY w.id "
    "UNION ALL "
    "SELECT 'batches', w.id, '', COALESCE(SUM(b.amount), 0), 0, 0, 0 "
    "FROM reconcile_windows w JOIN delivery_batches b ON b.user_id = w.user_id AND b.feature = w.feature "
    f"AND b.timestamp >= w.meter_start AND b.timestamp < w.meter_end WHERE b.status = '{DELIVERED}' "
    "GROUP BY w.user_id, w.feature, w.id"
)
# whether anything in a window's meter range was confirmed since a time (Stripe's totals may
# not show it yet): read event by event, so asked only of the windows that differ
RECENT_SQL = (  # correlated, so each window reads only its own range of the time index
    "SELECT w.id FROM reconcile_windows w WHERE EXISTS (SELECT 1 FROM usage_events e JOIN event_delivery d "
    f"ON d.event_id = e.id WHERE e.user_id = w.user_id AND e.feature = w.feature AND {_METERED} "
    f"AND d.status = '{DELIVERED}' AND d.updated_at >= :since) "
    "UNION SELECT w.id FROM reconcile_windows w JOIN delivery_batches b ON b.user_id = w.user_id "
    "AND b.feature = w.feature AND b.timestamp >= w.meter_start AND b.timestamp < w.meter_end "
    f"WHERE b.status = '{DELIVERED}' AND b.updated_at >= :since"
)


def fill_windows(ledger: Ledger, windows: list[Window]) -> None:
    """The windows, in the temporary table ``reconcile_windows`` (with the range of times to
    read: both windows of an open period at once)."""
    ledger.fill_temp(
        "reconcile_windows", (*_KEYS, ("id", _INT), ("start_time", _INT), ("end_time", _INT), ("meter_start", "BIGINT"),
                              ("meter_end", "BIGINT"), ("scan_start", _INT), ("scan_end", _INT)), "user_id, feature, id",
        ((w.user_id, w.feature, w.id, w.start, w.end, w.meter_start, w.meter_end,
          w.start if w.meter_start is None else min(w.start, w.meter_start),
          w.end if w.meter_end is None else max(w.end, w.meter_end)) for w in windows))


def _fill_pieces(ledger: Ledger, windows: list[Window]) -> None:
    """Each window's billed range ('b') and meter range ('m') as ``totals.cover`` pieces, in
    the temporary table ``reconcile_pieces``."""
    rows = []
    for w in windows:
        for kind, lo, hi in (("b", w.start, w.end), ("m", w.meter_start, w.meter_end)):
            if lo is not None:
                rows += [(w.user_id, w.feature, w.id, kind, *piece) for piece in totals.cover(lo, hi)]
    ledger.fill_temp("reconcile_pieces", (*_KEYS, ("id", _INT), ("kind", "TEXT NOT NULL"), ("span", _INT), ("lo", _INT),
                                          ("hi", _INT)), "user_id, feature, id, kind, span, lo", rows)


def window_units(ledger: Ledger, windows: list[Window]) -> dict[int, WindowUnits]:
    """The ledger's units of every window, by window id, in one statement (one snapshot of
    the ledger): events by their own time, coalesced batches by the batch's time (as Stripe
    sees them). A window without usage is absent (all zeros). Costs the windows' totals plus
    the events not delivered on their own (pending, failed, batched, billed late), whatever
    the number of delivered ones."""
    fill_windows(ledger, windows)
    _fill_pieces(ledger, windows)
    try:
        with ledger.index_joins():
            rows = ledger.all(UNITS_SQL, {"watermark": outbox.watermark(ledger)})
    finally:
        _empty(ledger, "reconcile_windows")
        _empty(ledger, "reconcile_pieces")
    sums: dict[int, dict[str, int]] = {}
    for kind, wid, piece, a, b, c, d in rows:
        got = sums.setdefault(wid, {})
        if kind == "totals":
            got[piece] = got.get(piece, 0) + int(a)
        elif kind == "exceptions":
            got["pending"], got["failed"], got["not_own"], got["meter_pending"] = int(a), int(b), int(c), int(d)
        else:
            got["batches"] = int(a)
    found: dict[int, WindowUnits] = {}
    for wid, got in sums.items():
        units = WindowUnits(got.get("b", 0), got.get("pending", 0), got.get("failed", 0),
                            got.get("m", 0) - got.get("not_own", 0) + got.get("batches", 0), got.get("meter_pending", 0))
        if units != WindowUnits():
            found[wid] = units
    return found


def recent_deliveries(ledger: Ledger, windows: list[Window], since: int) -> set[int]:
    """The ids of the windows with something in their meter range confirmed at ``since`` or
    later (an event on its own, or a coalesced batch by its time). Reads those windows' events
    one by one: for the few windows whose Stripe total differs."""
    windows = [w for w in windows if w.meter_start is not None]
    if not windows:
        return set()
    fill_windows(ledger, windows)
    try:
        with ledger.index_joins():
            return {int(r[0]) for r in ledger.all(RECENT_SQL, {"since": since})}
    finally:
        _empty(ledger, "reconcile_windows")
