"""Subscriptions and subscription items through the SDK: creation rules, lists, updates,
cancellation."""

from datetime import datetime, timezone

import pytest
import stripe
from sdk_contract import assert_sdk_shape

T0 = int(datetime(2024, 3, 10, tzinfo=timezone.utc).timestamp())
APR_10 = int(datetime(2024, 4, 10, tzinfo=timezone.utc).timestamp())
DAY, HOUR = 86400, 3600


@pytest.fixture
def catalog(stripe_client):
    c = stripe_client
    meter = c.v1.billing.meters.create({"display_name": "Calls", "event_name": "calls",
                                        "default_aggregation": {"formula": "sum"}})
    pro = c.v1.products.create({"name": "Pro"})
    calls = c.v1.products.create({"name": "Calls"})

    def price(product, **kw):
        return c.v1.prices.create({"product": product.id, "currency": kw.pop("currency", "usd"), **kw})

    return {
        "meter": meter,
        "base": price(pro, unit_amount=2000, recurring={"interval": "month"}),
        "yearly": price(pro, unit_amount=20000, recurring={"interval": "year"}),
        "eur": price(pro, unit_amount=2000, currency="eur", recurring={"interval": "month"}),
        "one_time": price(pro, unit_amount=500),
        "metered": price(calls, unit_amount=10, recurring={"interval": "month", "usage_type": "metered",
                                                            "meter": meter.id}),
        "clock": c.v1.test_helpers.test_clocks.create({"frozen_time": T0}),
    }


@pytest.fixture
def customer(stripe_client, catalog):
    return stripe_client.v1.customers.create({
        "name": "Di", "test_clock": catalog["clock"].id,
        "invoice_settings": {"default_payment_method": "pm_card_visa"},
    })


def create(c, customer, *items, **extra):
    return c.v1.subscriptions.create({"customer": customer.id, "items": list(items), **extra})


def test_create_and_retrieve_shapes(stripe_client, catalog, customer):
    c = stripe_client
    sub = create(c, customer, {"price": catalog["base"].id, "quantity": 3, "metadata": {"seat": "a"}},
                 {"price": catalog["metered"].id}, metadata={"plan": "pro"})
    assert sub.id.startswith("sub_") and sub.status == "active"
    assert (sub.customer, sub.currency, sub.collection_method) == (customer.id, "usd", "charge_automatically")
    assert (sub.start_date, sub.billing_cycle_anchor, sub.test_clock) == (T0, T0, catalog["clock"].id)
    assert sub.metadata.to_dict() == {"plan": "pro"}
    base, metered = sub["items"].data
    assert base.id.startswith("si_") and (base.quantity, base.metadata.to_dict()) == (3, {"seat": "a"})
    assert metered.quantity is None and metered.plan.usage_type == "metered"
    assert (base.current_period_start, base.current_period_end) == (T0, APR_10)
    assert base.price.id == catalog["base"].id and base.plan.amount == 2000
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    assert [(l.quantity, l.amount) for l in first.lines.data] == [(3, 6000), (0, 0)]
    assert first.status == "paid"

    again = c.v1.subscriptions.retrieve(sub.id)
    assert again.to_dict() == sub.to_dict()
    assert_sdk_shape(again, stripe.Subscription)
    for item in again["items"].data:
        assert_sdk_shape(item, stripe.SubscriptionItem)
        assert_sdk_shape(c.v1.subscription_items.retrieve(item.id), stripe.SubscriptionItem)
    listed = c.v1.subscription_items.list({"subscription": sub.id})
    assert [i.id for i in listed.data] == [base.id, metered.id]


