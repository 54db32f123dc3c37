"""Idempotency-Key: replay, mismatch, concurrent duplicates, 5xx not saved, 24-hour window."""

import threading

import pytest
import stripe
from freezegun import freeze_time

from tests.sandbox.raw import call
from usagebill.sandbox import idempotency
from usagebill.sandbox.routing import router


def post(sb, path, params, key):
    return call(sb, "POST", path, params, headers={"Idempotency-Key": key})


def race(monkeypatch, first_sandbox, second_sandbox, key):
    """POST /v1/customers with ``key`` from a thread, held inside its handler while the same
    key is posted again; returns both (status, headers, body)."""
    entered, release = threading.Event(), threading.Event()

    def slow(req):  # holds the first request inside its handler
        if req.path == "/v1/customers" and not entered.is_set():
            entered.set()
            release.wait(5)

    monkeypatch.setattr(router, "hooks", [*router.hooks, slow])
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", post(first_sandbox, "/v1/customers", {}, key)))
    first.start()
    assert entered.wait(5)
    results["second"] = post(second_sandbox, "/v1/customers", {}, key)
    release.set()
    first.join(5)
    return results["first"], results["second"]


def test_replay_returns_the_original_response(sandbox):
    s1, h1, b1 = post(sandbox, "/v1/customers", {"email": "a@b.c"}, "k1")
    s2, h2, b2 = post(sandbox, "/v1/customers", {"email": "a@b.c"}, "k1")
    assert (s1, b1) == (s2, b2)
    assert h2["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in h1
    assert h2["Request-Id"] != h1["Request-Id"] and h2["Idempotency-Key"] == "k1"
    assert len(sandbox.store.all("customer")) == 1


def test_same_key_different_params_is_an_idempotency_error(sandbox, stripe_client):
    post(sandbox, "/v1/customers", {"email": "a@b.c"}, "k2")
    status, _, body = post(sandbox, "/v1/customers", {"email": "other@b.c"}, "k2")
    assert status == 400 and body["error"]["type"] == "idempotency_error"
    assert body["error"]["message"].startswith(
        "Keys for idempotent requests can only be used with the same parameters they were first used with")
    status, _, _ = post(sandbox, "/v1/products", {"email": "a@b.c"}, "k2")  # another endpoint, same key
    assert status == 400
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.customers.create({"email": "x@y.z"}, {"idempotency_key": "k2"})


def test_client_errors_are_replayed_but_validation_errors_are_not_saved(sandbox):
    status, _, first = post(sandbox, "/v1/customers", {"test_clock": "clock_missing"}, "k3")
    assert status == 400
    sandbox.store.insert({"id": "clock_missing", "object": "test_helpers.test_clock", "frozen_time": 1})
    status, h, again = post(sandbox, "/v1/customers", {"test_clock": "clock_missing"}, "k3")
    assert (status, again) == (400, first) and h["Idempotent-Replayed"] == "true"
    # a request refused by validation never started: its key stays free
    assert post(sandbox, "/v1/customers", {"bogus": "1"}, "k4")[0] == 400
    assert post(sandbox, "/v1/customers", {"email": "ok@x.io"}, "k4")[0] == 200


def test_concurrent_duplicate_gets_a_409(sandbox):
    fp = idempotency.fingerprint("POST", "/v1/customers", {"email": "a@b.c"})
    with sandbox.store.transaction():
        idempotency.mark_in_flight(sandbox.store, "k5", fp, sandbox.now())
    status, h, body = post(sandbox, "/v1/customers", {"email": "a@b.c"}, "k5")
    assert status == 409 and h["Stripe-Should-Retry"] == "true"
    assert body["error"]["type"] == "idempotency_error" and body["error"]["code"] == "idempotency_key_in_use"


def test_concurrent_duplicate_from_two_threads(sandbox, monkeypatch):
    # the first request holds the store's lock; the duplicate sees the claim before waiting for it
    first, second = race(monkeypatch, sandbox, sandbox, "k6")
    assert first[0] == 200 and second[0] == 409
    assert post(sandbox, "/v1/customers", {}, "k6")[1]["Idempotent-Replayed"] == "true"


def test_5xx_is_not_saved_so_a_retry_runs_again(sandbox, monkeypatch):
    calls = []

    def flaky(req):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")

    monkeypatch.setattr(router, "hooks", [*router.hooks, flaky])
    assert post(sandbox, "/v1/customers", {}, "k7")[0] == 500
    status, h, _ = post(sandbox, "/v1/customers", {}, "k7")
    assert status == 200 and "Idempotent-Replayed" not in h


def test_keys_expire_after_24_hours():
    from usagebill.sandbox import Sandbox

    with freeze_time("2026-01-01") as frozen:
        sb = Sandbox()
        _, _, first = post(sb, "/v1/customers", {}, "k8")
        frozen.tick(24 * 3600)
        _, h, second = post(sb, "/v1/customers", {}, "k8")
        assert second["id"] != first["id"] and "Idempotent-Replayed" not in h


def test_sdk_retries_reuse_its_idempotency_key(sandbox, stripe_client):
    one = stripe_client.v1.customers.create({"name": "a"}, {"idempotency_key": "k9"})
    two = stripe_client.v1.customers.create({"name": "a"}, {"idempotency_key": "k9"})
    assert one.id == two.id


def test_concurrent_duplicate_from_another_process_sharing_the_file(tmp_path, monkeypatch):
    """Sandbox B must not queue behind A's write transaction and then replay: it reads A's
    committed claim through its non-blocking read connection and answers 409."""
    from usagebill.sandbox import Sandbox

    path = tmp_path / "shared.db"
    a, b = Sandbox(path), Sandbox(path)
    first, second = race(monkeypatch, a, b, "kx")
    results = {"a": first, "b": second}
    assert (results["a"][0], results["b"][0]) == (200, 409)
    assert post(b, "/v1/customers", {}, "kx")[2] == results["a"][2]  # then the replay
    a.close()
    b.close()
