"""The invoice every part of usagebill must get right, produced by the sandbox through the real
stripe SDK:

    Pro                     1 x $20.00    $20.00
    API Calls (Jan-Feb)   150 x $0.10    $15.00
    Total                                 $35.00
"""

from datetime import datetime, timezone

import pytest
import stripe
from sdk_contract import assert_sdk_shape

JAN_1 = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())
FEB_1 = int(datetime(2024, 2, 1, tzinfo=timezone.utc).timestamp())
MAR_1 = int(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp())
DAY, HOUR = 86400, 3600


@pytest.fixture
def plan(stripe_client):
    c = stripe_client
    meter = c.v1.billing.meters.create({
        "display_name": "API Calls", "event_name": "api_calls", "default_aggregation": {"formula": "sum"},
    })
    pro = c.v1.products.create({"name": "Pro"})
    calls = c.v1.products.create({"name": "API Calls"})
    base = c.v1.prices.create({"product": pro.id, "currency": "usd", "unit_amount": 2000,
                               "recurring": {"interval": "month"}})
    metered = c.v1.prices.create({"product": calls.id, "currency": "usd", "unit_amount": 10,
                                  "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": JAN_1, "name": "scenario"})
    return {"base": base, "metered": metered, "clock": clock}


def subscribe(c, plan, **extra):
    customer = c.v1.customers.create({"name": "Ada", "test_clock": plan["clock"].id, **extra.pop("customer", {})})
    sub = c.v1.subscriptions.create({
        "customer": customer.id, "items": [{"price": plan["base"].id}, {"price": plan["metered"].id}], **extra,
    })
    return customer, sub


