"""The request cycle as clients see it: auth, headers, error bodies, pagination, expand."""

import pytest
import stripe

from tests.sandbox.raw import call
from usagebill.sandbox import FaultConfig, Sandbox, SandboxHTTPClient
from usagebill.sandbox.routing import router


# -- authentication ----------------------------------------------------------------------
@pytest.mark.parametrize("key, needle", [
    (None, "You did not provide an API key"),
    ("", "You did not provide an API key"),
    ("pk_test_123456789", "Invalid API Key provided"),
    ("sk_test_", "Invalid API Key provided"),
    ("sk_live_123456789012", "refuses live keys"),
])
def test_bad_keys_are_401(sandbox, key, needle):
    headers = {"Authorization": "Bearer "} if key == "" else None
    status, h, body = call(sandbox, "GET", "/v1/customers", key=None if key == "" else key, headers=headers)
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error" and needle in body["error"]["message"]
    assert h["Request-Id"].startswith("req_")


def test_live_key_through_the_sdk_is_an_authentication_error(sandbox):
    client = stripe.StripeClient("sk_live_abcdefghijkl", http_client=SandboxHTTPClient(sandbox))
    with pytest.raises(stripe.AuthenticationError) as e:
        client.v1.customers.list()
    assert e.value.http_status == 401


# -- response envelope -------------------------------------------------------------------
def test_every_response_has_a_request_id_and_json(sandbox):
    status, h, body = call(sandbox, "POST", "/v1/customers", {"email": "x@y.z"})
    assert status == 200 and h["Request-Id"].startswith("req_") and h["Content-Type"] == "application/json"
    status2, h2, _ = call(sandbox, "GET", "/v1/customers/" + body["id"])
    assert status2 == 200 and h2["Request-Id"] != h["Request-Id"]


def test_error_bodies(sandbox):
    status, h, body = call(sandbox, "GET", "/v1/customers/cus_missing")
    assert status == 404
    assert body == {"error": {"type": "invalid_request_error", "message": "No such customer: 'cus_missing'",
                              "code": "resource_missing", "param": "id"}}
    assert "Stripe-Should-Retry" not in h
    status, _, body = call(sandbox, "GET", "/v1/nothing_here")
    assert status == 404 and body["error"]["message"].startswith("Unrecognized request URL (GET: /v1/nothing_here)")
    status, _, body = call(sandbox, "POST", "/v1/customers", {"colour": "red"})
    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "parameter_unknown", "colour")


