"""The finalization grace hour: a renewal invoice stays a draft for an hour after the period
ends, and usage for the ended period reported in that hour is billed when it finalizes
(Stripe, "Configure an invoice finalization grace period"). Drafts show it live."""

from datetime import datetime, timezone

import pytest

T0 = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())
FEB_1 = int(datetime(2024, 2, 1, tzinfo=timezone.utc).timestamp())
MAR_1 = int(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp())
MINUTE, HOUR = 60, 3600


@pytest.fixture
def c(both_transports):
    return both_transports


@pytest.fixture
def plan(c):
    meter = c.v1.billing.meters.create({"display_name": "API Calls", "event_name": "api_calls",
                                        "default_aggregation": {"formula": "sum"}})
    pro, calls = c.v1.products.create({"name": "Pro"}), c.v1.products.create({"name": "API Calls"})
    base = c.v1.prices.create({"product": pro.id, "currency": "usd", "unit_amount": 2000,
                               "recurring": {"interval": "month"}})
    metered = c.v1.prices.create({"product": calls.id, "currency": "usd", "unit_amount": 10,
                                  "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    customer = c.v1.customers.create({"name": "Ada", "test_clock": clock.id})
    return {"clock": clock, "customer": customer, "base": base, "metered": metered}


def subscribe(c, plan, **extra):
    return c.v1.subscriptions.create({"customer": plan["customer"].id, "collection_method": "send_invoice",
                                      "days_until_due": 30, "items": [{"price": plan["base"].id},
                                                                      {"price": plan["metered"].id}], **extra})


def advance(c, plan, to):
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": to})


def use(c, plan, units, at):
    c.v1.billing.meter_events.create({"event_name": "api_calls", "timestamp": at,
                                      "payload": {"stripe_customer_id": plan["customer"].id, "value": str(units)}})


def metered_line(invoice):
    (line,) = [ln for ln in invoice.lines.data if ln.description.endswith("API Calls (at $0.10 / month)")]
    return line


def test_usage_reported_in_the_grace_hour_is_billed_at_finalization(c, plan):
    sub = subscribe(c, plan)
    advance(c, plan, T0 + 10 * 86400)
    use(c, plan, 150, T0 + 10 * 86400)
    advance(c, plan, FEB_1 + 30 * MINUTE)
    draft = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert (draft.status, metered_line(draft).quantity, draft.total) == ("draft", 150, 3500)
    # 5 units stamped 10 minutes before the period end, sent 30 minutes into the draft hour
    use(c, plan, 5, FEB_1 - 10 * MINUTE)
    live = c.v1.invoices.retrieve(draft.id)
    assert (metered_line(live).quantity, metered_line(live).amount, live.total) == (155, 1550, 3550)
    assert [ln.quantity for ln in c.v1.invoices.line_items.list(draft.id).data] == [1, 155]
    assert c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0].total == 3550
    assert c.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]}).latest_invoice.total == 3550
    advance(c, plan, FEB_1 + HOUR)
    final = c.v1.invoices.retrieve(draft.id)
    line = metered_line(final)
    assert (final.status, line.quantity, line.amount, final.total, final.amount_due) == ("open", 155, 1550, 3550, 3550)
    assert line.description == "155 × API Calls (at $0.10 / month)"
    assert (line.period.start, line.period.end) == (T0, FEB_1)


def test_usage_of_the_ended_period_sent_after_finalization_is_on_no_invoice(c, plan):
    sub = subscribe(c, plan)
    advance(c, plan, FEB_1 + 2 * HOUR)
    final = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    use(c, plan, 7, FEB_1 - MINUTE)  # accepted (inside Stripe's 35-day window) but too late
    assert (c.v1.invoices.retrieve(final.id).total, metered_line(c.v1.invoices.retrieve(final.id)).quantity) == (2000, 0)
    advance(c, plan, MAR_1 + 2 * HOUR)
    march = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert (march.period_start, metered_line(march).quantity, march.total) == (FEB_1, 0, 2000)


def test_usage_of_the_new_period_stays_out_of_the_draft(c, plan):
    sub = subscribe(c, plan)
    advance(c, plan, FEB_1 + 30 * MINUTE)
    use(c, plan, 9, FEB_1 + 20 * MINUTE)  # the new period's usage
    advance(c, plan, FEB_1 + HOUR)
    final = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert metered_line(final).quantity == 0
    preview = c.v1.invoices.create_preview({"subscription": sub.id})
    assert metered_line(preview).quantity == 9


def test_the_first_invoice_never_takes_usage(c, plan):
    """A send_invoice first invoice is also a draft for an hour; its metered lines are the
    new period's, at quantity 0, and stay so."""
    sub = subscribe(c, plan)
    use(c, plan, 4, T0)
    advance(c, plan, T0 + HOUR)
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.status, first.billing_reason, metered_line(first).quantity, first.total) == (
        "open", "subscription_create", 0, 2000)


def test_final_invoice_of_a_cancel_at_period_end_takes_grace_hour_usage(c, plan):
    sub = subscribe(c, plan, cancel_at_period_end=True)
    advance(c, plan, T0 + 86400)
    use(c, plan, 20, T0 + 86400)
    advance(c, plan, FEB_1 + 10 * MINUTE)
    use(c, plan, 3, FEB_1 - MINUTE)
    advance(c, plan, FEB_1 + HOUR)
    final = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert (final.status, [ln.quantity for ln in final.lines.data], final.total) == ("open", [23], 230)
    assert c.v1.subscriptions.retrieve(sub.id).status == "canceled"