def use_api(c, plan, customer, *, at, units, batches=3):
    """Move the clock into the period and record ``units`` calls as v1 meter events there."""
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": at})
    for i in range(batches):
        c.v1.billing.meter_events.create({
            "event_name": "api_calls", "timestamp": at - i,
            "payload": {"stripe_customer_id": customer.id, "value": str(units // batches)},
        })


def test_renewal_invoice_bills_the_base_price_and_the_period_usage(stripe_client, plan):
    c = stripe_client
    customer, sub = subscribe(c, plan, collection_method="send_invoice", days_until_due=30)
    assert sub.status == "active"
    assert [(i.current_period_start, i.current_period_end) for i in sub["items"].data] == [(JAN_1, FEB_1)] * 2
    use_api(c, plan, customer, at=JAN_1 + 10 * DAY, units=150)

    preview = c.v1.invoices.create_preview({"subscription": sub.id})
    assert preview.id.startswith("upcoming_in_")
    assert [(l.description, l.quantity, l.amount) for l in preview.lines.data] == [
        ("1 × Pro (at $20.00 / month)", 1, 2000),
        ("150 × API Calls (at $0.10 / month)", 150, 1500),
    ]
    assert preview.total == 3500
    with pytest.raises(stripe.InvalidRequestError):  # a preview is not stored
        c.v1.invoices.retrieve(preview.id)

    advancing = c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": FEB_1 + HOUR + 60})
    assert advancing.status == "advancing"
    assert advancing.status_details.advancing.target_frozen_time == FEB_1 + HOUR + 60
    assert c.v1.test_helpers.test_clocks.retrieve(plan["clock"].id).status == "ready"

    invoices = c.v1.invoices.list({"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    renewal = invoices[0]
    assert renewal.status == "open"
    assert renewal.number and renewal.status_transitions.finalized_at == FEB_1 + HOUR
    assert renewal.due_date == FEB_1 + HOUR + 30 * DAY
    assert (renewal.subtotal, renewal.total, renewal.amount_due, renewal.amount_remaining) == (3500, 3500, 3500, 3500)
    assert renewal.currency == "usd" and renewal.customer == customer.id
    assert (renewal.period_start, renewal.period_end) == (JAN_1, FEB_1)
    pro, calls = renewal.lines.data
    assert (pro.description, pro.quantity, pro.amount) == ("1 × Pro (at $20.00 / month)", 1, 2000)
    assert (pro.period.start, pro.period.end) == (FEB_1, MAR_1)  # licensed: billed in advance
    assert (calls.description, calls.quantity, calls.amount) == ("150 × API Calls (at $0.10 / month)", 150, 1500)
    assert (calls.period.start, calls.period.end) == (JAN_1, FEB_1)  # metered: billed in arrears
    assert calls.pricing.price_details.price == plan["metered"].id
    assert calls.parent.subscription_item_details.subscription == sub.id

    fresh = c.v1.subscriptions.retrieve(sub.id)
    assert fresh.latest_invoice == renewal.id
    assert [(i.current_period_start, i.current_period_end) for i in fresh["items"].data] == [(FEB_1, MAR_1)] * 2

    assert_sdk_shape(renewal, stripe.Invoice)
    for line in renewal.lines.data:
        assert_sdk_shape(line, stripe.InvoiceLineItem)
    assert_sdk_shape(preview, stripe.Invoice)
    assert_sdk_shape(fresh, stripe.Subscription)
    assert_sdk_shape(fresh["items"].data[0], stripe.SubscriptionItem)
    assert_sdk_shape(advancing, stripe.test_helpers.TestClock)


def test_first_invoice_bills_the_base_in_advance_and_usage_at_zero(stripe_client, plan):
    c = stripe_client
    _, sub = subscribe(c, plan, collection_method="send_invoice", days_until_due=30)
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    assert first.billing_reason == "subscription_create"
    # send_invoice: the first invoice is finalized an hour after creation, not at once
    assert (first.status, first.automatically_finalizes_at) == ("draft", JAN_1 + HOUR)
    assert [(l.description, l.amount) for l in first.lines.data] == [
        ("1 × Pro (at $20.00 / month)", 2000), ("0 × API Calls (at $0.10 / month)", 0),
    ]
    assert first.total == 2000


def test_with_a_payment_method_invoices_are_paid(stripe_client, plan):
    c = stripe_client
    customer, sub = subscribe(
        c, plan, customer={"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    # charge_automatically: the first invoice is finalized and charged at creation
    assert (sub.status, first.status, first.amount_paid, first.status_transitions.paid_at) == ("active", "paid", 2000, JAN_1)
    use_api(c, plan, customer, at=JAN_1 + 20 * DAY, units=150)
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": FEB_1 + 2 * HOUR})
    renewal = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert (renewal.status, renewal.total, renewal.amount_paid, renewal.amount_remaining) == ("paid", 3500, 3500, 0)
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"


def test_without_a_payment_method_charge_automatically_starts_incomplete_and_expires(stripe_client, plan):
    """Stripe's default payment_behavior (allow_incomplete): an unpaid first invoice leaves the
    subscription incomplete; after 23 hours it is incomplete_expired, the invoice is voided and
    nothing more is billed."""
    c = stripe_client
    customer, sub = subscribe(c, plan)
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    assert (sub.status, first.status, first.amount_remaining) == ("incomplete", "open", 2000)
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": FEB_1 + 2 * HOUR})
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("incomplete_expired", JAN_1 + 23 * HOUR)
    invoices = c.v1.invoices.list({"customer": customer.id}).data
    assert [(i.id, i.status) for i in invoices] == [(first.id, "void")]


def test_error_if_incomplete_creates_nothing(stripe_client, plan):
    c = stripe_client
    customer = c.v1.customers.create({"name": "Bo", "test_clock": plan["clock"].id})
    with pytest.raises(stripe.InvalidRequestError, match="no attached payment source or default payment method"):
        c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": plan["base"].id}],
                                   "payment_behavior": "error_if_incomplete"})
    assert c.v1.subscriptions.list({"customer": customer.id, "status": "all"}).data == []
    assert c.v1.invoices.list({"customer": customer.id}).data == []


def test_renewal_with_a_failing_payment_makes_the_subscription_past_due(stripe_client, plan):
    c = stripe_client
    customer, sub = subscribe(c, plan, customer={"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    c.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": "pm_card_chargeDeclined"}})
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": FEB_1 + 30 * 60})
    renewal = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert renewal.status == "draft"  # for about an hour
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": FEB_1 + 2 * HOUR})
    renewal = c.v1.invoices.retrieve(renewal.id)
    assert (renewal.status, renewal.attempted, renewal.amount_remaining) == ("open", True, 2000)
    assert c.v1.subscriptions.retrieve(sub.id).status == "past_due"
