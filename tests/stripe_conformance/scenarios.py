"""The scenarios run on both Stripes. Each takes a Backend and the scenario's start time and
returns its outcome: only what both must agree on (invoice lines, quantities, amounts,
statuses, error types and codes), as plain data for ``Normaliser``."""

from __future__ import annotations

import time

import stripe

from tests.stripe_conformance.backend import Backend

HOUR, DAY = 3600, 86400


def lines(invoice) -> list[tuple]:
    return [(ln.description, ln.quantity, ln.amount, ln.parent.type) for ln in invoice.lines.data]


def invoice_outcome(invoice) -> dict:
    return {"billing_reason": invoice.billing_reason, "status": invoice.status, "total": invoice.total,
            "amount_due": invoice.amount_due, "period": [invoice.period_start, invoice.period_end],
            "lines": lines(invoice)}


def _plan(b: Backend, t0: int):
    meter = b.meter("api_calls")
    pro, calls = b.product("Pro"), b.product("API Calls")
    base = b.price(product=pro.id, currency="usd", unit_amount=2000, recurring={"interval": "month"})
    metered = b.price(product=calls.id, currency="usd", unit_amount=10,
                      recurring={"interval": "month", "usage_type": "metered", "meter": meter.id})
    clock = b.clock(t0)
    customer = b.client.v1.customers.create({"name": "Conformance", "test_clock": clock.id})
    sub = b.client.v1.subscriptions.create({
        "customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30,
        "items": [{"price": base.id}, {"price": metered.id}]})
    return meter, clock, customer, sub


def _use(b: Backend, customer_id: str, units: int, at: int, identifier: str | None = None) -> None:
    params = {"event_name": b.event_name("api_calls"), "timestamp": at,
              "payload": {"stripe_customer_id": customer_id, "value": str(units)}}
    if identifier:
        params["identifier"] = identifier
    b.client.v1.billing.meter_events.create(params)


def _renewal(b: Backend, sub_id: str, status: str | None = None):
    def found():
        data = b.client.v1.invoices.list({"subscription": sub_id, "limit": 1}).data
        return data[0] if data and data[0].billing_reason == "subscription_cycle" and (
            status is None or data[0].status == status) else None
    return b.wait_for(f"the renewal invoice of {sub_id}", found)


def clock_walkthrough(b: Backend, t0: int) -> dict:
    """Stripe's docs: a customer on a test clock, Pro $20 + 150 API calls at $0.10, the
    invoice at the period end."""
    _, clock, customer, sub = _plan(b, t0)
    end = sub["items"].data[0].current_period_end
    first = b.client.v1.invoices.retrieve(sub.latest_invoice)
    b.advance(clock.id, t0 + 10 * DAY)
    for i in range(3):
        _use(b, customer.id, 50, t0 + 10 * DAY - i)
    preview = b.client.v1.invoices.create_preview({"subscription": sub.id})
    b.advance(clock.id, end + 2 * HOUR)
    renewal = _renewal(b, sub.id, "open")
    return {"period_end": end, "first": invoice_outcome(first), "preview_lines": lines(preview),
            "renewal": invoice_outcome(renewal)}


def late_usage_in_the_grace_hour(b: Backend, t0: int) -> dict:
    """Usage for the ended period reported while the renewal is a draft is billed on it."""
    _, clock, customer, sub = _plan(b, t0)
    end = sub["items"].data[0].current_period_end
    b.advance(clock.id, t0 + 5 * DAY)
    _use(b, customer.id, 100, t0 + 5 * DAY)
    b.advance(clock.id, end + 30 * 60)
    draft = _renewal(b, sub.id)
    _use(b, customer.id, 5, end - 10 * 60)
    seen_in_draft = b.client.v1.invoices.retrieve(draft.id)
    b.advance(clock.id, end + 2 * HOUR)
    final = b.wait_for("the renewal finalizing", lambda: (
        (inv := b.client.v1.invoices.retrieve(draft.id)).status != "draft" and inv))
    return {"draft_status": draft.status, "draft_lines": lines(seen_in_draft), "final": invoice_outcome(final)}


def cancel_with_a_last_invoice(b: Backend, t0: int) -> dict:
    """Cancel now with ``invoice_now`` and ``prorate``: usage so far and the unused time's credit."""
    _, clock, customer, sub = _plan(b, t0)
    b.advance(clock.id, t0 + 10 * DAY)
    _use(b, customer.id, 30, t0 + 10 * DAY)
    canceled = b.client.v1.subscriptions.cancel(sub.id, {"invoice_now": True, "prorate": True})
    final = b.client.v1.invoices.retrieve(canceled.latest_invoice)
    return {"status": canceled.status, "ended_at": canceled.ended_at, "final": invoice_outcome(final),
            "balance": b.client.v1.customers.retrieve(customer.id).balance}


