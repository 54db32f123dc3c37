"""Test clocks: /v1/test_helpers/test_clocks.

Advancing is done synchronously, but the advance response says ``advancing`` (with
``status_details.advancing.target_frozen_time`` and the old ``frozen_time``), as Stripe's does;
the stored clock is already ``ready`` at the new time, so the next retrieve shows it done."""

from __future__ import annotations

import copy

from ..errors import invalid
from ..routing import Request, list_response, router
from ..store import Store
from . import engine, invoice_items, invoices, periods, subscriptions
from .params import required

CLOCK = "test_helpers.test_clock"
DELETES_AFTER = 7 * 86400  # Stripe's API reference example: deletes_after = created + 7 days
NO_SUBSCRIPTION_LIMIT_YEARS = 2


@router.route("POST", "/v1/test_helpers/test_clocks", params="test_helpers.TestClockCreateParams")
def create_clock(req: Request) -> dict:
    p = req.params
    if p.get("customer"):
        raise invalid("The usagebill sandbox does not emulate `customer` on test clock creation.", param="customer")
    clock = {
        "id": Store.new_id("clock"),
        "object": CLOCK,
        "created": req.now,
        "deletes_after": req.now + DELETES_AFTER,
        "frozen_time": int(required(p, "frozen_time")),
        "livemode": False,
        "name": p.get("name"),
        "status": "ready",
        "status_details": {},
    }
    return req.store.insert(clock)


@router.route("GET", "/v1/test_helpers/test_clocks/{id}", params="test_helpers.TestClockRetrieveParams")
def retrieve_clock(req: Request, id: str) -> dict:
    return req.store.find(CLOCK, id)


@router.route("GET", "/v1/test_helpers/test_clocks", params="test_helpers.TestClockListParams")
def list_clocks(req: Request) -> dict:
    return list_response(req, req.store.all(CLOCK), "/v1/test_helpers/test_clocks")


def advance_limit(store: Store, clock: dict) -> int:
    """Stripe: the new time "Cannot be more than two intervals in the future from the shortest
    subscription in this test clock. If there are no subscriptions in this test clock, it cannot
    be more than two years in the future." Counted from the clock's current frozen time."""
    live = [s for s in engine.clock_subscriptions(store, clock["id"])
            if s["status"] not in ("canceled", "incomplete_expired")]
    now = clock["frozen_time"]
    if not live:
        return periods.boundary(now, "year", 1, NO_SUBSCRIPTION_LIMIT_YEARS)
    shortest = min((subscriptions.interval_of(s) for s in live), key=lambda ic: periods.approx_seconds(*ic))
    return periods.add_intervals(now, *shortest, 2)


@router.route("POST", "/v1/test_helpers/test_clocks/{id}/advance", params="test_helpers.TestClockAdvanceParams")
def advance_clock(req: Request, id: str) -> dict:
    store = req.store
    clock = store.find(CLOCK, id)
    target = int(required(req.params, "frozen_time"))
    if target <= clock["frozen_time"]:
        raise invalid(
            f"The test clock's frozen_time can only move forward: {target} is not after its current "
            f"frozen time {clock['frozen_time']}.", param="frozen_time")
    limit = advance_limit(store, clock)
    if target > limit:
        raise invalid(
            f"Cannot advance the test clock to {target}: it can advance at most two intervals of the "
            f"shortest subscription interval on it (two years without subscriptions), that is to {limit}.",
            param="frozen_time")
    response = copy.deepcopy(clock)
    response["status"] = "advancing"
    response["status_details"] = {"advancing": {"target_frozen_time": target}}
    clock["frozen_time"] = target  # set first: the engine reads customers' time from the clock
    store.put(clock)
    engine.advance_clock(store, id, target, req.now)
    return response


@router.route("DELETE", "/v1/test_helpers/test_clocks/{id}", params="test_helpers.TestClockDeleteParams")
def delete_clock(req: Request, id: str) -> dict:
    """Deleting a clock deletes the customers on it and everything they own here."""
    store = req.store
    store.find(CLOCK, id)
    for customer in store.all("customer", test_clock=id):
        for sub in store.all(subscriptions.SUBSCRIPTION, customer=customer["id"]):
            for invoice in invoices.subscription_invoices(store, sub["id"]):
                invoices.delete_invoice(store, invoice["id"])
            for item in store.all(subscriptions.ITEM, subscription=sub["id"]):
                store.delete(subscriptions.ITEM, item["id"])
            store.delete(subscriptions.SUBSCRIPTION, sub["id"])
            store.kv_delete(engine.DUE_NS, sub["id"])
        invoice_items.delete_customer_items(store, customer["id"])
        store.put({"id": customer["id"], "object": "customer", "deleted": True})  # as a deleted customer reads
    store.delete(CLOCK, id)
    return {"id": id, "object": CLOCK, "deleted": True}
