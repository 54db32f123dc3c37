"""Every object the sandbox emits, against the stripe SDK's types: one scenario calls every
route (the test checks that none is missed), and each object in each successful response,
nested ones included, has every required field, no ``null`` where its type allows none, and
no includable field unless the request expanded it."""

import json
import time
from datetime import datetime, timezone

import stripe
from sdk_contract import assert_sdk_shape, includable

from usagebill.sandbox import Sandbox, SandboxHTTPClient
from usagebill.sandbox.expand import sdk_class
from usagebill.sandbox.routing import router

T0 = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())
FEB_1 = int(datetime(2024, 2, 1, tzinfo=timezone.utc).timestamp())
# Stripe's own example of a v2 event (API reference, "The Event object") has neither field.
OMITTED = {"v2.core.event": {"changes", "snapshot_event"}}


class Recorder:
    def __init__(self, sandbox):
        self.seen: list[tuple[str, str, int, bool, bytes]] = []
        original = sandbox.handle

        def handle(method, path, query, headers, body):
            status, rh, raw = original(method, path, query, headers, body)
            text = (query or "") + (body.decode() if isinstance(body, bytes) else (body or ""))
            self.seen.append((method.upper(), path.partition("?")[0], status, "expand" in text, raw))
            return status, rh, raw

        sandbox.handle = handle


