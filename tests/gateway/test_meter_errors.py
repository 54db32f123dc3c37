"""Stripe's asynchronous meter errors on usagebill's side: the stream accepts a batch and drops
its bad events later; push and reconcile read the error reports (gateway/meter_errors.py) and
mark the named ledger events, or coalesced batches, failed with Stripe's reason
(ledger/drops.py), so status lists them and reconcile counts them."""

import pytest
import stripe
from freezegun import freeze_time

from usagebill.gateway import meter_errors
from usagebill.ledger import outbox
from usagebill.gateway.delivery import delivery_status, push
from usagebill.gateway.meter_sender import MeterEvent, MeterEventSender, RetryPolicy
from usagebill.gateway.reconcile import reconcile
from usagebill.sandbox.resources import meter_errors as sandbox_reports

from tests.gateway.metering import DAY, customer, meter_rows, now, record_many, setup_stripe, stripe_totals

NOT_FOUND = "Stripe dropped it after accepting it (meter_event_customer_not_found): No such customer: 'cus_nobody'"


@pytest.fixture
def stripe_side(billing, conn):
    setup_stripe(billing, conn)
    return conn


def ghost(billing, user_id="bob"):
    """A customer linked to a Stripe id Stripe does not have: the stream drops its events."""
    billing.customers.add(user_id, stripe_customer_id="cus_nobody")
    billing.subscriptions.start(user_id, "Pro")


def test_push_marks_events_stripe_dropped_failed_and_status_lists_them(billing, stripe_side):
    alice = customer(billing, stripe_side, "alice")
    ghost(billing)
    good = record_many(billing, "alice", 2)
    bad = record_many(billing, "bob", 2)
    r = push(billing, stripe_side)
    assert (r.delivered, r.failed, r.still_pending, r.ok) == (2, 2, 0, False)
    assert sorted(r.failures) == sorted((i, NOT_FOUND) for i in bad)
    assert [outbox.event_state(billing.ledger, i) for i in good] == [("delivered", None)] * 2
    assert [outbox.event_state(billing.ledger, i) for i in bad] == [("failed", NOT_FOUND)] * 2
    s = delivery_status(billing)
    assert (s.delivered, s.failed) == (2, 2)
    assert {(f.id, f.user_id, f.reason) for f in s.failed_events} == {(i, "bob", NOT_FOUND) for i in bad}
    assert stripe_totals(meter_rows(stripe_side.sandbox)) == {(alice, "api_calls"): 2}
    again = push(billing, stripe_side)  # the same reports are not counted twice
    assert (again.delivered, again.failed) == (0, 0)


