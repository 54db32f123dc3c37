"""Errors as Stripe shapes them: ``code`` and ``param``, 400 ``resource_missing`` for an
unknown id inside a request (404 only for the URL's own id), unknown currencies refused."""

import pytest
import stripe


def refused(call, *args):
    with pytest.raises(stripe.InvalidRequestError) as e:
        call(*args)
    return e.value.http_status, e.value.code, e.value.param


def test_unknown_ids_in_a_body_or_query_are_400_naming_the_parameter(stripe_client):
    c = stripe_client
    assert refused(c.v1.customers.retrieve, "cus_nope") == (404, "resource_missing", "id")
    assert refused(c.v1.invoices.create_preview, {"subscription": "sub_nope"}) == (400, "resource_missing", "subscription")
    assert refused(c.v1.invoices.create_preview, {"customer": "cus_nope"}) == (400, "resource_missing", "customer")
    assert refused(c.v1.subscription_items.list, {"subscription": "sub_nope"}) == (400, "resource_missing", "subscription")
    assert refused(c.v1.prices.create, {"currency": "usd", "unit_amount": 1, "product": "prod_nope"}) == (
        400, "resource_missing", "product")
    assert refused(c.v1.customers.create, {"test_clock": "clock_nope"}) == (400, "resource_missing", "test_clock")


@pytest.mark.parametrize("currency", ["xyz", "usdd", "us"])
def test_unknown_currencies_are_refused(stripe_client, currency):
    c = stripe_client
    product = c.v1.products.create({"name": "Pro"})
    with pytest.raises(stripe.InvalidRequestError, match="Invalid currency") as e:
        c.v1.prices.create({"currency": currency, "unit_amount": 1, "product": product.id})
    assert (e.value.http_status, e.value.param) == (400, "currency")
    assert c.v1.prices.create({"currency": "EUR", "unit_amount": 1, "product": product.id}).currency == "eur"


def test_validation_codes(stripe_client):
    c = stripe_client
    assert refused(c.v1.customers.create, {"nope": "x"}) == (400, "parameter_unknown", "nope")
    assert refused(c.v1.billing.meters.create, {"display_name": "a", "event_name": "e"}) == (
        400, "parameter_missing", "default_aggregation")
    assert refused(c.v1.customers.list, {"limit": "ten"}) == (400, "parameter_invalid_integer", "limit")
