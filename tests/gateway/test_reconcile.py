import pytest

from usagebill.errors import NotFoundError
from usagebill.gateway.delivery import push
from usagebill.gateway.reconcile import minute_window, reconcile
from tests.gateway.metering import DAY, customer, now, record_many, setup_stripe


@pytest.fixture
def stripe_side(billing, conn):
    setup_stripe(billing, conn)
    return conn


def test_minute_window_widens_to_whole_minutes():
    assert minute_window(120, 240) == (120, 240)
    assert minute_window(125, 241) == (120, 300)
    assert minute_window(179, 299) == (120, 300)


def test_delivered_usage_matches_stripe_per_customer_feature_and_period(billing, stripe_side):
    t = now()
    anchor = t - 33 * DAY + 17  # not on a minute: the windows are widened; the period turned 2-5 days ago
    customer(billing, stripe_side, "alice", "Team", anchor=anchor)
    customer(billing, stripe_side, "bob", anchor=anchor)
    record_many(billing, "alice", 4, at=t - 20 * DAY, amount=lambda i: 5)
    record_many(billing, "alice", 3, "ai_tokens", at=t - DAY, amount=lambda i: 7)
    record_many(billing, "bob", 2, at=anchor, amount=lambda i: 1)  # the first second of the first period
    push(billing, stripe_side)
    record_many(billing, "bob", 3, at=t - DAY)
    push(billing, stripe_side, coalesce=True)
    r = reconcile(billing, stripe_side)
    assert r.ok and r.differences == []
    got = {(x.user_id, x.feature, x.period_start): (x.ledger, x.stripe) for x in r.lines}
    first, second = (anchor, billing.ctx.subscription("bob").period(anchor)[1])
    assert got == {
        ("alice", "api_calls", second): (0, 0), ("alice", "api_calls", first): (20, 20),
        ("alice", "ai_tokens", second): (21, 21), ("alice", "ai_tokens", first): (0, 0),
        ("bob", "api_calls", second): (3, 3), ("bob", "api_calls", first): (2, 2),
    }
    assert all(x.start_time % 60 == 0 and x.end_time % 60 == 0 for x in r.lines)
    assert all(x.start_time <= x.period_start and x.end_time >= min(x.period_end, t) for x in r.lines)


def test_an_extra_meter_event_in_stripe_is_a_difference(billing, stripe_side):
    cus = customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 3, amount=lambda i: 10)
    push(billing, stripe_side)
    stripe_side.client.v1.billing.meter_events.create(params={
        "event_name": "api_calls", "identifier": "sent-behind-our-back",
        "payload": {"stripe_customer_id": cus, "value": "4"}})
    r = reconcile(billing, stripe_side, user_id="alice")
    assert not r.ok
    (d,) = r.differences
    assert (d.user_id, d.feature, d.ledger, d.stripe, d.difference, d.pending) == ("alice", "api_calls", 30, 34, 4, 0)


def test_undelivered_events_show_as_pending_differences(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 2)
    push(billing, stripe_side)
    record_many(billing, "alice", 5)  # in the ledger, not in Stripe yet
    r = reconcile(billing, stripe_side)
    assert r.ok and [x.pending for x in r.lines] == [5]  # Stripe matches what was delivered


def test_a_customer_not_in_stripe_cannot_be_reconciled(billing, stripe_side):
    customer(billing, stripe_side, "local", in_stripe=False)
    with pytest.raises(NotFoundError, match="not in Stripe"):
        reconcile(billing, stripe_side, user_id="local")
    assert reconcile(billing, stripe_side).lines == []


def test_a_difference_right_after_deliveries_says_stripe_may_not_show_them_yet(billing, stripe_side):
    """``recent`` is asked of the open periods that differ, and only says so when something in
    their meter window was confirmed in the last minutes."""
    cus = customer(billing, stripe_side, "alice")
    customer(billing, stripe_side, "bob")
    record_many(billing, "alice", 3, amount=lambda i: 10)
    record_many(billing, "bob", 2, amount=lambda i: 1)
    push(billing, stripe_side)
    stripe_side.client.v1.billing.meter_events.create(params={
        "event_name": "api_calls", "identifier": "sent-behind-our-back",
        "payload": {"stripe_customer_id": cus, "value": "4"}})
    r = reconcile(billing, stripe_side)
    (d,) = r.differences
    assert (d.user_id, d.ledger, d.stripe, d.recent) == ("alice", 30, 34, True)
    assert [x.recent for x in r.lines if x.user_id == "bob"] == [False]  # matches: not asked
    with billing.ledger.transaction() as db:  # the deliveries are an hour old now
        db.execute("UPDATE event_delivery SET updated_at = updated_at - 3600")
    (d,) = reconcile(billing, stripe_side).differences
    assert (d.user_id, d.difference, d.recent) == ("alice", 4, False)