def test_a_dropped_coalesced_batch_fails_all_its_events(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    ghost(billing)
    bad = record_many(billing, "bob", 5)
    record_many(billing, "alice", 3)
    r = push(billing, stripe_side, coalesce=True)
    assert (r.delivered, r.failed, r.batches) == (3, 5, 2)
    assert [outbox.event_state(billing.ledger, i)[0] for i in bad] == ["failed"] * 5
    assert billing.ledger.one("SELECT status FROM delivery_batches WHERE user_id = 'bob'")[0] == "failed"
    assert delivery_status(billing).failed == 5


def test_reconcile_absorbs_reports_that_come_after_the_push(billing, stripe_side, monkeypatch):
    customer(billing, stripe_side, "alice")
    ghost(billing)
    record_many(billing, "alice", 2)
    bad = record_many(billing, "bob", 1)
    with monkeypatch.context() as m:
        m.setattr(meter_errors, "reports_may_be_due", lambda ledger: False)  # Stripe has not reported yet
        r = push(billing, stripe_side)
    assert (r.delivered, r.failed) == (3, 0)
    assert outbox.event_state(billing.ledger, bad[0])[0] == "delivered"
    result = reconcile(billing, stripe_side, user_id="alice")
    assert (result.dropped, result.unattributed_drops, result.ok) == (1, 0, True)
    assert outbox.event_state(billing.ledger, bad[0]) == ("failed", NOT_FOUND)
    assert reconcile(billing, stripe_side, user_id="alice").dropped == 0  # read once


def test_drops_stripe_does_not_name_are_counted_and_reconcile_shows_them(billing, stripe_side, monkeypatch):
    monkeypatch.setattr(sandbox_reports, "MAX_SAMPLES", 1)  # Stripe's reports carry samples only
    with freeze_time("2026-03-01T00:00:00Z") as clock:
        t = now()
        customer(billing, stripe_side, "alice", anchor=t - 40 * DAY)
        record_many(billing, "alice", 2, at=t - 2 * DAY)
        late = record_many(billing, "alice", 3, at=t - 35 * DAY + 60)  # valid when recorded...
        clock.tick(120)  # ...too old for Stripe by the time they are pushed
        r = push(billing, stripe_side)
        assert (r.delivered, r.failed, r.unattributed_drops) == (4, 1, 2)
        assert [outbox.event_state(billing.ledger, i)[0] for i in late].count("failed") == 1
        result = reconcile(billing, stripe_side)
    # the two unnamed drops stay delivered in the ledger: the difference shows them
    (d,) = result.differences
    assert (d.ledger, d.stripe, d.difference) == (2, 0, -2)
    assert not result.ok


def test_a_new_ledger_reads_every_report_stripe_keeps(billing, stripe_side):
    """Without a saved position, all reports (30 days on Stripe) are read once."""
    ghost(billing)
    record_many(billing, "bob", 2)  # two: a lone event goes through v1, refused at once
    push(billing, stripe_side)
    billing.ledger.conn.execute("DELETE FROM settings WHERE key LIKE 'meter_%'")
    report = meter_errors.read_drops(stripe_side)
    assert [(d.code, d.reason) for d in report.drops] == [("meter_event_customer_not_found", NOT_FOUND)] * 2


def test_reports_are_read_page_after_page(billing, stripe_side, monkeypatch):
    ghost(billing)
    for _ in range(3):  # three pushes, three reports
        record_many(billing, "bob", 2)
        push(billing, stripe_side)
    whole = meter_errors.read_drops(stripe_side)
    requests = []
    raw = stripe_side.client.raw_request
    monkeypatch.setattr(stripe_side.client, "raw_request", lambda *a, **k: requests.append(a) or raw(*a, **k))
    monkeypatch.setattr(meter_errors, "PAGE", 1)
    paged = meter_errors.read_drops(stripe_side)
    assert len(requests) >= 3 and requests[1][1].startswith("/v2/core/events?")  # the next pages, as Stripe names them
    assert sorted(paged.drops, key=repr) == sorted(whole.drops, key=repr) and len(whole.drops) == 6
    assert (paged.newest, paged.newest_ids) == (whole.newest, whole.newest_ids)


class _Refusing:
    """A client whose v1 meter event create raises the given Stripe error."""

    def __init__(self, error):
        create = lambda params=None, options=None: (_ for _ in ()).throw(error)  # noqa: E731
        self.v1 = type("V1", (), {"billing": type("B", (), {"meter_events": type("M", (), {"create": staticmethod(create)})})})


def _verdict(error):
    conn = type("Conn", (), {"client": _Refusing(error)})()
    sender = MeterEventSender(conn, rate=None, policy=RetryPolicy(rounds=1, base_delay=0))
    return sender.one(MeterEvent("ube_1", "api_calls", "cus_1", 1, 0))


def test_a_duplicate_is_recognised_by_stripes_code_then_by_its_message():
    by_code = stripe.InvalidRequestError("Identifier taken.", "identifier", code="resource_already_exists")
    by_message = stripe.InvalidRequestError(
        "An event already exists with identifier ube_1. Identifiers must be unique within a rolling 24 hour period.",
        "identifier")
    other = stripe.InvalidRequestError("No such customer: 'cus_1'", "payload[stripe_customer_id]",
                                       code="resource_missing")
    assert _verdict(by_code) == ("duplicate", None)
    assert _verdict(by_message) == ("duplicate", None)
    assert _verdict(other)[0] == "failed"


def test_cli_push_exits_4_and_status_shows_stripes_reason(runner, billing):
    assert runner("sync").exit_code == 0
    assert runner("customers", "add", "bob").exit_code == 0
    assert runner("subscribe", "bob", "Pro").exit_code == 0
    # Stripe has lost the customer since: its events will be dropped
    billing.ledger.conn.execute("UPDATE customers SET stripe_customer_id = 'cus_nobody' WHERE user_id = 'bob'")
    for _ in range(2):  # two, so that push streams them (a lone event goes through v1)
        assert runner("record", "bob", "api_calls", "1", "--no-push").exit_code == 0
    pushed = runner("push")
    assert pushed.exit_code == 4, pushed.output
    assert "Stripe dropped it after accepting it (meter_event_customer_not_found)" in pushed.output
    import json

    status = json.loads(runner("status", "--json").stdout)
    assert status["failed"] == 2
    assert {f["reason"] for f in status["failed_events"]} == {NOT_FOUND}
