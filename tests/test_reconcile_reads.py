"""reconcile's ledger side over many customers (``ledger/reconcile_reads.py``): the units of
every window in one statement equal a plain Python count over the same rows, whatever the
delivery states, coalesced batches and windows; and the statement reads the time index."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usagebill.ledger import reconcile_reads as reads
from usagebill.ledger.db import open_ledger

USERS, FEATURES = ("u1", "u2"), ("api_calls", "ai_tokens")
# an event's delivery row: none (never sent), or (status, in a delivered batch?)
STATES = [None, ("queued", False), ("sending", False), ("batched", False), ("late", False), ("delivered", False),
          ("delivered", True), ("failed", False), ("invoiced", False)]
PENDING = {None, "queued", "sending", "batched", "late"}

events = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(FEATURES), st.integers(1, 9),
                            st.integers(0, 599), st.sampled_from(STATES), st.integers(0, 100)), max_size=40)
batches = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(FEATURES), st.integers(1, 50),
                             st.integers(0, 599), st.sampled_from(["delivered", "pending", "failed"]),
                             st.integers(0, 100)), max_size=8)
spans = st.tuples(st.integers(0, 600), st.integers(0, 600)).map(sorted)
windows = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(FEATURES), spans,
                             st.one_of(st.none(), spans)), min_size=1, max_size=10)


def build(event_rows, batch_rows):
    ledger = open_ledger(":memory:")
    with ledger.transaction() as db:
        for i, (user, feature, amount, ts, state, updated) in enumerate(event_rows):
            db.execute("INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, source) "
                       "VALUES (?, ?, ?, ?, ?, 0, 'record')", (f"e{i}", user, feature, amount, ts))
            if state is not None:
                db.execute("INSERT INTO event_delivery (event_id, status, attempts, batch_id, updated_at) "
                           "VALUES (?, ?, 1, ?, ?)", (f"e{i}", state[0], "b-x" if state[1] else None, updated))
        for i, (user, feature, amount, ts, status, updated) in enumerate(batch_rows):
            db.execute("INSERT INTO delivery_batches (id, user_id, feature, amount, timestamp, status, created_at, "
                       "updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)", (f"b{i}", user, feature, amount, ts, status, updated))
    return ledger


def expected(event_rows, batch_rows, w: reads.Window, recent_since: int) -> reads.WindowUnits:
    total = pending = failed = delivered = meter_pending = 0
    recent = False
    for user, feature, amount, ts, state, updated in event_rows:
        if (user, feature) != (w.user_id, w.feature):
            continue
        status = state and state[0]
        if w.start <= ts < w.end:
            total += amount
            pending += amount if status in PENDING else 0
            failed += amount if status == "failed" else 0
        if w.meter_start is not None and w.meter_start <= ts < w.meter_end:
            delivered += amount if status == "delivered" and not state[1] else 0
            meter_pending += amount if status in PENDING else 0
            recent = recent or (status == "delivered" and updated >= recent_since)
    for user, feature, amount, ts, status, updated in batch_rows:
        if (user, feature) == (w.user_id, w.feature) and status == "delivered" and w.meter_start is not None \
                and w.meter_start <= ts < w.meter_end:
            delivered += amount
            recent = recent or updated >= recent_since
    return reads.WindowUnits(total, pending, failed, delivered, meter_pending, recent)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, batches, windows, st.integers(0, 100))
def test_window_units_equal_a_count_of_the_rows(event_rows, batch_rows, window_specs, recent_since):
    ledger = build(event_rows, batch_rows)
    ws = [reads.Window(i, user, feature, span[0], span[1], *(meter or (None, None)))
          for i, (user, feature, span, meter) in enumerate(window_specs)]
    got = reads.window_units(ledger, ws, recent_since)
    for w in ws:
        assert got.get(w.id, reads.WindowUnits()) == expected(event_rows, batch_rows, w, recent_since), w
    # the temporary table is empty again, and a second call on the same connection works
    assert ledger.one("SELECT COUNT(*) FROM reconcile_windows")[0] == 0
    assert reads.window_units(ledger, ws, recent_since) == got
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


def test_the_units_statement_reads_the_time_index_only_over_the_windows():
    """SQLite's plan (a test, not the package: EXPLAIN is SQLite's own): the windows drive the
    join, and the events are found through usage_events_by_time by customer, feature and time,
    so only the compared time ranges are read."""
    ledger = build([], [])
    if ledger.dialect != "sqlite":
        pytest.skip("SQLite's query plan")
    reads.fill_windows(ledger, [])
    plan = " ".join(r[3] for r in ledger.all("EXPLAIN QUERY PLAN " + reads.UNITS_SQL, {"recent": 0}))
    assert "usage_events_by_time (user_id=? AND feature=? AND timestamp>? AND timestamp<?)" in plan, plan
    assert "SCAN e " not in plan + " ", plan
