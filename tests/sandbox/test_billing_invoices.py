"""Invoices through the SDK: rounding of fractional unit prices, finalization timing, lists and
line pagination, previews, and subscriptions that live in real time (no test clock)."""

from datetime import datetime, timezone

import pytest
import stripe
from sdk_contract import assert_sdk_shape

from usagebill.sandbox import Sandbox, SandboxHTTPClient

T0 = int(datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp())
JUN_1 = int(datetime(2024, 6, 1, tzinfo=timezone.utc).timestamp())
DAY, HOUR = 86400, 3600


def metered_price(c, name, **amount):
    meter = c.v1.billing.meters.create({"display_name": name, "event_name": name.lower().replace(" ", "_"),
                                        "default_aggregation": {"formula": "sum"}})
    product = c.v1.products.create({"name": name})
    return c.v1.prices.create({"product": product.id, "currency": "usd", **amount,
                               "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})


def record(c, customer_id, event_name, value, at):
    c.v1.billing.meter_events.create({"event_name": event_name, "timestamp": at,
                                      "payload": {"stripe_customer_id": customer_id, "value": str(value)}})


@pytest.fixture
def clock(stripe_client):
    return stripe_client.v1.test_helpers.test_clocks.create({"frozen_time": T0})


def on_clock(c, clock, **extra):
    return c.v1.customers.create({"name": "Ed", "test_clock": clock.id, **extra})


@pytest.mark.parametrize("unit, used, expected", [("0.5", 3, 2), ("0.5", 5, 3), ("0.05", 30, 2),
                                                  ("0.333333333333", 7, 2), ("12.5", 1, 13)])
def test_fractional_unit_prices_round_half_up_on_the_line(stripe_client, clock, unit, used, expected):
    c = stripe_client
    price = metered_price(c, "Tokens", unit_amount_decimal=unit)
    customer = on_clock(c, clock)
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    assert sub.status == "active"  # a $0 first invoice needs no payment
    record(c, customer.id, "tokens", used, T0)
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": JUN_1 + 2 * HOUR})
    renewal = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    (line,) = renewal.lines.data
    assert (line.quantity, line.amount, renewal.total) == (used, expected, expected)
    assert str(line.pricing.unit_amount_decimal) == unit


def test_fractional_price_description_keeps_every_digit(stripe_client, clock):
    c = stripe_client
    price = metered_price(c, "Tokens", unit_amount_decimal="0.5")
    customer = on_clock(c, clock)
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    assert first.lines.data[0].description == "0 × Tokens (at $0.005 / month)"
    # a zero total is paid on finalization, whatever the payment method
    assert (first.status, first.amount_due, first.status_transitions.paid_at) == ("paid", 0, T0)


def test_renewal_stays_draft_for_an_hour(stripe_client, clock):
    c = stripe_client
    product = c.v1.products.create({"name": "Pro"})
    price = c.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 900,
                                "recurring": {"interval": "month"}})
    customer = on_clock(c, clock)
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                     "collection_method": "send_invoice", "days_until_due": 14})
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": JUN_1 + HOUR - 1})
    renewal = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert (renewal.status, renewal.number, renewal.automatically_finalizes_at) == ("draft", None, JUN_1 + HOUR)
    assert (renewal.created, renewal.period_start, renewal.period_end) == (JUN_1, T0, JUN_1)
    assert c.v1.invoices.list({"subscription": sub.id, "status": "draft"}).data[0].id == renewal.id
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": JUN_1 + HOUR})
    renewal = c.v1.invoices.retrieve(renewal.id)
    assert (renewal.status, renewal.status_transitions.finalized_at, renewal.automatically_finalizes_at) == (
        "open", JUN_1 + HOUR, None)
    assert renewal.number.endswith("-0002")
    assert_sdk_shape(renewal, stripe.Invoice)


def test_lines_are_paginated(stripe_client, clock):
    c = stripe_client
    prices = []
    for n in range(12):
        product = c.v1.products.create({"name": f"Add-on {n}"})
        prices.append(c.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 100 + n,
                                          "recurring": {"interval": "month"}}))
    customer = on_clock(c, clock)
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": p.id} for p in prices],
                                     "collection_method": "send_invoice", "days_until_due": 7})
    invoice = c.v1.invoices.retrieve(sub.latest_invoice)
    assert (len(invoice.lines.data), invoice.lines.has_more, invoice.total) == (10, True, sum(100 + n for n in range(12)))
    page1 = c.v1.invoices.line_items.list(invoice.id, {"limit": 5})
    page2 = c.v1.invoices.line_items.list(invoice.id, {"limit": 5, "starting_after": page1.data[-1].id})
    page3 = c.v1.invoices.line_items.list(invoice.id, {"limit": 5, "starting_after": page2.data[-1].id})
    assert [p.has_more for p in (page1, page2, page3)] == [True, True, False]
    amounts = [l.amount for p in (page1, page2, page3) for l in p.data]
    assert amounts == [100 + n for n in range(12)]  # invoice order
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.invoices.line_items.list("in_missing")


