"""Test clocks through the SDK: lifecycle, advance rules, deletion cascade."""

from datetime import datetime, timezone

import pytest
import stripe
from sdk_contract import assert_sdk_shape

T0 = int(datetime(2024, 1, 31, 12, tzinfo=timezone.utc).timestamp())
DAY = 86400


def ts(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def weekly_subscription(c, clock_id, interval="week"):
    product = c.v1.products.create({"name": "Seat"})
    price = c.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 500,
                                "recurring": {"interval": interval}})
    customer = c.v1.customers.create({"name": "Cy", "test_clock": clock_id,
                                      "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    return customer, c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})


def test_create_retrieve_list(stripe_client):
    c = stripe_client
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0, "name": "Q1"})
    assert (clock.status, clock.frozen_time, clock.name, clock.livemode) == ("ready", T0, "Q1", False)
    assert clock.id.startswith("clock_")
    assert_sdk_shape(clock, stripe.test_helpers.TestClock)
    other = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    assert c.v1.test_helpers.test_clocks.retrieve(clock.id).id == clock.id
    assert [k.id for k in c.v1.test_helpers.test_clocks.list().data] == [other.id, clock.id]
    page = c.v1.test_helpers.test_clocks.list({"limit": 1})
    assert page.has_more and [k.id for k in page.data] == [other.id]
    with pytest.raises(stripe.InvalidRequestError) as err:
        c.v1.test_helpers.test_clocks.retrieve("clock_nope")
    assert err.value.http_status == 404


def test_advance_reports_advancing_then_ready(stripe_client):
    c = stripe_client
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    advancing = c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": T0 + DAY})
    assert advancing.status == "advancing"
    assert advancing.frozen_time == T0  # not there yet, as Stripe answers
    assert advancing.status_details.advancing.target_frozen_time == T0 + DAY
    ready = c.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert (ready.status, ready.frozen_time, ready.status_details.to_dict()) == ("ready", T0 + DAY, {})


def test_advance_refuses_going_backwards_or_standing_still(stripe_client):
    c = stripe_client
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    for target in (T0 - 1, T0):
        with pytest.raises(stripe.InvalidRequestError) as err:
            c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": target})
        assert err.value.param == "frozen_time"
    assert c.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == T0


def test_advance_limit_is_two_years_without_subscriptions(stripe_client):
    c = stripe_client
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": ts(2026, 1, 31, 12) + 1})
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": ts(2026, 1, 31, 12)})


def test_advance_limit_is_two_intervals_of_the_shortest_subscription(stripe_client):
    c = stripe_client
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    weekly_subscription(c, clock.id, "month")
    weekly_subscription(c, clock.id, "week")
    with pytest.raises(stripe.InvalidRequestError, match="two intervals"):
        c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": T0 + 14 * DAY + 1})
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": T0 + 14 * DAY})


def test_advance_over_several_periods_bills_each_one_in_order(stripe_client):
    c = stripe_client
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    _, sub = weekly_subscription(c, clock.id, "month")
    # Jan 31 -> Mar 31, the furthest a monthly subscription allows: two period ends in one advance
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": ts(2024, 3, 31, 12)})
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": ts(2024, 4, 1)})  # past the draft hour
    invoices = c.v1.invoices.list({"subscription": sub.id}).data
    cycles = [i for i in reversed(invoices) if i.billing_reason == "subscription_cycle"]
    # the Jan 31 anchor: Feb 29 (leap year), then Mar 31 - never Mar 29
    assert [i.created for i in cycles] == [ts(2024, 2, 29, 12), ts(2024, 3, 31, 12)]
    assert [(l.period.start, l.period.end) for i in cycles for l in i.lines.data] == [
        (ts(2024, 2, 29, 12), ts(2024, 3, 31, 12)), (ts(2024, 3, 31, 12), ts(2024, 4, 30, 12))]
    assert [i.status for i in cycles] == ["paid", "paid"]
    assert [i.number[-4:] for i in reversed(invoices)] == ["0001", "0002", "0003"]
    item = c.v1.subscription_items.retrieve(sub["items"].data[0].id)
    assert (item.current_period_start, item.current_period_end) == (ts(2024, 3, 31, 12), ts(2024, 4, 30, 12))


def test_deleting_a_clock_deletes_its_customers_and_their_subscriptions(stripe_client):
    c = stripe_client
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    customer, sub = weekly_subscription(c, clock.id)
    deleted = c.v1.test_helpers.test_clocks.delete(clock.id)
    assert deleted.to_dict() == {"id": clock.id, "object": "test_helpers.test_clock", "deleted": True}
    for call in (lambda: c.v1.test_helpers.test_clocks.retrieve(clock.id),
                 lambda: c.v1.subscriptions.retrieve(sub.id),
                 lambda: c.v1.invoices.retrieve(sub.latest_invoice)):
        with pytest.raises(stripe.InvalidRequestError):
            call()
    assert c.v1.customers.retrieve(customer.id).to_dict().get("deleted") is True