@pytest.mark.parametrize(
    "items, extra, message, param",
    [
        (lambda k: [{"price": k["metered"].id, "quantity": 2}], {},
         "Quantity should not be specified where usage_type is `metered`", "items[0][quantity]"),
        (lambda k: [{"price": k["base"].id}, {"price": k["eur"].id}], {}, "Currency", "items[1][price]"),
        (lambda k: [{"price": k["base"].id}, {"price": k["yearly"].id}], {}, "billing interval", "items[1][price]"),
        (lambda k: [{"price": k["one_time"].id}], {}, "type=one_time", "items[0][price]"),
        (lambda k: [{"price": "price_missing"}], {}, "No such price", "items[0][price]"),
        (lambda k: [{"price": k["base"].id}, {"price": k["base"].id}], {}, "same price", "items"),
        (lambda k: [{"price": k["base"].id}], {"collection_method": "send_invoice"}, "days_until_due",
         "days_until_due"),
        (lambda k: [{"price": k["base"].id}], {"trial_period_days": 7}, "does not emulate", "trial_period_days"),
    ],
)
def test_create_refusals(stripe_client, catalog, customer, items, extra, message, param):
    with pytest.raises(stripe.InvalidRequestError, match=message) as err:
        create(stripe_client, customer, *items(catalog), **extra)
    assert err.value.param == param
    assert stripe_client.v1.subscriptions.list({"customer": customer.id, "status": "all"}).data == []


def test_create_requires_a_known_customer_and_items(stripe_client, catalog, customer):
    c = stripe_client
    with pytest.raises(stripe.InvalidRequestError, match="No such customer") as err:
        c.v1.subscriptions.create({"customer": "cus_missing", "items": [{"price": catalog["base"].id}]})
    # an unknown id inside the body is a 400 naming the parameter (404 is for the URL's id)
    assert (err.value.http_status, err.value.code, err.value.param) == (400, "resource_missing", "customer")
    with pytest.raises(stripe.InvalidRequestError, match="No such price") as err:
        c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": catalog["base"].id},
                                                                       {"price": "price_missing"}]})
    assert (err.value.http_status, err.value.code, err.value.param) == (400, "resource_missing", "items[1][price]")
    with pytest.raises(stripe.InvalidRequestError, match="Missing required param: items"):
        c.v1.subscriptions.create({"customer": customer.id})


def test_list_filters(stripe_client, catalog, customer):
    c = stripe_client
    a = create(c, customer, {"price": catalog["base"].id})
    b = create(c, customer, {"price": catalog["metered"].id})
    c.v1.subscriptions.cancel(a.id)
    ids = lambda params: [s.id for s in c.v1.subscriptions.list(params).data]
    assert ids({"customer": customer.id}) == [b.id]  # canceled ones are hidden by default
    assert ids({"customer": customer.id, "status": "all"}) == [b.id, a.id]
    assert ids({"customer": customer.id, "status": "canceled"}) == [a.id]
    assert ids({"price": catalog["metered"].id}) == [b.id]
    assert ids({"customer": customer.id, "status": "all", "limit": 1}) == [b.id]
    assert ids({"customer": customer.id, "status": "all", "starting_after": b.id}) == [a.id]


def test_update_metadata_and_cancel_at_period_end(stripe_client, catalog, customer):
    c = stripe_client
    sub = create(c, customer, {"price": catalog["base"].id}, {"price": catalog["metered"].id},
                 metadata={"a": "1", "b": "2"})
    sub = c.v1.subscriptions.update(sub.id, {"metadata": {"b": "", "c": "3"}, "cancel_at_period_end": True})
    assert sub.metadata.to_dict() == {"a": "1", "c": "3"}
    assert (sub.cancel_at_period_end, sub.cancel_at, sub.canceled_at) == (True, APR_10, T0)
    assert sub.status == "active"
    with pytest.raises(stripe.InvalidRequestError, match="does not emulate `items`"):
        c.v1.subscriptions.update(sub.id, {"items": [{"price": catalog["base"].id}]})

    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": T0 + 5 * DAY})
    c.v1.billing.meter_events.create({"event_name": "calls", "timestamp": T0 + 5 * DAY,
                                      "payload": {"stripe_customer_id": customer.id, "value": "7"}})
    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": APR_10 + 2 * HOUR})
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", APR_10)
    final = c.v1.invoices.retrieve(sub.latest_invoice)
    # ends at period end: a last invoice for the usage only, no new licensed period
    assert [(l.description, l.amount) for l in final.lines.data] == [("7 × Calls (at $0.10 / month)", 70)]
    assert final.status == "paid"
    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": APR_10 + 40 * DAY})
    assert len(c.v1.invoices.list({"subscription": sub.id}).data) == 2  # canceled: no more invoices


