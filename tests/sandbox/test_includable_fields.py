"""Fields Stripe omits stay omitted: includable fields (customer ``sources``, ``subscriptions``,
``tax``, ``tax_ids``; price ``tiers``, ``currency_options``, also inside subscriptions; invoice
``threshold_reason``) appear only when asked for with ``expand``; ``expand`` of a field that is
not expandable is refused."""

from datetime import datetime, timezone

import pytest
import stripe
from sdk_contract import INCLUDABLE, assert_sdk_shape

T0 = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def world(both_transports):
    c = both_transports
    product = c.v1.products.create({"name": "Pro"})
    price = c.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 2000,
                                "recurring": {"interval": "month"}})
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    customer = c.v1.customers.create({"name": "Ada", "test_clock": clock.id})
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                     "collection_method": "send_invoice", "days_until_due": 30})
    return c, customer, price, sub


def test_the_issue_s_fields_are_includable():
    named = {"customer": {"sources", "subscriptions", "tax", "tax_ids"}, "price": {"tiers", "currency_options"},
             "invoice": {"threshold_reason"}}
    for object_type, fields in named.items():
        assert fields <= set(INCLUDABLE[object_type]), object_type


def test_includable_fields_are_absent_unless_expanded(world):
    c, customer, price, sub = world
    plain = c.v1.customers.retrieve(customer.id).to_dict()
    assert not {"sources", "subscriptions", "tax", "tax_ids"} & set(plain)
    assert_sdk_shape(plain, stripe.Customer)
    assert not {"tiers", "currency_options"} & set(c.v1.prices.retrieve(price.id).to_dict())
    item_price = c.v1.subscriptions.retrieve(sub.id).to_dict()["items"]["data"][0]["price"]
    assert "tiers" not in item_price and "currency_options" not in item_price
    assert "threshold_reason" not in c.v1.invoices.retrieve(sub.latest_invoice).to_dict()
    listed = c.v1.customers.list({"test_clock": customer.test_clock}).data[0].to_dict()
    assert "sources" not in listed


def test_expand_includes_them(world):
    c, customer, price, sub = world
    full = c.v1.customers.retrieve(customer.id, {"expand": ["sources", "subscriptions", "tax", "tax_ids"]})
    assert full.sources.data == [] and full.tax_ids.data == [] and full.tax.automatic_tax == "unrecognized_location"
    assert [s.id for s in full.subscriptions.data] == [sub.id]
    assert "tiers" not in full.subscriptions.data[0].to_dict()["items"]["data"][0]["price"]  # not asked for
    assert_sdk_shape(full, stripe.Customer, included=("sources", "subscriptions", "tax", "tax_ids"))
    priced = c.v1.prices.retrieve(price.id, {"expand": ["currency_options", "tiers"]})
    assert priced.currency_options["usd"].unit_amount == 2000 and priced.tiers is None
    nested = c.v1.subscriptions.retrieve(sub.id, {"expand": ["items.data.price.currency_options"]})
    assert nested["items"].data[0].price.currency_options["usd"].unit_amount == 2000
    invoice = c.v1.invoices.retrieve(sub.latest_invoice, {"expand": ["threshold_reason"]})
    assert "threshold_reason" in invoice.to_dict() and invoice.threshold_reason is None
    listed = c.v1.customers.list({"test_clock": customer.test_clock, "expand": ["data.tax_ids"]})
    assert listed.data[0].tax_ids.data == []


@pytest.mark.parametrize("path", ["email", "items", "bogus", "customer.email", "data"])
def test_expand_of_a_field_that_is_not_expandable_is_refused(world, path):
    c, customer, price, sub = world
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded") as e:
        c.v1.subscriptions.retrieve(sub.id, {"expand": [path]})
    assert (e.value.http_status, e.value.param) == (400, "expand")


def test_expandable_fields_and_paths_through_objects(world):
    c, customer, price, sub = world
    got = c.v1.subscriptions.retrieve(sub.id, {"expand": ["customer", "latest_invoice.customer",
                                                          "items.data.price.product"]})
    assert got.customer.id == customer.id and got.latest_invoice.customer.id == customer.id
    assert got["items"].data[0].price.product.name == "Pro"
    assert c.v1.customers.retrieve(customer.id, {"expand": ["test_clock"]}).test_clock.frozen_time == T0
