"""Customers, products and prices through the real SDK."""

from decimal import Decimal

import pytest
import stripe

from tests.sandbox.sdk_contract import assert_sdk_shape


def err(fn, *args, cls=stripe.InvalidRequestError):
    with pytest.raises(cls) as e:
        fn(*args)
    return e.value


# -- customers ---------------------------------------------------------------------------
def test_customer_create_retrieve_update_metadata_merge(stripe_client):
    c = stripe_client.v1.customers
    cus = c.create({"email": "ada@example.com", "name": "Ada [admin]", "metadata": {"plan": "pro", "team": "x"}})
    assert_sdk_shape(cus, stripe.Customer)
    assert cus.id.startswith("cus_") and cus.test_clock is None and cus.livemode is False
    got = c.retrieve(cus.id)
    assert got.to_dict() == cus.to_dict()
    upd = c.update(cus.id, {"metadata": {"team": "", "region": "eu"}, "name": "Ada"})
    assert upd.metadata.to_dict() == {"plan": "pro", "region": "eu"}
    assert upd.name == "Ada" and upd.email == "ada@example.com"
    assert c.update(cus.id, {"metadata": ""}).metadata.to_dict() == {}
    assert_sdk_shape(upd, stripe.Customer)


def test_customer_404_and_unknown_param(stripe_client):
    e = err(stripe_client.v1.customers.retrieve, "cus_nope")
    assert (e.http_status, e.code, e.user_message) == (404, "resource_missing", "No such customer: 'cus_nope'")
    e = err(stripe_client.v1.customers.create, {"emial": "x@y.z"})
    assert (e.http_status, e.code, e.param) == (400, "parameter_unknown", "emial")
    assert e.user_message == "Received unknown parameter: emial"


def test_customer_list_filters_email_and_test_clock(sandbox, stripe_client):
    c = stripe_client.v1.customers
    a = c.create({"email": "a@x.io"})
    c.create({"email": "b@x.io"})
    sandbox.store.insert({"id": "clock_1", "object": "test_helpers.test_clock", "frozen_time": 1_700_000_000})
    on_clock = c.create({"email": "a@x.io", "test_clock": "clock_1"})
    assert on_clock.test_clock == "clock_1" and on_clock.created == 1_700_000_000
    assert [x.id for x in c.list({"email": "a@x.io"}).data] == [a.id]  # clock customers are left out
    assert [x.id for x in c.list({"test_clock": "clock_1"}).data] == [on_clock.id]
    e = err(c.create, {"test_clock": "clock_missing"})
    assert (e.http_status, e.code, e.param) == (400, "resource_missing", "test_clock")


def test_test_clock_holds_at_most_three_customers(sandbox, stripe_client):
    sandbox.store.insert({"id": "clock_2", "object": "test_helpers.test_clock", "frozen_time": 1_700_000_000})
    for _ in range(3):
        stripe_client.v1.customers.create({"test_clock": "clock_2"})
    e = err(stripe_client.v1.customers.create, {"test_clock": "clock_2"})
    assert e.param == "test_clock" and "maximum of 3" in e.user_message


def test_customer_delete_leaves_a_stub(stripe_client):
    c = stripe_client.v1.customers
    cus = c.create({})
    deleted = c.delete(cus.id)
    assert deleted.deleted is True
    assert c.retrieve(cus.id).deleted is True
    assert c.list().data == []
    assert err(c.update, cus.id, {"name": "x"}).http_status == 404


def test_unsupported_customer_params_are_refused_not_dropped(stripe_client):
    e = err(stripe_client.v1.customers.create, {"payment_method": "pm_card_visa"})
    assert e.param == "payment_method" and "sandbox" in e.user_message


# -- products ----------------------------------------------------------------------------
def test_product_with_caller_id_update_and_list(stripe_client):
    p = stripe_client.v1.products
    pro = p.create({"id": "plan_pro", "name": "Pro", "metadata": {"usagebill": "1"}})
    assert_sdk_shape(pro, stripe.Product)
    assert (pro.id, pro.active, pro.type) == ("plan_pro", True, "service")
    other = p.create({"name": "Other"})
    assert other.id.startswith("prod_")
    e = err(p.create, {"id": "plan_pro", "name": "Again"})
    assert e.code == "resource_already_exists"
    upd = p.update("plan_pro", {"active": False, "name": "Pro 2"})
    assert (upd.active, upd.name) == (False, "Pro 2")
    assert [x.id for x in p.list({"active": True}).data] == [other.id]
    assert [x.id for x in p.list({"ids": ["plan_pro"]}).data] == ["plan_pro"]
    assert p.retrieve("plan_pro").name == "Pro 2"
    assert err(p.retrieve, "nope").http_status == 404


# -- prices ------------------------------------------------------------------------------
@pytest.fixture
def meter(stripe_client):
    return stripe_client.v1.billing.meters.create(
        {"display_name": "API calls", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}}
    )