def test_undoing_cancel_at_period_end_keeps_billing(stripe_client, catalog, customer):
    c = stripe_client
    sub = create(c, customer, {"price": catalog["base"].id})
    c.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    sub = c.v1.subscriptions.update(sub.id, {"cancel_at_period_end": False})
    assert (sub.cancel_at, sub.canceled_at) == (None, None)
    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": APR_10 + 2 * HOUR})
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    assert len(c.v1.invoices.list({"subscription": sub.id}).data) == 2


def test_cancel_now_drops_usage_and_stops_invoicing(stripe_client, catalog, customer):
    c = stripe_client
    sub = create(c, customer, {"price": catalog["base"].id}, {"price": catalog["metered"].id})
    c.v1.billing.meter_events.create({"event_name": "calls", "timestamp": T0,
                                      "payload": {"stripe_customer_id": customer.id, "value": "5"}})
    canceled = c.v1.subscriptions.cancel(sub.id)
    assert (canceled.status, canceled.canceled_at, canceled.ended_at) == ("canceled", T0, T0)
    assert canceled.cancellation_details.reason == "cancellation_requested"
    assert_sdk_shape(canceled, stripe.Subscription)
    with pytest.raises(stripe.InvalidRequestError, match="canceled subscription can only update"):
        c.v1.subscriptions.update(sub.id, {"description": "again"})
    c.v1.subscriptions.update(sub.id, {"metadata": {"why": "test"}})  # still allowed
    with pytest.raises(stripe.InvalidRequestError, match="already canceled"):
        c.v1.subscriptions.cancel(sub.id)
    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": APR_10 + 2 * HOUR})
    assert [i.billing_reason for i in c.v1.invoices.list({"subscription": sub.id}).data] == ["subscription_create"]
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.invoices.create_preview({"subscription": sub.id})


def test_cancel_with_invoice_now_bills_the_usage_so_far(stripe_client, catalog, customer):
    c = stripe_client
    sub = create(c, customer, {"price": catalog["base"].id}, {"price": catalog["metered"].id})
    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": T0 + 3 * DAY})
    c.v1.billing.meter_events.create({"event_name": "calls", "timestamp": T0 + 3 * DAY,
                                      "payload": {"stripe_customer_id": customer.id, "value": "40"}})
    canceled = c.v1.subscriptions.cancel(sub.id, {"invoice_now": True})
    final = c.v1.invoices.retrieve(canceled.latest_invoice)
    assert final.id != sub.latest_invoice
    assert [(l.quantity, l.amount, l.period.start, l.period.end) for l in final.lines.data] == [
        (40, 400, T0, T0 + 3 * DAY)]
    assert (final.status, final.total) == ("paid", 400)


def test_cancel_with_prorate_and_invoice_now_credits_the_unused_time(stripe_client, catalog, customer):
    """Stripe's cancel guide: ``prorate`` credits the unused time; ``invoice_now`` bills the
    usage so far and the pending prorations on a final invoice."""
    c = stripe_client
    sub = create(c, customer, {"price": catalog["base"].id}, {"price": catalog["metered"].id})
    assert c.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 2000
    end = sub["items"].data[0].current_period_end  # Apr 10 + 1 month
    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": T0 + 10 * DAY})
    c.v1.billing.meter_events.create({"event_name": "calls", "timestamp": T0 + 10 * DAY,
                                      "payload": {"stripe_customer_id": customer.id, "value": "30"}})
    canceled = c.v1.subscriptions.cancel(sub.id, {"prorate": True, "invoice_now": True})
    assert canceled.status == "canceled"
    final = c.v1.invoices.retrieve(canceled.latest_invoice)
    credit = round(-2000 * (end - (T0 + 10 * DAY)) / (end - T0))
    assert [(ln.parent.type, ln.amount) for ln in final.lines.data] == [
        ("invoice_item_details", credit), ("subscription_item_details", 300)]
    (proration,) = [ln for ln in final.lines.data if ln.parent.type == "invoice_item_details"]
    assert proration.parent.invoice_item_details.proration is True
    assert proration.description.startswith("Unused time on Pro after ")
    assert final.total == credit + 300 and final.total < 0
    # a negative total is not charged: it becomes the customer's credit balance
    assert (final.amount_due, final.starting_balance, final.ending_balance, final.status) == (
        0, 0, final.total, "paid")
    assert c.v1.customers.retrieve(customer.id).balance == final.total
    item = c.v1.invoice_items.retrieve(proration.parent.invoice_item_details.invoice_item)
    assert (item.proration, item.discountable, item.invoice, item.period.end) == (True, False, final.id, end)


