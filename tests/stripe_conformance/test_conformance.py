"""The sandbox against a real Stripe test account: each scenario (scenarios.py) runs on both,
and their outcomes must be equal once ids and times are normalised. Run it with

    STRIPE_API_KEY=sk_test_... python -m pytest -m stripe_test tests/stripe_conformance -v

It creates test clocks, customers, meters, products and prices under a per-run prefix, and
cleans up after itself (clocks deleted with their customers; meters, prices, products
archived). Without an ``sk_test_`` key the ``stripe_test`` tests are skipped; the sandbox
half of every scenario still runs on each test run (``test_scenario_runs_on_the_sandbox``),
so the scenarios cannot rot."""

from __future__ import annotations

import time

import pytest
import stripe

from tests.stripe_conformance.backend import Backend
from tests.stripe_conformance.conftest import real_key
from tests.stripe_conformance.normalise import Normaliser
from tests.stripe_conformance.scenarios import SCENARIOS
from usagebill.sandbox import Sandbox, SandboxHTTPClient


def start_time() -> int:
    """The scenario's t0, shared by both runs: 32 days ago, on the hour. A month on the test
    clock then ends in the (real) past, so every meter event the scenarios send is inside
    Stripe's 35-day window whether Stripe reads it in the clock's time or in real time."""
    return (int(time.time()) - 32 * 86400) // 3600 * 3600


def on_sandbox(name: str, t0: int) -> dict:
    sb = Sandbox(faults=None)
    b = Backend("sandbox", stripe.StripeClient("sk_test_conformance", http_client=SandboxHTTPClient(sb),
                                               max_network_retries=0), sandbox=sb)
    try:
        return Normaliser(t0)(SCENARIOS[name](b, t0))
    finally:
        b.cleanup()
        sb.close()


def on_stripe(name: str, t0: int) -> dict:
    b = Backend("stripe", stripe.StripeClient(real_key(), max_network_retries=3))
    try:
        return Normaliser(t0)(SCENARIOS[name](b, t0))
    finally:
        b.cleanup()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_runs_on_the_sandbox(name):
    outcome = on_sandbox(name, start_time())
    assert EXPECTED_ON_THE_SANDBOX[name](outcome), outcome


@pytest.mark.stripe_test
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_sandbox_behaves_like_stripe(name):
    t0 = start_time()
    assert on_sandbox(name, t0) == on_stripe(name, t0)


# What the sandbox's outcomes say (and so what Stripe is expected to say).
EXPECTED_ON_THE_SANDBOX = {
    "clock_walkthrough": lambda o: (
        o["first"]["lines"] == [["1 × Pro (at $20.00 / month)", 1, 2000, "subscription_item_details"],
                                ["0 × API Calls (at $0.10 / month)", 0, 0, "subscription_item_details"]]
        and o["renewal"]["lines"] == [["1 × Pro (at $20.00 / month)", 1, 2000, "subscription_item_details"],
                                      ["150 × API Calls (at $0.10 / month)", 150, 1500, "subscription_item_details"]]
        and (o["renewal"]["status"], o["renewal"]["total"]) == ("open", 3500)
        and o["preview_lines"][1][1] == 150),
    "late_usage_in_the_grace_hour": lambda o: (
        o["draft_status"] == "draft" and o["final"]["lines"][1][1:3] == [105, 1050]
        and o["final"]["total"] == 3050),
    "cancel_with_a_last_invoice": lambda o: (
        o["status"] == "canceled" and [ln[3] for ln in o["final"]["lines"]] == ["invoice_item_details",
                                                                                 "subscription_item_details"]
        and o["final"]["lines"][1][1:3] == [30, 300] and o["final"]["lines"][0][2] < 0),
    "stream_batch_with_one_bad_event": lambda o: (
        o["total"] == 6
        and o["report"]["errors"] == [["meter_event_customer_not_found", ["bad"]]]),
    "idempotent_retries": lambda o: (
        o["same_object"] is True and o["replayed"] == "true" and o["other_params"]["type"] == "idempotency_error"),
    "error_cases": lambda o: (
        o["unknown customer in a body"] == {"status": 400, "type": "invalid_request_error", "code": "resource_missing",
                                            "param": "customer"}
        and o["unknown price in items"]["param"] == "items[0][price]"
        and o["unknown id in the URL"]["status"] == 404
        and o["unknown currency"]["param"] == "currency"
        and o["expand of a plain field"]["param"] == "expand"
        and o["missing parameter"]["code"] == "parameter_missing"
        and o["unknown parameter"]["code"] == "parameter_unknown"
        and o["duplicate meter event"]["message_says_already_exists"] is True),
}
