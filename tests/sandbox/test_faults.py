"""Fault injection, and the guarantee it exists for: retried deliveries count once."""

import collections

import pytest
import stripe

from tests.sandbox.raw import call
from usagebill.sandbox import FaultConfig, Sandbox, SandboxHTTPClient
from usagebill.sandbox.faults import DroppedConnection
from usagebill.sandbox.resources.meters import aggregate


def test_parse_env_format_and_refuse_nonsense(monkeypatch):
    assert FaultConfig.parse("5xx=0.1, 429=0.05,drop=0.05,seed=7") == FaultConfig(0.1, 0.05, 0.05, 7)
    for bad in ("5xx", "teapot=0.1", "5xx=2", "5xx=0.6,drop=0.6"):
        with pytest.raises(ValueError):
            FaultConfig.parse(bad)
    monkeypatch.setenv("USAGEBILL_SANDBOX_FAULTS", "429=1")
    assert call(Sandbox(), "GET", "/v1/customers")[0] == 429
    assert call(Sandbox(faults=FaultConfig()), "GET", "/v1/customers")[0] == 200  # explicit beats env


def test_seeded_faults_are_reproducible():
    def outcomes():
        sb = Sandbox(faults=FaultConfig(rate_5xx=0.2, rate_429=0.2, rate_drop=0.2, seed=3))
        seen = []
        for _ in range(40):
            try:
                seen.append(call(sb, "GET", "/v1/customers")[0])
            except DroppedConnection as e:
                seen.append("drop-after" if e.applied else "drop-before")
        return seen

    first = outcomes()
    assert first == outcomes()
    assert {200, 429, 500, "drop-before", "drop-after"} <= set(first)


def test_drop_after_apply_loses_only_the_response():
    sb = Sandbox(faults=FaultConfig(rate_drop=1.0, seed=1))
    applied = 0
    for _ in range(10):
        try:
            call(sb, "POST", "/v1/customers", {})
        except DroppedConnection as e:
            applied += e.applied
    assert 0 < applied < 10
    sb.faults = type(sb.faults)(FaultConfig())
    assert len(call(sb, "GET", "/v1/customers", {"limit": 100})[2]["data"]) == applied


def test_sdk_sees_a_drop_as_a_retryable_connection_error():
    sb = Sandbox(faults=FaultConfig(rate_drop=1.0, seed=2))
    client = stripe.StripeClient("sk_test_x", http_client=SandboxHTTPClient(sb), max_network_retries=0)
    with pytest.raises(stripe.APIConnectionError) as e:
        client.v1.customers.list()
    assert e.value.should_retry is True


def test_retries_under_faults_count_every_event_exactly_once():
    sb = Sandbox(faults=FaultConfig(rate_5xx=0.15, rate_429=0.1, rate_drop=0.2, seed=7))
    statuses = collections.Counter()
    handle = sb.handle

    def recording(*args):
        try:
            status, headers, body = handle(*args)
        except DroppedConnection as e:
            statuses["drop-after" if e.applied else "drop-before"] += 1
            raise
        statuses[status] += 1
        return status, headers, body

    sb.handle = recording
    client = stripe.StripeClient("sk_test_x", http_client=SandboxHTTPClient(sb), max_network_retries=3)

    def persist(fn, *args):
        """What a careful caller does: the SDK retries, then the caller retries the same call."""
        for _ in range(50):
            try:
                return fn(*args)
            except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError):
                continue
        raise AssertionError("never got through")

    meter = persist(client.v1.billing.meters.create,
                    {"display_name": "a", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}},
                    {"idempotency_key": "meter-1"})
    cus = persist(client.v1.customers.create, {"email": "f@x.io"}, {"idempotency_key": "cus-1"})
    expected = 0
    for i in range(60):
        params = {"event_name": "api_calls", "identifier": f"ev-{i}",
                  "payload": {"stripe_customer_id": cus.id, "value": str(i + 1)}}
        expected += i + 1
        if i % 2:
            # same idempotency key on every attempt: a lost response is replayed
            persist(client.v1.billing.meter_events.create, params, {"idempotency_key": f"ik-{i}"})
        else:
            # a fresh key per attempt: the identifier de-duplicates, "already exists" means delivered
            def once(p=params):
                try:
                    client.v1.billing.meter_events.create(p)
                except stripe.InvalidRequestError as e:
                    assert "An event already exists with identifier" in e.user_message
            persist(once)
    token = persist(client.v2.billing.meter_event_session.create).authentication_token
    for batch in range(5):
        events = [{"event_name": "api_calls", "identifier": f"st-{batch}-{j}",
                   "payload": {"stripe_customer_id": cus.id, "value": "1"}} for j in range(20)]
        expected += 20
        persist(client.v2.billing.meter_event_stream.create, {"events": events}, {"api_key": token})

    assert statuses["drop-after"] and statuses["drop-before"] and statuses[500] and statuses[429]
    assert aggregate(sb.store, meter.to_dict(), cus.id, 0, 2**40, now=sb.now()) == expected
