"""Subscription items added and repriced mid-period, through the SDK: what the renewal
invoice bills (flexible billing mode, as Stripe documents "update prices mid-cycle")."""

from datetime import datetime, timezone

import pytest
import stripe
from sdk_contract import assert_sdk_shape

T0 = int(datetime(2024, 3, 10, tzinfo=timezone.utc).timestamp())
APR_10 = int(datetime(2024, 4, 10, tzinfo=timezone.utc).timestamp())
DAY, HOUR = 86400, 3600


@pytest.fixture
def shop(stripe_client):
    c = stripe_client
    meter = c.v1.billing.meters.create({"display_name": "Calls", "event_name": "calls",
                                        "default_aggregation": {"formula": "sum"}})
    pro, calls = c.v1.products.create({"name": "Pro"}), c.v1.products.create({"name": "Calls"})
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    customer = c.v1.customers.create({"test_clock": clock.id, "invoice_settings": {"default_payment_method": "pm_card_visa"}})

    def metered(amount):
        return c.v1.prices.create({"product": calls.id, "currency": "usd", "unit_amount_decimal": amount,
                                   "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})

    base = c.v1.prices.create({"product": pro.id, "currency": "usd", "unit_amount": 2000, "recurring": {"interval": "month"}})
    base2 = c.v1.prices.create({"product": pro.id, "currency": "usd", "unit_amount": 2500, "recurring": {"interval": "month"}})
    return {"c": c, "clock": clock, "customer": customer, "base": base, "base2": base2, "metered": metered}


def _use(shop, at, value):
    """A meter event at ``at``, the clock moved there first (Stripe refuses events ahead of it)."""
    if shop["c"].v1.test_helpers.test_clocks.retrieve(shop["clock"].id).frozen_time < at:
        _advance(shop, at)
    shop["c"].v1.billing.meter_events.create({"event_name": "calls", "timestamp": at,
                                              "payload": {"stripe_customer_id": shop["customer"].id, "value": str(value)}})


def _base_and_calls(shop):
    return shop["c"].v1.subscriptions.create({"customer": shop["customer"].id,
                                              "items": [{"price": shop["base"].id}, {"price": shop["metered"]("10").id}]})


def _advance(shop, to):
    shop["c"].v1.test_helpers.test_clocks.advance(shop["clock"].id, {"frozen_time": to})


def _renewal(shop, sub_id):
    found = [i for i in shop["c"].v1.invoices.list({"subscription": sub_id}).data if i.billing_reason == "subscription_cycle"]
    assert len(found) == 1
    return sorted((l.quantity, str(l.pricing.unit_amount_decimal), l.amount, l.parent.type) for l in found[0].lines.data)


def test_a_metered_item_added_mid_period_bills_usage_from_then(shop):
    c = shop["c"]
    sub = c.v1.subscriptions.create({"customer": shop["customer"].id, "items": [{"price": shop["base"].id}]})
    _use(shop, T0 + DAY, 5)  # before the item exists: not billed
    _advance(shop, T0 + 2 * DAY)
    item = c.v1.subscription_items.create({"subscription": sub.id, "price": shop["metered"]("10").id})
    assert_sdk_shape(item, stripe.SubscriptionItem)
    assert (item.created, item.current_period_start, item.current_period_end) == (T0 + 2 * DAY, T0, APR_10)
    assert len(c.v1.subscriptions.retrieve(sub.id)["items"].data) == 2
    _use(shop, T0 + 3 * DAY, 7)
    _advance(shop, APR_10 + 2 * HOUR)
    assert _renewal(shop, sub.id) == [(1, "2000", 2000, "subscription_item_details"),
                                      (7, "10", 70, "subscription_item_details")]


def test_a_metered_price_change_bills_the_usage_so_far_at_the_old_price(shop):
    c = shop["c"]
    old = shop["metered"]("10")
    sub = c.v1.subscriptions.create({"customer": shop["customer"].id,
                                     "items": [{"price": shop["base"].id}, {"price": old.id}]})
    _use(shop, T0 + DAY, 40)
    _advance(shop, T0 + 5 * DAY)
    metered_item = sub["items"].data[1]
    item = c.v1.subscription_items.update(metered_item.id, {"price": shop["metered"]("12").id})
    assert item.id == metered_item.id and str(item.price.unit_amount_decimal) == "12"
    pending = c.v1.invoice_items.list({"customer": shop["customer"].id, "pending": True}).data
    assert [(i.quantity, i.amount, i.period.start, i.period.end, i.proration) for i in pending] == [
        (40, 400, T0, T0 + 5 * DAY, True)]
    _use(shop, T0 + 5 * DAY, 6)  # at the second of the change: the new price
    # the licensed item moves without prorations: the new amount from the next period
    c.v1.subscription_items.update(sub["items"].data[0].id, {"price": shop["base2"].id, "proration_behavior": "none"})
    _advance(shop, APR_10 + 2 * HOUR)
    assert _renewal(shop, sub.id) == [(1, "2500", 2500, "subscription_item_details"),
                                      (6, "12", 72, "subscription_item_details"),
                                      (40, "10", 400, "invoice_item_details")]


def test_without_prorations_the_usage_so_far_is_not_billed_and_licensed_prorations_are_refused(shop):
    c = shop["c"]
    sub = _base_and_calls(shop)
    _use(shop, T0 + DAY, 40)
    _advance(shop, T0 + 5 * DAY)
    c.v1.subscription_items.update(sub["items"].data[1].id, {"price": shop["metered"]("12").id,
                                                             "proration_behavior": "none"})
    assert c.v1.invoice_items.list({"customer": shop["customer"].id, "pending": True}).data == []
    with pytest.raises(stripe.InvalidRequestError, match="prorations of licensed items"):
        c.v1.subscription_items.update(sub["items"].data[0].id, {"price": shop["base2"].id})
    with pytest.raises(stripe.InvalidRequestError, match="same price"):
        c.v1.subscription_items.create({"subscription": sub.id, "price": shop["base"].id, "proration_behavior": "none"})
    _advance(shop, APR_10 + 2 * HOUR)
    assert _renewal(shop, sub.id) == [(0, "12", 0, "subscription_item_details"),
                                      (1, "2000", 2000, "subscription_item_details")]


def test_a_price_change_in_the_grace_hour_leaves_the_ended_period_at_its_price(shop):
    c = shop["c"]
    sub = _base_and_calls(shop)
    _use(shop, T0 + DAY, 4)
    _advance(shop, APR_10 + 10 * 60)  # the renewal is a draft for an hour
    c.v1.subscription_items.update(sub["items"].data[1].id, {"price": shop["metered"]("12").id})
    _use(shop, APR_10 - 60, 1)  # late usage of the ended period, in the grace hour
    _use(shop, APR_10 + 20 * 60, 2)  # the new period, at the new price
    _advance(shop, APR_10 + 2 * HOUR)
    assert _renewal(shop, sub.id) == [(1, "2000", 2000, "subscription_item_details"),
                                      (5, "10", 50, "subscription_item_details")]
    upcoming = c.v1.invoices.create_preview({"subscription": sub.id})
    assert sorted((l.quantity, str(l.pricing.unit_amount_decimal), l.amount) for l in upcoming.lines.data) == [
        (1, "2000", 2000), (2, "12", 24)]