def test_sdk_maps_sandbox_errors_to_its_exception_classes(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe_client.v1.customers.retrieve("cus_missing")
    assert e.value.request_id.startswith("req_")


def test_injected_429_and_500_carry_should_retry():
    sb = Sandbox(faults=FaultConfig(rate_429=1.0))
    status, h, body = call(sb, "GET", "/v1/customers")
    assert status == 429 and h["Stripe-Should-Retry"] == "true"
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "rate_limit"
    sb = Sandbox(faults=FaultConfig(rate_5xx=1.0))
    status, h, body = call(sb, "GET", "/v1/customers")
    assert status == 500 and h["Stripe-Should-Retry"] == "true" and body["error"]["type"] == "api_error"
    client = stripe.StripeClient("sk_test_x", http_client=SandboxHTTPClient(sb), max_network_retries=2)
    with pytest.raises(stripe.APIError):
        client.v1.customers.list()


def test_unexpected_handler_failure_is_a_500_that_rolls_back(sandbox, monkeypatch):
    def broken(req):
        req.store.insert({"id": "cus_half", "object": "customer"})
        raise RuntimeError("boom")

    monkeypatch.setattr(router, "hooks", [*router.hooks, broken])
    status, h, body = call(sandbox, "POST", "/v1/customers", {})
    assert status == 500 and body["error"]["type"] == "api_error" and h["Stripe-Should-Retry"] == "false"
    assert sandbox.store.get("customer", "cus_half") is None


def test_stripe_error_in_handler_rolls_back_its_writes(sandbox, stripe_client):
    prod = stripe_client.v1.products.create({"name": "P"})
    stripe_client.v1.prices.create({"currency": "usd", "unit_amount": 1, "product": prod.id, "lookup_key": "k"})
    # product_data creates a product, then the taken lookup key fails the request: no product stays
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.prices.create({"currency": "usd", "unit_amount": 1, "product_data": {"name": "Ghost"},
                                        "lookup_key": "k"})
    assert [p.name for p in stripe_client.v1.products.list().data] == ["P"]


def test_numbers_and_decimals_keep_their_json_types(sandbox):
    _, _, prod = call(sandbox, "POST", "/v1/products", {"name": "P"})
    _, _, price = call(sandbox, "POST", "/v1/prices", {"currency": "usd", "unit_amount_decimal": "12.5",
                                                       "product": prod["id"]})
    assert price["unit_amount_decimal"] == "12.5" and price["unit_amount"] is None
    _, _, price = call(sandbox, "POST", "/v1/prices", {"currency": "usd", "unit_amount": 7, "product": prod["id"]})
    assert price["unit_amount"] == 7 and price["unit_amount_decimal"] == "7"


# -- pagination --------------------------------------------------------------------------
def test_pagination_cursors_and_limits(stripe_client):
    ids = [stripe_client.v1.products.create({"name": f"p{i}"}).id for i in range(5)][::-1]  # newest first
    page = stripe_client.v1.products.list({"limit": 2})
    assert [p.id for p in page.data] == ids[:2] and page.has_more
    page = stripe_client.v1.products.list({"limit": 2, "starting_after": ids[1]})
    assert [p.id for p in page.data] == ids[2:4] and page.has_more
    page = stripe_client.v1.products.list({"limit": 2, "starting_after": ids[3]})
    assert [p.id for p in page.data] == ids[4:] and not page.has_more
    page = stripe_client.v1.products.list({"limit": 2, "ending_before": ids[4]})
    assert [p.id for p in page.data] == ids[2:4] and page.has_more
    for bad in (0, 101):
        with pytest.raises(stripe.InvalidRequestError) as e:
            stripe_client.v1.products.list({"limit": bad})
        assert e.value.param == "limit"
    assert len(stripe_client.v1.products.list({"limit": 100}).data) == 5


def test_auto_paging_walks_250_objects(stripe_client):
    created = {stripe_client.v1.customers.create({"name": f"c{i}"}).id for i in range(250)}
    seen = [c.id for c in stripe_client.v1.customers.list({"limit": 100}).auto_paging_iter()]
    assert len(seen) == 250 and set(seen) == created


# -- expand ------------------------------------------------------------------------------
def test_expand_fields_and_dotted_paths(sandbox, stripe_client):
    sandbox.store.insert({"id": "clock_x", "object": "test_helpers.test_clock", "frozen_time": 1_700_000_000})
    cus = stripe_client.v1.customers.create({"test_clock": "clock_x", "expand": ["test_clock"]})
    assert cus.test_clock.frozen_time == 1_700_000_000
    listed = stripe_client.v1.customers.list({"test_clock": "clock_x", "expand": ["data.test_clock"]})
    assert listed.data[0].test_clock.id == "clock_x"
    prod = stripe_client.v1.products.create({"id": "custom_id", "name": "P"})
    price = stripe_client.v1.prices.create({"currency": "usd", "unit_amount": 1, "product": prod.id,
                                            "expand": ["product"]})
    assert price.product.name == "P"  # found by id alone: no known prefix
    status, _, body = call(sandbox, "GET", "/v1/customers", {"expand": ["test_clock"]})
    assert status == 400 and "cannot be expanded" in body["error"]["message"]
    status, _, body = call(sandbox, "GET", "/v1/customers/" + cus.id, {"expand": ["a.b.c.d.e"]})
    assert status == 400 and body["error"]["param"] == "expand"


def test_expand_with_brackets_form_from_curl(sandbox, stripe_client):
    prod = stripe_client.v1.products.create({"name": "P"})
    price = stripe_client.v1.prices.create({"currency": "usd", "unit_amount": 1, "product": prod.id})
    status, _, body = sandbox.handle("GET", f"/v1/prices/{price.id}", "expand[]=product",
                                     {"Authorization": "Bearer sk_test_x"}, b"")
    assert status == 200 and body and b'"name": "P"' in body