def test_invoice_lists_filter_and_paginate(stripe_client, clock):
    c = stripe_client
    product = c.v1.products.create({"name": "Pro"})
    price = c.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 900,
                                "recurring": {"interval": "month"}})
    one, two = on_clock(c, clock), on_clock(c, clock)
    sub1 = c.v1.subscriptions.create({"customer": one.id, "items": [{"price": price.id}]})  # incomplete: open
    sub2 = c.v1.subscriptions.create({"customer": two.id, "items": [{"price": price.id}],
                                      "collection_method": "send_invoice", "days_until_due": 7})  # draft
    ids = lambda params: [i.id for i in c.v1.invoices.list(params).data]
    assert ids({"customer": one.id}) == [sub1.latest_invoice]
    assert ids({"subscription": sub2.id}) == [sub2.latest_invoice]
    assert ids({"status": "draft"}) == [sub2.latest_invoice]
    assert ids({"status": "open"}) == [sub1.latest_invoice]
    assert ids({"collection_method": "send_invoice"}) == [sub2.latest_invoice]
    assert ids({"limit": 1}) == [sub2.latest_invoice]
    assert c.v1.invoices.list({"limit": 1}).has_more is True
    assert ids({"starting_after": sub2.latest_invoice}) == [sub1.latest_invoice]
    with pytest.raises(stripe.InvalidRequestError) as err:
        c.v1.invoices.retrieve("in_missing")
    assert err.value.http_status == 404


def test_expand_latest_invoice(stripe_client, clock):
    c = stripe_client
    price = metered_price(c, "Calls", unit_amount=1)
    customer = on_clock(c, clock)
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                     "expand": ["latest_invoice"]})
    assert sub.latest_invoice.object == "invoice" and sub.latest_invoice.total == 0


def test_preview_by_customer_and_its_refusals(stripe_client, clock):
    c = stripe_client
    price = metered_price(c, "Calls", unit_amount=3)
    customer = on_clock(c, clock)
    with pytest.raises(stripe.InvalidRequestError, match="No upcoming invoices"):
        c.v1.invoices.create_preview({"customer": customer.id})
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    record(c, customer.id, "calls", 11, T0)
    preview = c.v1.invoices.create_preview({"customer": customer.id})
    assert (preview.billing_reason, preview.status, preview.total) == ("upcoming", "draft", 33)
    assert preview.parent.subscription_details.subscription == sub.id
    assert preview.lines.data[0].id.startswith("il_tmp_")
    assert (preview.period_start, preview.period_end) == (T0, JUN_1)
    assert preview.id not in [i.id for i in c.v1.invoices.list({"customer": customer.id}).data]
    with pytest.raises(stripe.InvalidRequestError, match="does not emulate"):
        c.v1.invoices.create_preview({"customer": customer.id, "subscription_details": {"cancel_at_period_end": True}})
    other = on_clock(c, clock)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.invoices.create_preview({"customer": other.id, "subscription": sub.id})


def test_subscriptions_without_a_clock_follow_real_time():
    now = [T0]
    sandbox = Sandbox(faults=None, clock=lambda: now[0])
    try:
        c = stripe.StripeClient("sk_test_sandbox", http_client=SandboxHTTPClient(sandbox), max_network_retries=0)
        price = metered_price(c, "Calls", unit_amount=10)
        customer = c.v1.customers.create({"name": "Fay"})
        sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
        assert (sub.test_clock, sub["items"].data[0].current_period_end) == (None, JUN_1)
        record(c, customer.id, "calls", 4, T0 + 60)
        now[0] = JUN_1 + HOUR + 5  # time passes; the next request of any kind catches up
        c.v1.customers.retrieve(customer.id)
        renewal = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
        assert (renewal.billing_reason, renewal.status, renewal.total) == ("subscription_cycle", "open", 40)
        # charge_automatically without a payment method: the renewal is left unpaid
        assert c.v1.subscriptions.retrieve(sub.id).status == "past_due"
    finally:
        sandbox.close()