def test_price_amounts_integer_and_decimal(stripe_client):
    prices = stripe_client.v1.prices
    prod = stripe_client.v1.products.create({"name": "Pro"})
    a = prices.create({"currency": "USD", "unit_amount": 2000, "product": prod.id,
                       "recurring": {"interval": "month"}})
    assert_sdk_shape(a, stripe.Price)
    assert (a.currency, a.unit_amount, a.unit_amount_decimal, a.type) == ("usd", 2000, Decimal("2000"), "recurring")
    assert a.recurring.to_dict() == {"interval": "month", "interval_count": 1, "meter": None,
                                     "trial_period_days": None, "usage_type": "licensed"}
    b = prices.create({"currency": "usd", "unit_amount_decimal": "0.50", "product": prod.id})
    assert (b.unit_amount, b.unit_amount_decimal, b.type, b.recurring) == (None, Decimal("0.5"), "one_time", None)
    e = err(prices.create, {"currency": "usd", "unit_amount": 1, "unit_amount_decimal": "1", "product": prod.id})
    assert e.code == "parameters_exclusive"
    e = err(prices.create, {"currency": "usd", "product": prod.id})
    assert (e.code, e.param) == ("parameter_missing", "unit_amount")
    e = err(prices.create, {"currency": "usd", "unit_amount": 5, "product": "prod_missing"})
    assert (e.code, e.param) == ("resource_missing", "product")


def test_price_with_product_data_creates_the_product(stripe_client):
    price = stripe_client.v1.prices.create({"currency": "usd", "unit_amount": 5, "product_data": {"name": "Seat"}})
    assert stripe_client.v1.products.retrieve(price.product).name == "Seat"
    assert stripe_client.v1.prices.retrieve(price.id, {"expand": ["product"]}).product.name == "Seat"


def test_metered_price_needs_an_active_meter(stripe_client, meter):
    prices = stripe_client.v1.prices
    prod = stripe_client.v1.products.create({"name": "Pro"})
    base = {"currency": "usd", "unit_amount": 10, "product": prod.id}
    e = err(prices.create, {**base, "recurring": {"interval": "month", "usage_type": "metered"}})
    assert e.param == "recurring[meter]"
    e = err(prices.create, {**base, "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_x"}})
    assert (e.code, e.param) == ("resource_missing", "recurring[meter]")
    ok = prices.create({**base, "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    assert ok.recurring.meter == meter.id and ok.recurring.usage_type == "metered"
    stripe_client.v1.billing.meters.deactivate(meter.id)
    e = err(prices.create, {**base, "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    assert "inactive" in e.user_message
    e = err(prices.create, {**base, "recurring": {"interval": "month", "interval_count": 37}})
    assert e.param == "recurring[interval_count]"


def test_lookup_key_unique_unless_transferred(stripe_client):
    prices = stripe_client.v1.prices
    prod = stripe_client.v1.products.create({"name": "Pro"})
    base = {"currency": "usd", "unit_amount": 10, "product": prod.id}
    first = prices.create({**base, "lookup_key": "pro_monthly"})
    e = err(prices.create, {**base, "lookup_key": "pro_monthly"})
    assert e.param == "lookup_key" and first.id in e.user_message
    second = prices.create({**base, "lookup_key": "pro_monthly", "transfer_lookup_key": True})
    assert prices.retrieve(first.id).lookup_key is None
    assert [p.id for p in prices.list({"lookup_keys": ["pro_monthly"]}).data] == [second.id]
    # via update too
    prices.update(first.id, {"lookup_key": "pro_monthly", "transfer_lookup_key": True})
    assert prices.retrieve(second.id).lookup_key is None


def test_price_update_mutable_fields_only(stripe_client):
    prices = stripe_client.v1.prices
    prod = stripe_client.v1.products.create({"name": "Pro"})
    p = prices.create({"currency": "usd", "unit_amount": 10, "product": prod.id, "metadata": {"a": "1"}})
    upd = prices.update(p.id, {"active": False, "nickname": "old", "metadata": {"b": "2"}})
    assert (upd.active, upd.nickname, upd.metadata.to_dict()) == (False, "old", {"a": "1", "b": "2"})
    for immutable in ({"unit_amount": 20}, {"currency": "eur"}, {"recurring": {"interval": "year"}}):
        e = err(prices.update, p.id, immutable)
        assert e.code == "parameter_unknown" and e.param == next(iter(immutable))


def test_price_list_filters(stripe_client, meter):
    prices = stripe_client.v1.prices
    prod = stripe_client.v1.products.create({"name": "Pro"})
    other = stripe_client.v1.products.create({"name": "Other"})
    lic = prices.create({"currency": "usd", "unit_amount": 10, "product": prod.id, "recurring": {"interval": "month"}})
    met = prices.create({"currency": "usd", "unit_amount": 1, "product": prod.id,
                         "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    one = prices.create({"currency": "usd", "unit_amount": 3, "product": other.id, "active": False})
    ids = lambda params: [p.id for p in prices.list(params).data]  # noqa: E731
    assert ids({"product": prod.id}) == [met.id, lic.id]
    assert ids({"type": "one_time"}) == [one.id]
    assert ids({"active": False}) == [one.id]
    assert ids({"recurring": {"usage_type": "metered"}}) == [met.id]
    assert ids({"recurring": {"meter": meter.id}}) == [met.id]
