"""The property of issue 8: whatever an operator does over a few billing periods (record, with
or without delivery, at once or back-dated; push; charge; advance the test clock; cancel;
subscribe again; change a price and sync), once the last period is over every unit in the
ledger is on exactly one of Stripe's finalized invoices (usage lines plus late-usage invoice
items), for every customer and feature, and reconcile agrees."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usagebill import Billing, UsagebillError
from usagebill.gateway import mapping
from usagebill.gateway.accounts import cancel, subscribe
from usagebill.gateway.clocks import advance_clock
from usagebill.gateway.delivery import push
from usagebill.gateway.reconcile import reconcile
from usagebill.gateway.sync import sync
from tests.gateway.test_sync import _repriced
from tests.lifecycle import on_clock

PLANS = {"alice": "Pro", "bob": "Pro", "tess": "Team"}  # Team: two usage features, a wallet
USERS = tuple(PLANS)
FEATURES = ("api_calls", "ai_tokens")

users = st.sampled_from(USERS)
features = st.sampled_from(FEATURES)
ops = st.one_of(
    st.tuples(st.just("record"), users, features, st.integers(1, 50), st.booleans(),
              st.sampled_from([0, 0, 20, 90, 3 * 86400])),
    st.tuples(st.just("charge"), users, features, st.integers(1, 150), st.booleans()),
    st.tuples(st.just("push")),
    st.tuples(st.just("advance"), st.sampled_from(["+30m", "+50m", "+2h", "+3d", "+12d", "+1month"])),
    st.tuples(st.just("cancel"), users),
    st.tuples(st.just("subscribe"), users),
    st.tuples(st.just("price"), st.sampled_from(list(PLANS.values())), features,  # sync moves live subscriptions
              st.sampled_from(["0.5", "5", "7.5", "10", "12"])),
)


def run(b: Billing, clock: str, op: tuple) -> None:
    conn = b.connection
    kind, *args = op
    if kind == "record":
        user, feature, amount, now, back = args
        sub = b.subscriptions.active(user)
        if sub is None or feature not in sub.plan.features:
            return
        at = b.now_for(user) - back
        try:
            b.usage.record(user, feature, amount, at=at if back else None, push=now)
        except UsagebillError as e:  # a closed period or before the subscription: refused, nothing written
            assert "already invoiced" in str(e) or "before" in str(e) or "previous subscription" in str(e), e
    elif kind == "charge":
        user, feature, units, now = args
        sub = b.subscriptions.active(user)
        if sub is not None and feature in sub.plan.features:
            b.charge(user, feature, units, push=now)
    elif kind == "push":
        assert push(b, conn).ok
    elif kind == "advance":
        advance_clock(b, conn, clock, args[0])
    elif kind == "cancel":
        if b.subscriptions.active(args[0]) is not None:
            try:
                cancel(b, conn, args[0])
            except UsagebillError as e:  # usage stamped after now (a second cancel in one frozen second)
                assert "after now" in str(e), e
    elif kind == "subscribe":
        if b.subscriptions.active(args[0]) is None:
            subscribe(b, conn, args[0], PLANS[args[0]], "month")
    elif kind == "price":
        plan, feature, price = args
        if feature in b.config.plan(plan).features:
            b.config = _repriced(b.config, plan, feature, price)
            sync(b, conn)


def billed_units(b: Billing, user: str, feature: str) -> int:
    """Units of a feature on the customer's finalized invoices: usage lines and late items."""
    client = b.connection.client
    product = mapping.get(b.ledger, mapping.feature_product_key(feature))
    total = 0
    customer = b.customers.get(user).stripe_customer_id
    for inv in client.v1.invoices.list(params={"customer": customer, "limit": 100}).auto_paging_iter():
        if inv.status in ("draft", "void"):
            continue
        for line in client.v1.invoices.line_items.list(inv.id, params={"limit": 100}).auto_paging_iter():
            details = line.pricing.price_details
            if details is not None and details.product == product:
                total += line.quantity  # metered lines, and usage before a price change (a proration item)
            elif line.metadata.to_dict().get("usagebill_feature") == feature:
                total += line.quantity  # late usage
    return total


