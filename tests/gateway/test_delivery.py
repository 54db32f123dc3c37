import random
from collections import Counter

import pytest

from usagebill.ledger import outbox
from usagebill.gateway.delivery import delivery_status, push
from usagebill.gateway.meter_sender import RateLimiter, RetryPolicy
from usagebill.sandbox import FaultConfig
from usagebill.sandbox.faults import FaultInjector

from tests.gateway.metering import DAY, customer, ledger_totals, meter_rows, now, record_many, setup_stripe, stripe_totals


@pytest.fixture
def stripe_side(billing, conn):
    setup_stripe(billing, conn)
    return conn


def faults(conn, **rates):
    conn.sandbox.faults = FaultInjector(FaultConfig(**rates))


def test_push_sends_each_event_with_its_ledger_id_and_marks_it_delivered(billing, stripe_side, requests_seen):
    cus = customer(billing, stripe_side, "alice")
    ids = record_many(billing, "alice", 3, amount=lambda i: 10 * (i + 1))
    requests_seen.reset()
    r = push(billing, stripe_side)
    assert (r.delivered, r.already_delivered, r.failed, r.still_pending, r.requests) == (3, 0, 0, 0, 2)
    # the stream validates later: push then reads Stripe's meter error reports (none here)
    assert requests_seen.calls == [("POST", "/v2/billing/meter_event_session"), ("POST", "/v2/billing/meter_event_stream"),
                                   ("GET", "/v2/core/events")]
    events = {e.id: e for e in billing.usage.events("alice")}
    assert sorted(meter_rows(stripe_side.sandbox)) == sorted(
        (i, "api_calls", cus, events[i].amount, events[i].timestamp) for i in ids
    )
    assert [outbox.event_state(billing.ledger, i) for i in ids] == [("delivered", None)] * 3
    requests_seen.reset()
    again = push(billing, stripe_side)
    # nothing to send; reports of a recent stream may still come, so they are looked for
    assert (again.delivered, again.requests, requests_seen.calls) == (0, 0, [("GET", "/v2/core/events")])


def test_250_pending_events_take_three_stream_requests(billing, stripe_side, requests_seen):
    customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 250)
    requests_seen.reset()
    r = push(billing, stripe_side)
    assert r.delivered == 250 and r.requests == 4
    assert Counter(path for _, path in requests_seen.calls) == {
        "/v2/billing/meter_event_session": 1, "/v2/billing/meter_event_stream": 3, "/v2/core/events": 1,
    }


def test_push_of_one_customer_or_some_events_leaves_the_others(billing, stripe_side, requests_seen):
    customer(billing, stripe_side, "alice")
    customer(billing, stripe_side, "bob")
    a = record_many(billing, "alice", 2)
    b = record_many(billing, "bob", 3)
    requests_seen.reset()
    assert push(billing, stripe_side, event_ids=[b[0]]).delivered == 1
    assert requests_seen.calls == [("POST", "/v1/billing/meter_events")]  # a lone event: no session needed
    r = push(billing, stripe_side, user_id="alice")
    assert (r.delivered, r.still_pending) == (2, 0)
    assert delivery_status(billing).pending == 2
    assert {row[0] for row in meter_rows(stripe_side.sandbox)} == {*a, b[0]}