def stream_batch_with_one_bad_event(b: Backend, t0: int) -> dict:
    """The v2 stream accepts the batch; the bad event is dropped and named in an error report."""
    meter = b.meter("api_calls")
    customer = b.client.v1.customers.create({"name": "Stream"})
    name = b.event_name("api_calls")
    token = b.client.v2.billing.meter_event_session.create().authentication_token
    events = [{"event_name": name, "identifier": f"{b.prefix}_good_{i}",
               "payload": {"stripe_customer_id": customer.id, "value": "2"}} for i in range(3)]
    events.insert(1, {"event_name": name, "identifier": f"{b.prefix}_bad",
                      "payload": {"stripe_customer_id": "cus_doesnotexist", "value": "2"}})
    b.client.v2.billing.meter_event_stream.create({"events": events}, {"api_key": token})  # raises unless accepted
    reports = b.wait_for("the meter error report", lambda: b.client.v2.core.events.list({
        "object_id": meter.id, "types": ["v1.billing.meter.error_report_triggered"]}).data)
    now = int(time.time())
    start, end = now - now % 60 - HOUR, now - now % 60 + 60

    def total():
        got = sum(s.aggregated_value for s in b.client.v1.billing.meters.event_summaries.list(
            meter.id, {"customer": customer.id, "start_time": start, "end_time": end}).data)
        return got if got >= 6 else None
    reason = reports[0].data.reason
    return {
        "total": b.wait_for("the meter's aggregate", total),
        "report": {"type": reports[0].type, "related": reports[0].related_object.type,
                   "error_count": reason.error_count,
                   "errors": sorted((t.code, sorted(s.request.identifier for s in t.sample_errors))
                                    for t in reason.error_types)},
    }


def idempotent_retries(b: Backend, t0: int) -> dict:
    key = f"{b.prefix}-customer"
    first = b.client.v1.customers.create({"name": "Once"}, {"idempotency_key": key})
    again = b.client.v1.customers.create({"name": "Once"}, {"idempotency_key": key})
    replayed = (again.last_response.headers or {}).get("idempotent-replayed")
    outcome = {"same_object": again.id == first.id, "replayed": replayed}
    try:
        b.client.v1.customers.create({"name": "Other"}, {"idempotency_key": key})
        outcome["other_params"] = "accepted"
    except stripe.StripeError as e:
        outcome["other_params"] = _error(e)
    b.client.v1.customers.delete(first.id)
    return outcome


def _error(e: stripe.StripeError) -> dict:
    err = (e.json_body or {}).get("error") or {}
    return {"status": e.http_status, "type": err.get("type"), "code": err.get("code"), "param": err.get("param")}


def error_cases(b: Backend, t0: int) -> dict:
    c = b.client
    meter = b.meter("api_calls")
    product = b.product("Errors")
    price = b.price(product=product.id, currency="usd", unit_amount=100, recurring={"interval": "month"})
    customer = c.v1.customers.create({"name": "Errors"})
    dup = {"event_name": b.event_name("api_calls"), "identifier": f"{b.prefix}_dup",
           "payload": {"stripe_customer_id": customer.id, "value": "1"}}
    c.v1.billing.meter_events.create(dup)
    cases = {
        "unknown customer in a body": lambda: c.v1.subscriptions.create(
            {"customer": "cus_doesnotexist", "items": [{"price": price.id}]}),
        "unknown price in items": lambda: c.v1.subscriptions.create(
            {"customer": customer.id, "items": [{"price": "price_doesnotexist"}]}),
        "unknown id in the URL": lambda: c.v1.customers.retrieve("cus_doesnotexist"),
        "unknown currency": lambda: c.v1.prices.create({"product": product.id, "currency": "xyz", "unit_amount": 1}),
        "expand of a plain field": lambda: c.v1.customers.retrieve(customer.id, {"expand": ["email"]}),
        "missing parameter": lambda: c.v1.billing.meters.create({"display_name": "x", "event_name": "y"}),
        "unknown parameter": lambda: c.v1.customers.create({"nickname": "x"}),
        "duplicate meter event": lambda: c.v1.billing.meter_events.create(dup),
        "meter event for no meter": lambda: c.v1.billing.meter_events.create(
            {**dup, "identifier": f"{b.prefix}_x", "event_name": b.event_name("nothing")}),
    }
    out = {}
    for name, call in cases.items():
        try:
            call()
            out[name] = "accepted"
        except stripe.StripeError as e:
            out[name] = _error(e)
            if name == "duplicate meter event":
                out[name]["message_says_already_exists"] = "already exists with identifier" in str(e.user_message).lower()
    c.v1.customers.delete(customer.id)
    b.client.v1.billing.meters.deactivate(meter.id)
    b.meters.remove(meter.id)
    return out


SCENARIOS = {f.__name__: f for f in (clock_walkthrough, late_usage_in_the_grace_hour, cancel_with_a_last_invoice,
                                     stream_batch_with_one_bad_event, idempotent_retries, error_cases)}
