"""Invoice items through the SDK, in process and over the loopback server: create, retrieve,
list, delete while pending; picked up by the customer's next subscription invoice as lines of
their own (and shown by create_preview), added to a draft with ``invoice``."""

from datetime import datetime, timezone

import pytest
import stripe
from sdk_contract import assert_sdk_shape

T0 = int(datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp())
JUN_1 = int(datetime(2024, 6, 1, tzinfo=timezone.utc).timestamp())
JUL_1 = int(datetime(2024, 7, 1, tzinfo=timezone.utc).timestamp())
HOUR = 3600


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
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": base.id}, {"price": metered.id}],
                                     "collection_method": "send_invoice", "days_until_due": 30})
    return {"clock": clock, "customer": customer, "sub": sub, "base": base, "product": calls}


def renewal(c, sub, n=0):
    return c.v1.invoices.list({"subscription": sub.id}).data[n]


def test_create_retrieve_list_and_shape(c, plan):
    customer = plan["customer"]
    item = c.v1.invoice_items.create({"customer": customer.id, "amount": 450, "currency": "usd",
                                      "description": "Late usage: API Calls (May)", "metadata": {"k": "v"}})
    assert item.id.startswith("ii_") and item.object == "invoiceitem"
    assert (item.amount, item.currency, item.quantity, item.invoice, item.date) == (450, "usd", 1, None, T0)
    assert (item.period.start, item.period.end, item.test_clock, item.discountable) == (T0, T0, plan["clock"].id, True)
    assert item.pricing.price_details is None and str(item.pricing.unit_amount_decimal) == "450"
    assert_sdk_shape(item, stripe.InvoiceItem)
    assert c.v1.invoice_items.retrieve(item.id).to_dict() == item.to_dict()
    priced = c.v1.invoice_items.create({"customer": customer.id, "pricing": {"price": plan["base"].id},
                                        "quantity": 2})
    assert (priced.amount, priced.description, priced.pricing.price_details.price) == (4000, "Pro", plan["base"].id)
    listed = c.v1.invoice_items.list({"customer": customer.id})
    assert [i.id for i in listed.data] == [priced.id, item.id]  # newest first
    assert [i.id for i in c.v1.invoice_items.list({"pending": True, "limit": 1}).data] == [priced.id]
    assert c.v1.invoice_items.list({"created": {"gt": T0}}).data == []


def test_next_subscription_invoice_takes_pending_items_as_their_own_lines(c, plan):
    customer, sub = plan["customer"], plan["sub"]
    item = c.v1.invoice_items.create({"customer": customer.id, "unit_amount_decimal": "10", "quantity": 7,
                                      "currency": "usd", "description": "7 API calls of April, reported late"})
    preview = c.v1.invoices.create_preview({"subscription": sub.id})
    assert [(ln.description, ln.amount) for ln in preview.lines.data][0] == ("7 API calls of April, reported late", 70)
    assert preview.total == 2000 + 70
    assert c.v1.invoice_items.retrieve(item.id).invoice is None  # a preview takes nothing

    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": JUN_1 + 2 * HOUR})
    invoice = renewal(c, sub)
    (ii_line,) = [ln for ln in invoice.lines.data if ln.parent.type == "invoice_item_details"]
    assert (ii_line.amount, ii_line.quantity, ii_line.parent.invoice_item_details.invoice_item) == (70, 7, item.id)
    assert_sdk_shape(ii_line, stripe.InvoiceLineItem)
    assert (invoice.status, invoice.total, invoice.amount_due) == ("open", 2070, 2070)
    assert c.v1.invoice_items.retrieve(item.id).invoice == invoice.id
    assert c.v1.invoice_items.list({"pending": True}).data == []
    # billed once: the next renewal does not take it again
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": JUL_1 + 2 * HOUR})
    assert renewal(c, sub).total == 2000


def test_item_for_another_subscription_or_currency_waits(c, plan):
    customer = plan["customer"]
    eur = c.v1.invoice_items.create({"customer": customer.id, "amount": 100, "currency": "eur"})
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": JUN_1 + 2 * HOUR})
    assert renewal(c, plan["sub"]).total == 2000
    assert c.v1.invoice_items.retrieve(eur.id).invoice is None


def test_item_added_to_a_draft_and_deleted_from_it(c, plan):
    customer, sub = plan["customer"], plan["sub"]
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": JUN_1 + 10 * 60})
    draft = renewal(c, sub)
    assert draft.status == "draft"
    late = c.v1.invoice_items.create({"customer": customer.id, "amount": 300, "currency": "usd",
                                      "invoice": draft.id})
    assert late.invoice == draft.id
    assert c.v1.invoices.retrieve(draft.id).total == 2300
    # a pending item created now waits for the invoice after this draft, as on Stripe
    waiting = c.v1.invoice_items.create({"customer": customer.id, "amount": 5, "currency": "usd"})
    deleted = c.v1.invoice_items.delete(late.id)
    assert (deleted.id, deleted.deleted) == (late.id, True)
    assert c.v1.invoices.retrieve(draft.id).total == 2000
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": JUN_1 + 2 * HOUR})
    final = c.v1.invoices.retrieve(draft.id)
    assert (final.status, final.total, final.lines.total_count) == ("open", 2000, 2)
    assert c.v1.invoice_items.retrieve(waiting.id).invoice is None


def test_delete_refusals_and_create_errors(c, plan):
    customer, sub = plan["customer"], plan["sub"]
    item = c.v1.invoice_items.create({"customer": customer.id, "amount": 100, "currency": "usd"})
    c.v1.test_helpers.test_clocks.advance(plan["clock"].id, {"frozen_time": JUN_1 + 2 * HOUR})
    with pytest.raises(stripe.InvalidRequestError) as e:
        c.v1.invoice_items.delete(item.id)
    assert (e.value.code, e.value.param) == ("invoice_not_editable", "invoice")
    with pytest.raises(stripe.InvalidRequestError) as e:
        c.v1.invoice_items.create({"customer": customer.id, "amount": 1, "currency": "usd",
                                   "invoice": renewal(c, sub).id})
    assert e.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError) as e:
        c.v1.invoice_items.retrieve("ii_missing")
    assert (e.value.http_status, e.value.code) == (404, "resource_missing")
    cases = [
        ({"customer": "cus_nope", "amount": 1, "currency": "usd"}, 400, "resource_missing", "customer"),
        ({"customer": customer.id, "currency": "usd"}, 400, "parameter_missing", "amount"),
        ({"customer": customer.id, "amount": 1}, 400, "parameter_missing", "currency"),
        ({"customer": customer.id, "amount": 1, "currency": "usd", "unit_amount_decimal": "1"}, 400,
         "parameters_exclusive", "unit_amount_decimal"),
        ({"customer": customer.id, "pricing": {"price": "price_nope"}}, 400, "resource_missing", "pricing[price]"),
        ({"customer": customer.id, "amount": 1, "currency": "usd", "subscription": "sub_nope"}, 400,
         "resource_missing", "subscription"),
    ]
    for params, status, code, param in cases:
        with pytest.raises(stripe.InvalidRequestError) as e:
            c.v1.invoice_items.create(params)
        assert (e.value.http_status, e.value.code, e.value.param) == (status, code, param), params
    with pytest.raises(stripe.InvalidRequestError) as e:
        c.v1.invoice_items.create({"customer": customer.id, "amount": 1, "currency": "xyz"})
    assert e.value.param == "currency" and "Invalid currency: xyz" in str(e.value)