def test_coalesce_sends_one_meter_event_per_customer_feature_and_period(billing, stripe_side, requests_seen):
    t = now()
    anchor = t - 40 * DAY  # monthly: the current period began about 10 days ago
    alice = customer(billing, stripe_side, "alice", "Team", anchor=anchor)
    bob = customer(billing, stripe_side, "bob", "Pro", anchor=anchor)
    record_many(billing, "alice", 5, at=t - 20 * DAY, amount=lambda i: i + 1)  # previous period: 15
    record_many(billing, "alice", 4, at=t - DAY, amount=lambda i: 2)  # current period: 8
    record_many(billing, "alice", 3, "ai_tokens", at=t - 2 * DAY, amount=lambda i: 100)
    record_many(billing, "bob", 6, at=t - 3 * DAY)
    requests_seen.reset()
    r = push(billing, stripe_side, coalesce=True)
    assert (r.delivered, r.batches, r.still_pending, r.requests) == (18, 4, 0, 2)
    rows = meter_rows(stripe_side.sandbox)
    assert all(identifier.startswith("ubb_") for identifier, *_ in rows)
    assert sorted((cus, name, value, ts) for _, name, cus, value, ts in rows) == sorted([
        (alice, "api_calls", 15, t - 20 * DAY),
        (alice, "api_calls", 8, t - DAY),
        (alice, "ai_tokens", 300, t - 2 * DAY),
        (bob, "api_calls", 6, t - 3 * DAY),
    ])
    batches = billing.ledger.all("SELECT id, status, amount FROM delivery_batches ORDER BY amount")
    assert [(b["status"], b["amount"]) for b in batches] == [("delivered", 6), ("delivered", 8), ("delivered", 15),
                                                              ("delivered", 300)]
    assert delivery_status(billing).delivered == 18


def test_a_coalesced_batch_is_resent_with_the_same_identifier(billing, stripe_side):
    cus = customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 10, amount=lambda i: 3)
    faults(stripe_side, rate_5xx=1.0)  # Stripe down: the batch is written, not delivered
    r = push(billing, stripe_side, coalesce=True, max_rounds=2)
    assert r.error and "tried 2 times" in r.error and r.still_pending == 10 and r.delivered == 0
    (batch,) = billing.ledger.all("SELECT id, status, amount FROM delivery_batches")
    assert (batch["status"], batch["amount"]) == ("pending", 30)
    faults(stripe_side)
    record_many(billing, "alice", 2, amount=lambda i: 1)  # newer events: sent on their own this time
    r = push(billing, stripe_side)  # even without --coalesce, the written batch goes as written
    assert (r.delivered, r.batches, r.still_pending) == (12, 1, 0)
    rows = meter_rows(stripe_side.sandbox)
    assert sorted(v for _, _, _, v, _ in rows) == [1, 1, 30]
    assert batch["id"] in {identifier for identifier, *_ in rows}
    assert stripe_totals(rows) == {(cus, "api_calls"): 32} == ledger_totals(billing)


def test_a_crash_after_stripe_accepted_is_not_billed_twice(billing, stripe_side, monkeypatch):
    cus = customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 5, amount=lambda i: 2)
    record_many(billing, "alice", 5, amount=lambda i: 3)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed between Stripe's answer and the ledger write

    with monkeypatch.context() as m:
        m.setattr(outbox, "mark_events", crash)
        with pytest.raises(KeyboardInterrupt):
            push(billing, stripe_side, batch_size=5, concurrency=1)  # one request, then the crash
    assert len(meter_rows(stripe_side.sandbox)) == 5 and delivery_status(billing).pending == 10
    # the next push coalesces only what was never sent; the first five go again on their own
    r = push(billing, stripe_side, coalesce=True)
    assert (r.delivered, r.batches, r.still_pending) == (10, 1, 0)
    assert stripe_totals(meter_rows(stripe_side.sandbox)) == {(cus, "api_calls"): 25} == ledger_totals(billing)


def test_a_refused_event_fails_with_stripes_reason_and_the_rest_of_its_chunk_goes(billing, stripe_side):
    alice = customer(billing, stripe_side, "alice")
    bob = customer(billing, stripe_side, "bob")
    record_many(billing, "alice", 2)
    gone = record_many(billing, "bob", 1)
    record_many(billing, "alice", 1)
    stripe_side.client.v1.customers.delete(bob)  # Stripe no longer knows bob
    r = push(billing, stripe_side)
    # the stream accepts the batch and drops bob's event later; push finds it in the error reports
    assert (r.delivered, r.failed, r.still_pending) == (3, 1, 0) and not r.ok
    assert r.failures == [(gone[0], "Stripe dropped it after accepting it (meter_event_customer_not_found): "
                                    f"No such customer: '{bob}'")]
    s = delivery_status(billing)
    assert (s.pending, s.delivered, s.failed) == (0, 3, 1)
    assert [(f.id, f.user_id, f.reason) for f in s.failed_events] == [(gone[0], "bob", r.failures[0][1])]
    assert stripe_totals(meter_rows(stripe_side.sandbox)) == {(alice, "api_calls"): 3}
    assert push(billing, stripe_side).requests == 0  # failed events are not retried