# LIFECYCLE_EXAMPLES=400 for a longer hunt (each example is a few billing periods on the sandbox)
@settings(max_examples=int(os.environ.get("LIFECYCLE_EXAMPLES", 8)), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(ops, min_size=4, max_size=20))
def test_every_unit_is_billed_exactly_once(config_path, tmp_path_factory, steps):
    play(config_path, tmp_path_factory.mktemp("ledger") / "ledger.db", steps)


def play(config_path, db, steps) -> None:
    """The customers on one test clock from Jan 1, the steps, then the check."""
    with Billing.open(config_path, db) as b:
        clock = on_clock(b, "alice")
        for user in USERS[1:]:
            on_clock(b, user, PLANS[user], clock=clock)
        for op in steps:
            run(b, clock, op)
        check_billed_once(b, clock, steps)


def check_billed_once(b: Billing, clock: str, steps) -> None:
    """The end: deliver what is left, let the last period end and every invoice finalize; then
    each customer's ledger units are its units on Stripe's final invoices, and reconcile agrees."""
    assert push(b, b.connection).ok
    now = b.now_for(USERS[0])
    ends = [s.period(now)[1] for s in map(b.subscriptions.active, USERS) if s]
    advance_clock(b, b.connection, clock, str(max(ends + [now]) + 2 * 3600))
    for user in USERS:
        for feature in FEATURES:
            ledger = b.ledger.one("SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE user_id = ? AND feature = ?",
                                  (user, feature))[0]
            assert billed_units(b, user, feature) == ledger, (user, feature, steps)
    r = reconcile(b, b.connection, periods=24)
    assert r.ok, (r.differences, steps)


@pytest.mark.parametrize("steps", [
    # the cases, as sequences: late pending usage; cancel and re-subscribe in one second
    [("record", "alice", "api_calls", 5, False, 0), ("advance", "+1month"), ("advance", "+2h"), ("push",)],
    [("advance", "+12d"), ("record", "alice", "api_calls", 42, True, 0), ("cancel", "alice"), ("subscribe", "alice"),
     ("record", "alice", "api_calls", 7, True, 0)],
    [("advance", "+1month"), ("advance", "+30m"), ("record", "bob", "api_calls", 9, True, 90), ("advance", "+50m")],
    # a cancel at the very second a period begins: that second is the final invoice's
    [("charge", "alice", "api_calls", 101, False), ("push",), ("advance", "+1month"), ("cancel", "alice")],
    # found by the property test: both cancelled as a period begins (drafts finalize after)
    [("charge", "alice", "api_calls", 116, True), ("charge", "alice", "api_calls", 4, False), ("advance", "+1month"), ("cancel", "alice"),
     ("record", "bob", "api_calls", 18, False, 0), ("cancel", "bob")],
    # ... and a second cancel in one frozen second, of a subscription billing from the next
    [("cancel", "bob"), ("subscribe", "bob"), ("record", "bob", "api_calls", 18, False, 0), ("push",), ("cancel", "bob")],
    # a price change between usage delivered and usage pending until its period closed
    [("record", "alice", "api_calls", 30, True, 0), ("advance", "+12d"), ("price", "Pro", "api_calls", "12"), ("record", "alice", "api_calls", 4, False, 0),
     ("advance", "+1month"), ("advance", "+2h"), ("push",)],
    # found by the property test: repriced again in the grace hour of a period repriced mid-way
    [("record", "alice", "api_calls", 1, False, 0), ("advance", "+30m"), ("record", "alice", "api_calls", 1, False, 0), ("push",),
     ("price", "Pro", "api_calls", "5"), ("record", "alice", "api_calls", 1, False, 0), ("advance", "+1month"), ("record", "alice", "api_calls", 1, False, 0),
     ("price", "Pro", "api_calls", "7.5")],
    # ... and late usage of a re-subscription whose first period starts where the cancelled one ended
    [("cancel", "bob"), ("subscribe", "bob"), ("advance", "+1month"), ("record", "bob", "api_calls", 11, False, 20),
     ("advance", "+12d")],
])
def test_known_sequences(config_path, tmp_path, steps):
    play(config_path, tmp_path / "l.db", steps)
