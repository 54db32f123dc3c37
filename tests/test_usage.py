from datetime import datetime, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

from usagebill import IdempotencyError, NotFoundError, ValidationError


def ts(*a):
    return int(datetime(*a, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def pro(billing):
    billing.customers.add("alice")
    billing.subscriptions.start("alice", "Pro")
    return billing


def test_docs_example_150_calls_cost_1500_cents(pro):
    for _ in range(3):
        pro.usage.record("alice", "api_calls", 50)
    s = pro.usage.get_summary("alice", "api_calls")
    assert (s.total_amount, s.estimated_cost, s.currency, s.events) == (150, 1500, "usd", 3)
    assert s.period_start <= pro.now_for("alice") < s.period_end


def test_fractional_price_rounded_once(billing):
    billing.customers.add("t")
    billing.subscriptions.start("t", "Team", "month")
    for _ in range(3):
        billing.usage.record("t", "ai_tokens", 1)  # 3 x 0.5 = 1.5 -> 2, not 3 x round(0.5)
    s = billing.usage.get_summary("t", "ai_tokens")
    assert s.unit_price == Decimal("0.5") and s.estimated_cost == 2


@pytest.mark.parametrize("amount, message", [
    (0, "must be positive"), (-3, "must be positive"), ("1.5", "smaller unit"), (2.5, "smaller unit"),
    ("abc", "positive whole number"), (True, "positive whole number"),
])
def test_bad_amounts(pro, amount, message):
    with pytest.raises(ValidationError, match=message):
        pro.usage.record("alice", "api_calls", amount)
    assert pro.usage.events("alice") == []


def test_whole_amount_as_string_or_decimal(pro):
    assert pro.usage.record("alice", "api_calls", "7").amount == 7
    assert pro.usage.record("alice", "api_calls", " 12 ").amount == 12
    with pytest.raises(ValidationError, match="without a decimal point"):
        pro.usage.record("alice", "api_calls", Decimal("3.0"))


def test_feature_without_usage_tracking_is_refused(billing):
    billing.customers.add("t")
    billing.subscriptions.start("t", "Team", "month")
    with pytest.raises(ValidationError, match="does not track usage"):
        billing.usage.record("t", "exports", 1)


def test_unknown_customer_and_no_subscription(billing):
    with pytest.raises(NotFoundError, match="unknown customer 'bob'"):
        billing.usage.record("bob", "api_calls")
    billing.customers.add("bob")
    with pytest.raises(NotFoundError, match="no active subscription"):
        billing.usage.record("bob", "api_calls")


def test_feature_not_in_plan(billing):
    billing.customers.add("p")
    billing.subscriptions.start("p", "Pay As You Go")
    with pytest.raises(NotFoundError, match="has no feature 'ai_tokens'"):
        billing.usage.record("p", "ai_tokens")
    with pytest.raises(NotFoundError, match="unknown feature 'api_call' \\(did you mean 'api_calls'\\?\\)"):
        billing.usage.record("p", "api_call")


def test_timestamp_window_is_stripes(billing):
    with freeze_time("2026-03-01T00:00:00Z"):
        billing.customers.add("a")
        billing.subscriptions.start("a", "Pro")
    with freeze_time("2026-04-10T00:00:00Z"):
        billing.usage.record("a", "api_calls", 1, at="2026-03-06T00:00:00Z")  # 35 days back
        with pytest.raises(ValidationError, match="more than 35 days"):
            billing.usage.record("a", "api_calls", 1, at="2026-03-05T23:59:59Z")
        billing.usage.record("a", "api_calls", 1, at=ts(2026, 4, 10, 0, 5))  # 5 minutes ahead
        with pytest.raises(ValidationError, match="more than 5 minutes"):
            billing.usage.record("a", "api_calls", 1, at=ts(2026, 4, 10, 0, 5, 1))


def test_timestamp_before_subscription_is_refused(billing):
    with freeze_time("2026-03-10T00:00:00Z"):
        billing.customers.add("a")
        billing.subscriptions.start("a", "Pro")
        with pytest.raises(ValidationError, match="before 'a''s subscription started"):
            billing.usage.record("a", "api_calls", 1, at="2026-03-09T00:00:00Z")


def test_bad_time_text(pro):
    with pytest.raises(ValidationError, match="not a time"):
        pro.usage.record("alice", "api_calls", 1, at="yesterday")


def test_idempotent_replay_returns_the_original(pro):
    first = pro.usage.record("alice", "api_calls", 5, idempotency_key="k1")
    again = pro.usage.record("alice", "api_calls", 5, idempotency_key="k1")
    assert again.id == first.id and again.replayed and not first.replayed
    assert pro.usage.get_summary("alice", "api_calls").total_amount == 5
    with pytest.raises(IdempotencyError, match="already used .* for 5 api_calls"):
        pro.usage.record("alice", "api_calls", 6, idempotency_key="k1")


def test_idempotency_keys_are_per_customer(pro):
    pro.customers.add("bob")
    pro.subscriptions.start("bob", "Pro")
    pro.usage.record("alice", "api_calls", 5, idempotency_key="same")
    pro.usage.record("bob", "api_calls", 5, idempotency_key="same")
    assert pro.usage.get_summary("bob", "api_calls").total_amount == 5


def test_callback_gets_new_events_only(config_path):
    from usagebill import Billing

    seen = []
    b = Billing.open(config_path, on_usage_recorded=seen.append)
    b.customers.add("a")
    b.subscriptions.start("a", "Pro")
    e = b.usage.record("a", "api_calls", 2, idempotency_key="x")
    b.usage.record("a", "api_calls", 2, idempotency_key="x")
    assert seen == [e]


def test_summary_counts_only_the_current_period(billing):
    with freeze_time("2026-01-31T00:00:00Z"):
        billing.customers.add("a")
        billing.subscriptions.start("a", "Pro")
        billing.usage.record("a", "api_calls", 10)
    with freeze_time("2026-02-28T00:00:00Z"):  # Jan 31 anchor -> next period starts Feb 28
        billing.usage.record("a", "api_calls", 4)
        s = billing.usage.get_summary("a", "api_calls")
        assert s.total_amount == 4
        assert s.period_start == ts(2026, 2, 28) and s.period_end == ts(2026, 3, 31)


def test_test_clock_time_is_the_customers_now(billing):
    billing.customers.add("c", test_clock="clock_1")
    billing.customers.set_clock_time("clock_1", ts(2030, 1, 1))
    billing.subscriptions.start("c", "Pro")
    e = billing.usage.record("c", "api_calls", 1)
    assert e.timestamp == ts(2030, 1, 1)
    billing.customers.set_clock_time("clock_1", ts(2030, 2, 2))
    assert billing.usage.get_summary("c", "api_calls").total_amount == 0


def test_the_facade_answers_what_callers_took_from_its_context(pro):
    """The CLI and the gateway need a customer's now and subscription: public methods, so
    nothing reaches into ``billing.ctx``."""
    with freeze_time("2026-01-20T00:00:00Z"):
        assert pro.now_for("alice") == pro.now() == 1768867200
    assert pro.subscriptions.active("alice") == pro.subscriptions.require("alice") == pro.subscriptions.get("alice")
    assert pro.subscriptions.active("nobody") is None


def test_event_ids_sort_by_when_they_were_made(monkeypatch):
    """``ube_`` + 12 hex digits of milliseconds + 20 random ones: unique, and later ones sort
    after earlier ones (so the id indexes grow at their end)."""
    import re
    import time as clock

    from usagebill.usage import new_event_id

    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"ube_[0-9a-f]{32}", i) for i in ids)
    now = clock.time_ns()
    monkeypatch.setattr(clock, "time_ns", lambda: now)
    first = [new_event_id() for _ in range(50)]
    monkeypatch.setattr(clock, "time_ns", lambda: now + 1_000_000)  # a millisecond later
    later = [new_event_id() for _ in range(50)]
    assert max(first) < min(later)
    assert {i[4:16] for i in first} == {f"{now // 1_000_000:012x}"}