def test_an_outage_in_the_middle_of_a_refused_chunk_records_the_verdicts_obtained(billing, stripe_side, monkeypatch):
    """Stream refused, then one by one (v1) until Stripe goes away: the events with a verdict
    are delivered, the rest of the chunk stays pending, and the next push sends only those."""
    from usagebill.gateway import meter_sender

    alice = customer(billing, stripe_side, "alice")
    ids = record_many(billing, "alice", 5)
    real_one, calls = meter_sender.MeterEventSender.one, []

    def refuse(self, events):
        raise meter_sender.Refused("one of them is bad")

    def one(self, event):
        calls.append(event.identifier)
        if len(calls) > 2:
            raise meter_sender.Unavailable("meter event: Stripe went away")
        return real_one(self, event)

    with monkeypatch.context() as m:
        m.setattr(meter_sender.MeterEventSender, "stream", refuse)
        m.setattr(meter_sender.MeterEventSender, "one", one)
        r = push(billing, stripe_side, concurrency=1)
    assert (r.delivered, r.still_pending) == (2, 3) and "went away" in r.error
    assert dict(billing.ledger.all("SELECT event_id, status FROM event_delivery WHERE status = 'delivered'")) == {
        i: "delivered" for i in ids[:2]}
    r = push(billing, stripe_side)
    assert (r.delivered, r.still_pending) == (3, 0)
    assert sorted(i for i, *_ in meter_rows(stripe_side.sandbox)) == sorted(ids)
    assert stripe_totals(meter_rows(stripe_side.sandbox)) == {(alice, "api_calls"): 5}


def test_an_event_stripe_already_has_counts_as_already_delivered(billing, stripe_side):
    cus = customer(billing, stripe_side, "alice")
    (first,) = record_many(billing, "alice", 1, amount=lambda i: 4)
    stripe_side.client.v1.billing.meter_events.create(params={
        "event_name": "api_calls", "identifier": first, "payload": {"stripe_customer_id": cus, "value": "4"}})
    billing.customers.add("bob", stripe_customer_id="cus_nobody")  # linked to a customer Stripe lacks
    billing.subscriptions.start("bob", "Pro")
    bad = record_many(billing, "bob", 1)
    # the stream takes the chunk: it keeps the duplicate once, without saying so, and drops
    # bob's event (unknown customer) later, as its error report says
    r = push(billing, stripe_side)
    assert (r.delivered, r.already_delivered, r.failed) == (1, 0, 1)
    assert outbox.event_state(billing.ledger, first) == ("delivered", None)
    assert outbox.event_state(billing.ledger, bad[0])[0] == "failed"


def test_ledger_only_customer_stays_pending_and_is_reported(billing, stripe_side, requests_seen):
    customer(billing, stripe_side, "local", in_stripe=False)
    record_many(billing, "local", 3)
    requests_seen.reset()
    r = push(billing, stripe_side, coalesce=True)
    assert (r.delivered, r.failed, r.still_pending, r.requests) == (0, 0, 3, 0) and r.ok
    assert r.waiting == {"customer local is not in Stripe (usagebill customers add local)": 3}
    assert requests_seen.calls == []
    s = delivery_status(billing)
    assert (s.pending, s.failed, s.not_in_stripe) == (3, 0, {"local": 3})
    assert billing.ledger.all("SELECT * FROM delivery_batches") == []


