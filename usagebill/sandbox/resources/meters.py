"""Billing meters: /v1/billing/meters, their event summaries, and ``aggregate``.

``aggregate`` is the billing engine's entry point for metered usage."""

from __future__ import annotations

import hashlib

from ..errors import invalid
from ..routing import Request, list_response, router
from ..store import Store
from ._common import reference, require
from .meter_event_log import aggregate

__all__ = ["aggregate", "active_meter_for"]

_WINDOWS = {"hour": 3600, "day": 86400}


def active_meter_for(store: Store, event_name: str) -> dict | None:
    for meter in store.all("billing.meter", event_name=event_name):
        if meter["status"] == "active":
            return meter
    return None


@router.route("POST", "/v1/billing/meters", params="billing.MeterCreateParams")
def create_meter(req: Request) -> dict:
    p = req.params
    event_name = p["event_name"]
    if len(event_name) > 100:
        raise invalid("event_name can be at most 100 characters long.", param="event_name")
    # unique among all meters of the account, inactive ones included
    if req.store.all("billing.meter", event_name=event_name):
        raise invalid(f"A meter with event_name '{event_name}' already exists. Event names must be unique "
                      "across all meters, including inactive ones.", param="event_name")
    mapping = p.get("customer_mapping") or {"event_payload_key": "stripe_customer_id", "type": "by_id"}
    meter = {
        "id": Store.new_id("mtr_test", 24),
        "object": "billing.meter",
        "created": req.now,
        "customer_mapping": {"event_payload_key": mapping["event_payload_key"], "type": mapping["type"]},
        "default_aggregation": {"formula": p["default_aggregation"]["formula"]},
        "display_name": p["display_name"],
        "event_name": event_name,
        "event_time_window": p.get("event_time_window"),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": req.now,
        "value_settings": {"event_payload_key": (p.get("value_settings") or {}).get("event_payload_key", "value")},
    }
    return req.store.insert(meter)


@router.route("GET", "/v1/billing/meters/{id}", params="billing.MeterRetrieveParams")
def retrieve_meter(req: Request, id: str) -> dict:
    return require(req, "billing.meter", id, kind="billing.meter")


@router.route("POST", "/v1/billing/meters/{id}", params="billing.MeterUpdateParams")
def update_meter(req: Request, id: str) -> dict:
    meter = require(req, "billing.meter", id, kind="billing.meter")
    if "display_name" in req.params:
        meter["display_name"] = req.params["display_name"]
        meter["updated"] = req.now
    return req.store.put(meter)


@router.route("GET", "/v1/billing/meters", params="billing.MeterListParams")
def list_meters(req: Request) -> dict:
    meters = req.store.all("billing.meter")
    if "status" in req.params:
        meters = [m for m in meters if m["status"] == req.params["status"]]
    return list_response(req, meters, "/v1/billing/meters")


@router.route("POST", "/v1/billing/meters/{id}/deactivate", params="billing.MeterDeactivateParams")
def deactivate_meter(req: Request, id: str) -> dict:
    meter = require(req, "billing.meter", id, kind="billing.meter")
    if meter["status"] == "inactive":
        raise invalid(f"The meter {id} is already inactive.")
    meter.update(status="inactive", updated=req.now, status_transitions={"deactivated_at": req.now})
    return req.store.put(meter)


@router.route("POST", "/v1/billing/meters/{id}/reactivate", params="billing.MeterReactivateParams")
def reactivate_meter(req: Request, id: str) -> dict:
    meter = require(req, "billing.meter", id, kind="billing.meter")
    if meter["status"] == "active":
        raise invalid(f"The meter {id} is already active.")
    if active_meter_for(req.store, meter["event_name"]):
        raise invalid(f"Another active meter already uses event_name '{meter['event_name']}'.")
    meter.update(status="active", updated=req.now, status_transitions={"deactivated_at": None})
    return req.store.put(meter)


def _aligned(value: int, step: int, param: str, what: str) -> None:
    if value % step:
        raise invalid(f"{param} must be aligned with {what} boundaries (a multiple of {step} seconds).", param=param)


@router.route("GET", "/v1/billing/meters/{id}/event_summaries", params="billing.MeterListEventSummariesParams")
def list_event_summaries(req: Request, id: str) -> dict:
    meter = require(req, "billing.meter", id, kind="billing.meter")
    p = req.params
    customer, start, end = p["customer"], p["start_time"], p["end_time"]
    reference(req, "customer", customer, "customer")
    window = p.get("value_grouping_window")
    step = _WINDOWS[window] if window else 60
    what = window or "minute"
    _aligned(start, step, "start_time", what)
    _aligned(end, step, "end_time", what)
    if end <= start:
        raise invalid("end_time must be after start_time.", param="end_time")
    bounds = [(start, end)] if not window else [(t, min(t + step, end)) for t in range(start, end, step)]
    summaries = []
    for lo, hi in reversed(bounds):  # newest first, as every Stripe list
        summaries.append({
            "id": "mtrusg_" + hashlib.sha1(f"{id}:{customer}:{lo}:{hi}".encode()).hexdigest()[:24],
            "object": "billing.meter_event_summary",
            "aggregated_value": aggregate(req.store, meter, customer, lo, hi, req.now),
            "end_time": hi,
            "livemode": False,
            "meter": id,
            "start_time": lo,
        })
    return list_response(req, summaries, f"/v1/billing/meters/{id}/event_summaries")
