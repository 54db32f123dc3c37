"""reconcile's ledger side over many customers (``ledger/reconcile_reads.py``): the units of
every window in one statement equal a plain Python count over the same rows, whatever the
delivery states, coalesced batches and windows; and the statement reads the time index."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usagebill.ledger import reconcile_reads as reads
from usagebill.ledger import totals
from usagebill.ledger.db import open_ledger

USERS, FEATURES = ("u1", "u2"), ("api_calls", "ai_tokens")
# an event's delivery row: none (never sent), or (status, in a batch?, tied to a late item?), as
# the outbox writes them: a batched row has its batch, late and invoiced ones their item, a
# failed one either (a refused batch, a refused late item, or refused on its own)
STATES = [None, ("queued", False, False), ("sending", False, False), ("batched", True, False),
          ("late", False, True), ("delivered", False, False), ("delivered", True, False), ("failed", False, False),
          ("failed", True, False), ("failed", False, True), ("invoiced", False, True)]
PENDING = {None, "queued", "sending", "batched", "late"}
HOUR, DAY = 3600, 86400
# times over three days, many on or next to hour and day boundaries, so that windows are read
# partly from the totals of whole hours and days and partly event by event
times = st.one_of(st.integers(0, 3 * DAY),
                  st.tuples(st.integers(0, 3 * DAY // HOUR), st.integers(-2, 2)).map(lambda t: max(0, t[0] * HOUR + t[1])))

events = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(FEATURES), st.integers(1, 9),
                            times, st.sampled_from(STATES), st.integers(0, 100)), max_size=40)
batches = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(FEATURES), st.integers(1, 50),
                             times, st.sampled_from(["delivered", "pending", "failed"]),
                             st.integers(0, 100)), max_size=8)
spans = st.tuples(times, times).map(sorted)
windows = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(FEATURES), spans,
                             st.one_of(st.none(), spans)), min_size=1, max_size=10)


def build(event_rows, batch_rows, watermark=None):
    """A ledger of these rows, as the outbox leaves it: every event below the watermark
    (default: after the last) has a delivery row, the totals count every event."""
    ledger = open_ledger(":memory:")
    watermark = len(event_rows) + 1 if watermark is None else watermark
    with ledger.transaction() as db:
        for i, (user, feature, amount, ts, state, updated) in enumerate(event_rows):
            seq = i + 1
            if state is None and seq < watermark:
                state = ("queued", False, False)  # what advance_watermark gives an unsent event
            db.execute("INSERT INTO usage_events (seq, id, user_id, feature, amount, timestamp, recorded_at, source) "
                       "VALUES (?, ?, ?, ?, ?, ?, 0, 'record')", (seq, f"e{i}", user, feature, amount, ts))
            if state is not None:
                db.execute("INSERT INTO event_delivery (event_id, seq, status, attempts, batch_id, late_item_id, "
                           "updated_at) VALUES (?, ?, ?, 1, ?, ?, ?)",
                           (f"e{i}", seq, state[0], "b-x" if state[1] else None, "ubl_x" if state[2] else None, updated))
        totals.add(db, [(user, feature, ts, amount) for user, feature, amount, ts, _, _ in event_rows])
        db.execute("UPDATE settings SET value = ? WHERE key = 'outbox_watermark'", (str(watermark),))
        for i, (user, feature, amount, ts, status, updated) in enumerate(batch_rows):
            db.execute("INSERT INTO delivery_batches (id, user_id, feature, amount, timestamp, status, created_at, "
                       "updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)", (f"b{i}", user, feature, amount, ts, status, updated))
    return ledger


def state_of(ledger, i):
    row = ledger.one("SELECT status, batch_id FROM event_delivery WHERE event_id = ?", (f"e{i}",))
    return (None, False) if row is None else (row[0], row[1] is not None)


def expected(ledger, event_rows, batch_rows, w: reads.Window) -> reads.WindowUnits:
    """A plain Python count over the rows: what reconcile compares with Stripe."""
    total = pending = failed = delivered = meter_pending = 0
    for i, (user, feature, amount, ts, _, _) in enumerate(event_rows):
        if (user, feature) != (w.user_id, w.feature):
            continue
        status, batched = state_of(ledger, i)
        if w.start <= ts < w.end:
            total += amount
            pending += amount if status in PENDING else 0
            failed += amount if status == "failed" else 0
        if w.meter_start is not None and w.meter_start <= ts < w.meter_end:
            delivered += amount if status == "delivered" and not batched else 0
            meter_pending += amount if status in PENDING else 0
    for user, feature, amount, ts, status, _ in batch_rows:
        if (user, feature) == (w.user_id, w.feature) and status == "delivered" and w.meter_start is not None \
                and w.meter_start <= ts < w.meter_end:
            delivered += amount
    return reads.WindowUnits(total, pending, failed, delivered, meter_pending)


def recent(event_rows, batch_rows, w: reads.Window, since: int) -> bool:
    if w.meter_start is None:
        return False
    return any((u, f) == (w.user_id, w.feature) and w.meter_start <= ts < w.meter_end and state
               and state[0] == "delivered" and updated >= since for u, f, _, ts, state, updated in event_rows) or \
        any((u, f) == (w.user_id, w.feature) and w.meter_start <= ts < w.meter_end and status == "delivered"
            and updated >= since for u, f, _, ts, status, updated in batch_rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, batches, windows, st.integers(0, 100), st.integers(0, 45))
def test_window_units_equal_a_count_of_the_rows(event_rows, batch_rows, window_specs, recent_since, watermark):
    """Whatever the delivery states, batches, watermark and windows: the totals-and-exceptions
    reading of ``window_units`` is the count of every row."""
    ledger = build(event_rows, batch_rows, watermark)
    ws = [reads.Window(i, user, feature, span[0], span[1], *(meter or (None, None)))
          for i, (user, feature, span, meter) in enumerate(window_specs)]
    got = reads.window_units(ledger, ws)
    for w in ws:
        assert got.get(w.id, reads.WindowUnits()) == expected(ledger, event_rows, batch_rows, w), w
    assert reads.recent_deliveries(ledger, ws, recent_since) == {
        w.id for w in ws if recent(event_rows, batch_rows, w, recent_since)}
    # the temporary tables are empty again, and a second call on the same connection works
    for table in ("reconcile_windows", "reconcile_pieces"):
        assert ledger.one(f"SELECT COUNT(*) FROM {table}")[0] == 0
    assert reads.window_units(ledger, ws) == got
    ledger.close()


def test_customers_and_features_with_usage():
    ledger = build([("u1", "api_calls", 1, 5, None, 0)], [])
    with ledger.transaction() as db:
        for user, stripe_id in (("u1", "cus_1"), ("u2", "cus_2"), ("u3", None), ("u4", "cus_4")):
            db.execute("INSERT INTO customers (user_id, stripe_customer_id, created_at) VALUES (?, ?, 0)",
                       (user, stripe_id))
        for user in ("u1", "u2", "u3"):
            db.execute("INSERT INTO subscriptions (user_id, plan, interval, currency, anchor, status, created_at) "
                       "VALUES (?, 'pro', 'month', 'usd', 0, 'active', 0)", (user,))
    # every customer in Stripe that has had a subscription; given ids: those the ledger knows
    assert [c.user_id for c in reads.customers(ledger)] == ["u1", "u2"]
    assert reads.customers(ledger, ["u4", "nobody", "u3", "u4"]) == [
        reads.Customer("u3", None, True), reads.Customer("u4", "cus_4", False)]
    assert reads.features_with_usage(ledger, [("u1", "api_calls"), ("u1", "ai_tokens"), ("u2", "api_calls")]) == {
        ("u1", "api_calls")}
    assert reads.features_with_usage(ledger, []) == set()


def test_the_units_statement_reads_no_event_it_need_not():
    """SQLite's plan (a test, not the package: EXPLAIN is SQLite's own): the windows' pieces
    read the totals and the time index by customer, feature and time; of the delivery rows only
    the outbox's partial indexes (pending, failed, batched, late) and the events above the
    watermark; nothing scans usage_events or event_delivery whole."""
    ledger = build([], [])
    if ledger.dialect != "sqlite":
        pytest.skip("SQLite's query plan")
    reads.fill_windows(ledger, [])
    reads._fill_pieces(ledger, [])
    plan = [r[3] for r in ledger.all("EXPLAIN QUERY PLAN " + reads.UNITS_SQL, {"watermark": 1})]
    assert "SEARCH e USING COVERING INDEX usage_events_by_time (user_id=? AND feature=? AND timestamp>? AND timestamp<?)" \
        in plan, plan
    assert "SEARCH t USING PRIMARY KEY (user_id=? AND feature=? AND span=? AND since>? AND since<?)" in plan, plan
    for index in ("event_delivery_open", "event_delivery_failed", "event_delivery_by_batch (batch_id>?)",
                  "event_delivery_by_late_item (late_item_id>?)"):
        assert any(step.endswith(f"USING INDEX {index}") for step in plan), (index, plan)
    assert "SEARCH e USING INTEGER PRIMARY KEY (rowid>?)" in plan, plan
    assert not [step for step in plan if step in ("SCAN e", "SCAN d", "SCAN t")], plan
    recent = [r[3] for r in ledger.all("EXPLAIN QUERY PLAN " + reads.RECENT_SQL, {"since": 0})]
    assert "SEARCH e USING INDEX usage_events_by_time (user_id=? AND feature=? AND timestamp>? AND timestamp<?)" \
        in recent, recent
    assert not [step for step in recent if step in ("SCAN e", "SCAN d")], recent