def test_feature_without_a_meter_waits_for_sync(billing, conn):
    cus = conn.client.v1.customers.create(params={"name": "a"}).id
    billing.customers.add("a", stripe_customer_id=cus)
    billing.subscriptions.start("a", "Pro")
    record_many(billing, "a", 2)
    r = push(billing, conn)
    assert r.waiting == {"feature api_calls has no Stripe meter (usagebill sync)": 2} and r.still_pending == 2


@pytest.mark.parametrize("coalesce", [False, True])
def test_with_faults_repeated_pushes_deliver_every_event_exactly_once(billing, stripe_side, coalesce):
    t = now()
    for user in ("a", "b", "c"):
        customer(billing, stripe_side, user, "Team", anchor=t - 40 * DAY)
        record_many(billing, user, 150, at=t - 20 * DAY, amount=lambda i: i % 7 + 1)
        record_many(billing, user, 150, "ai_tokens", at=t - DAY, amount=lambda i: i % 5 + 1)
    faults(stripe_side, rate_5xx=0.2, rate_429=0.2, rate_drop=0.2, seed=11)
    runs = []
    for _ in range(30):
        r = push(billing, stripe_side, coalesce=coalesce, batch_size=25, max_rounds=2)
        runs.append(r)
        if r.still_pending == 0:
            break
    assert runs[-1].still_pending == 0 and all(x.failed == 0 for x in runs)
    assert sum(x.delivered + x.already_delivered for x in runs) == 900
    rows = meter_rows(stripe_side.sandbox)
    assert max(Counter(identifier for identifier, *_ in rows).values()) == 1
    assert stripe_totals(rows) == ledger_totals(billing)
    assert delivery_status(billing).delivered == 900


def test_an_expired_session_is_renewed(billing, config_path):
    from usagebill.gateway.client import connect
    from usagebill.sandbox import Sandbox

    offset = [0]
    conn = connect(ledger_path=billing.db_path, sandbox=Sandbox(clock=lambda: now() + offset[0]))
    setup_stripe(billing, conn)
    customer(billing, conn, "alice")
    record_many(billing, "alice", 30)
    sessions = []
    original = conn.client.v2.billing.meter_event_session.create
    conn.client.v2.billing.meter_event_session.create = lambda *a, **k: sessions.append(1) or original(*a, **k)

    def sixteen_minutes_later(result):
        offset[0] += 16 * 60

    r = push(billing, conn, batch_size=10, on_progress=sixteen_minutes_later, concurrency=1)  # one request at a time
    assert (r.delivered, r.still_pending, len(sessions)) == (30, 0, 3), r.error


def test_stripe_unreachable_leaves_everything_pending(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 5)
    faults(stripe_side, rate_drop=1.0, seed=3)
    r = push(billing, stripe_side, max_rounds=3)
    assert r.requests == 3 and r.delivered == 0 and r.still_pending == 5
    assert "cannot reach Stripe" in r.error and "tried 3 times" in r.error


def test_bad_arguments(billing, conn):
    from usagebill.errors import NotFoundError, ValidationError

    with pytest.raises(ValidationError, match="batch_size"):
        push(billing, conn, batch_size=101)
    with pytest.raises(NotFoundError, match="unknown customer"):
        push(billing, conn, user_id="ghost")


def test_rate_limiter_spaces_requests():
    clock, slept = [100.0], []

    def sleep(s):
        slept.append(round(s, 6))
        clock[0] += s

    limiter = RateLimiter(20, clock=lambda: clock[0], sleep=sleep)
    for _ in range(4):
        limiter.wait()
    assert slept == [0.05, 0.05, 0.05]
    RateLimiter(None, sleep=sleep).wait()
    assert len(slept) == 3


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    policy, rng = RetryPolicy(base_delay=0.5, max_delay=4.0), random.Random(1)
    delays = [policy.delay(n, rng) for n in range(6)]
    for n, d in enumerate(delays):
        ceiling = min(4.0, 0.5 * 2**n)
        assert ceiling / 2 <= d <= ceiling
    assert len(set(delays)) == 6