def scenario(c):
    meter = c.v1.billing.meters.create({"display_name": "API Calls", "event_name": "api_calls",
                                        "default_aggregation": {"formula": "sum"}})
    c.v1.billing.meters.update(meter.id, {"display_name": "API calls"})
    c.v1.billing.meters.retrieve(meter.id)
    c.v1.billing.meters.list()
    spare = c.v1.billing.meters.create({"display_name": "spare", "event_name": "spare",
                                        "default_aggregation": {"formula": "count"}})
    c.v1.billing.meters.deactivate(spare.id)
    c.v1.billing.meters.reactivate(spare.id)
    pro = c.v1.products.create({"name": "Pro"})
    calls = c.v1.products.create({"name": "API Calls"})
    c.v1.products.update(pro.id, {"metadata": {"k": "v"}})
    c.v1.products.retrieve(pro.id)
    c.v1.products.list()
    base = c.v1.prices.create({"product": pro.id, "currency": "usd", "unit_amount": 2000,
                               "recurring": {"interval": "month"}, "lookup_key": "pro"})
    metered = c.v1.prices.create({"product": calls.id, "currency": "usd", "unit_amount_decimal": "0.5",
                                  "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    c.v1.prices.create({"product": pro.id, "currency": "usd", "unit_amount": 500})  # one-time
    c.v1.prices.update(base.id, {"nickname": "base"})
    c.v1.prices.retrieve(base.id, {"expand": ["product", "currency_options", "tiers"]})
    c.v1.prices.list({"lookup_keys": ["pro"]})
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": T0, "name": "shapes"})
    c.v1.test_helpers.test_clocks.retrieve(clock.id)
    c.v1.test_helpers.test_clocks.list()
    ada = c.v1.customers.create({"name": "Ada", "email": "ada@example.com", "test_clock": clock.id,
                                 "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    ed = c.v1.customers.create({"name": "Ed", "test_clock": clock.id})
    c.v1.customers.update(ada.id, {"metadata": {"plan": "pro"}})
    c.v1.customers.retrieve(ada.id, {"expand": ["sources", "subscriptions", "tax", "tax_ids", "cash_balance",
                                                "invoice_credit_balance"]})
    c.v1.customers.list({"test_clock": clock.id})
    sub = c.v1.subscriptions.create({"customer": ada.id, "items": [{"price": base.id}, {"price": metered.id}]})
    other = c.v1.subscriptions.create({"customer": ed.id, "items": [{"price": base.id}],
                                       "collection_method": "send_invoice", "days_until_due": 30})
    c.v1.subscriptions.update(sub.id, {"metadata": {"a": "b"}})
    c.v1.subscriptions.retrieve(sub.id)
    c.v1.subscriptions.list({"customer": ada.id})
    items = c.v1.subscription_items.list({"subscription": sub.id})
    c.v1.subscription_items.retrieve(items.data[0].id)
    spare_price = c.v1.prices.create({"product": calls.id, "currency": "usd", "unit_amount_decimal": "2",
                                      "recurring": {"interval": "month", "usage_type": "metered", "meter": spare.id}})
    added = c.v1.subscription_items.create({"subscription": other.id, "price": spare_price.id})
    repriced = c.v1.prices.create({"product": calls.id, "currency": "usd", "unit_amount_decimal": "3",
                                   "recurring": {"interval": "month", "usage_type": "metered", "meter": spare.id}})
    c.v1.subscription_items.update(added.id, {"price": repriced.id})
    c.v1.billing.meter_events.create({"event_name": "api_calls", "identifier": "v1-a", "timestamp": T0,
                                      "payload": {"stripe_customer_id": ada.id, "value": "40"}})
    c.v1.billing.meter_event_adjustments.create({"event_name": "api_calls", "type": "cancel",
                                                 "cancel": {"identifier": "v1-a"}})
    c.v2.billing.meter_events.create({"event_name": "api_calls", "identifier": "v2-a",
                                      "payload": {"stripe_customer_id": ada.id, "value": "30"}})
    c.v2.billing.meter_event_adjustments.create({"event_name": "api_calls", "type": "cancel",
                                                 "cancel": {"identifier": "v2-a"}})
    token = c.v2.billing.meter_event_session.create().authentication_token
    c.v2.billing.meter_event_stream.create({"events": [
        {"event_name": "api_calls", "identifier": "s-1", "payload": {"stripe_customer_id": ada.id, "value": "7"}},
        {"event_name": "api_calls", "identifier": "s-bad", "payload": {"stripe_customer_id": "cus_nobody", "value": "1"}},
        {"event_name": "nothing", "identifier": "s-lost", "payload": {"stripe_customer_id": ada.id, "value": "1"}},
    ]}, {"api_key": token})
    events = c.v2.core.events.list()
    c.v2.core.events.retrieve(events.data[0].id)
    now = int(time.time())
    c.v1.billing.meters.event_summaries.list(meter.id, {"customer": ada.id, "start_time": now - now % 60 - 3600,
                                                        "end_time": now - now % 60 + 60})
    item = c.v1.invoice_items.create({"customer": ada.id, "amount": 250, "currency": "usd", "description": "late"})
    doomed = c.v1.invoice_items.create({"customer": ada.id, "amount": 1, "currency": "usd"})
    c.v1.invoice_items.retrieve(item.id)
    c.v1.invoice_items.list({"customer": ada.id})
    c.v1.invoice_items.delete(doomed.id)
    c.v1.invoices.create_preview({"subscription": sub.id})
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": FEB_1 + 10 * 60})
    draft = c.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    c.v1.invoices.retrieve(draft.id, {"expand": ["payments", "threshold_reason", "confirmation_secret"]})
    c.v1.invoices.line_items.list(draft.id)
    c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": FEB_1 + 2 * 3600})
    c.v1.invoices.retrieve(draft.id)
    c.v1.subscriptions.cancel(other.id, {"prorate": True, "invoice_now": True})
    c.v1.customers.delete(ed.id)
    c.v1.customers.retrieve(ed.id)
    c.v1.test_helpers.test_clocks.delete(clock.id)


def objects(node, found):
    if isinstance(node, list):
        for item in node:
            objects(item, found)
    elif isinstance(node, dict):
        if node.get("object") and node["object"] != "list":
            found.append(node)
        for value in node.values():
            objects(value, found)


def test_every_object_the_sandbox_emits_matches_the_sdk_types():
    sb = Sandbox(faults=None)
    recorder = Recorder(sb)
    scenario(stripe.StripeClient("sk_test_shapes", http_client=SandboxHTTPClient(sb), max_network_retries=0))
    called = {(m, p) for m, p, status, _, _ in recorder.seen if status < 300}
    routes = {(r.method, r.pattern) for r in router.routes}
    missed = [(m, pattern) for m, pattern in routes
              if not any(m == cm and r.regex.match(cp) for r in router.routes if r.pattern == pattern for cm, cp in called)]
    assert not missed, f"routes the scenario never called: {sorted(missed)}"
    types: set[str] = set()
    checked = 0
    for method, path, status, expanded, raw in recorder.seen:
        if status >= 300:
            continue
        found: list[dict] = []
        objects(json.loads(raw), found)
        for obj in found:
            cls = sdk_class(obj["object"])
            assert cls is not None, f"{method} {path}: no SDK class for {obj['object']}"
            types.add(obj["object"])
            data = {**obj, **{k: None for k in OMITTED.get(obj["object"], ()) if k not in obj}}
            if obj.get("deleted"):
                assert set(obj) == {"id", "object", "deleted"}, f"{method} {path}: {obj}"
                continue
            included = tuple(includable(cls) & set(obj)) if expanded else ()
            try:
                assert_sdk_shape(data, cls, included=included)
            except AssertionError as e:
                raise AssertionError(f"{method} {path}: {e}") from None
            checked += 1
    assert types >= {
        "billing.meter", "billing.meter_event", "billing.meter_event_adjustment", "billing.meter_event_summary",
        "customer", "invoice", "invoiceitem", "line_item", "plan", "price", "product", "subscription",
        "subscription_item", "test_helpers.test_clock", "v2.billing.meter_event", "v2.billing.meter_event_adjustment",
        "v2.billing.meter_event_session", "v2.core.event",
    }, types
    assert checked > 100
    sb.close()