def test_cancel_with_prorate_alone_leaves_the_credit_pending(stripe_client, catalog, customer):
    c = stripe_client
    sub = create(c, customer, {"price": catalog["base"].id})
    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": T0 + 10 * DAY})
    canceled = c.v1.subscriptions.cancel(sub.id, {"prorate": True})
    assert canceled.latest_invoice == sub.latest_invoice  # no final invoice
    (credit,) = c.v1.invoice_items.list({"customer": customer.id, "pending": True}).data
    assert credit.amount < 0 and credit.proration is True


def test_future_billing_cycle_anchor_prorates_the_first_period(stripe_client, catalog, customer):
    c = stripe_client
    anchor = int(datetime(2024, 3, 25, tzinfo=timezone.utc).timestamp())  # Mar 10 -> 25: 15 of the 29 days Feb 25 -> Mar 25
    with pytest.raises(stripe.InvalidRequestError, match="billing_cycle_anchor"):
        create(c, customer, {"price": catalog["base"].id}, billing_cycle_anchor=T0 - 1)
    with pytest.raises(stripe.InvalidRequestError, match="next natural billing date"):
        create(c, customer, {"price": catalog["base"].id}, billing_cycle_anchor=APR_10 + 1)
    sub = create(c, customer, {"price": catalog["base"].id}, billing_cycle_anchor=anchor)
    item = sub["items"].data[0]
    assert (sub.billing_cycle_anchor, item.current_period_start, item.current_period_end) == (anchor, T0, anchor)
    line = c.v1.invoices.retrieve(sub.latest_invoice).lines.data[0]
    assert line.amount == round(2000 * 15 / 29)  # 1034.48... -> 1034
    assert line.parent.subscription_item_details.proration is True
    c.v1.test_helpers.test_clocks.advance(catalog["clock"].id, {"frozen_time": anchor + 2 * HOUR})
    item = c.v1.subscription_items.retrieve(item.id)
    assert (item.current_period_start, item.current_period_end) == (
        anchor, int(datetime(2024, 4, 25, tzinfo=timezone.utc).timestamp()))


def test_subscription_items_list_needs_a_subscription(stripe_client, catalog, customer):
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscription_items.list({"subscription": "sub_missing"})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscription_items.retrieve("si_missing")


def test_cancel_customer_subscriptions_ends_them_now(stripe_client, sandbox, catalog, customer):
    """The hook for the customers resource's DELETE: Stripe cancels a deleted customer's
    subscriptions immediately."""
    from usagebill.sandbox.billing.engine import cancel_customer_subscriptions

    c = stripe_client
    live = create(c, customer, {"price": catalog["base"].id})
    with sandbox.store.transaction():
        cancel_customer_subscriptions(sandbox.store, customer.id, T0 + 5, T0 + 5)
    sub = c.v1.subscriptions.retrieve(live.id)
    assert (sub.status, sub.canceled_at, sub.ended_at) == ("canceled", T0 + 5, T0 + 5)


def test_deleting_a_customer_cancels_its_subscriptions(stripe_client):
    product = stripe_client.v1.products.create(params={"name": "Pro"})
    price = stripe_client.v1.prices.create(params={
        "product": product.id, "currency": "usd", "unit_amount": 2000, "recurring": {"interval": "month"}})
    customer = stripe_client.v1.customers.create(params={"email": "gone@example.com"})
    sub = stripe_client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"price": price.id}], "collection_method": "send_invoice",
        "days_until_due": 30})
    stripe_client.v1.customers.delete(customer.id)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_a_credit_balance_lowers_the_next_invoice(stripe_client, catalog, customer):
    c = stripe_client
    c.v1.customers.update(customer.id, {"balance": -500})
    sub = create(c, customer, {"price": catalog["base"].id})
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.total, first.starting_balance, first.amount_due, first.amount_paid, first.ending_balance) == (
        2000, -500, 1500, 1500, 0)
    assert c.v1.customers.retrieve(customer.id).balance == 0
