"""Meter events (v1): /v1/billing/meter_events and /v1/billing/meter_event_adjustments.

``check_event`` is the validation every ingestion path shares (v1, v2 single, v2 stream):
an active meter for the event name, an existing customer under the meter's mapping key, a
whole-number value, a timestamp inside Stripe's window of the customer's own clock. v1 and
the v2 single-event endpoint refuse an invalid event at once (``prepare_events``); the v2
stream accepts the batch and drops invalid events later, reporting them as Stripe does
(``split_events``, meter_errors.py). Identifiers must not repeat within 24 hours."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from ..clock import customer_now
from ..errors import StripeError, invalid
from ..routing import Request, router
from . import meter_event_log as log
from .meter_errors import EventError
from .meters import active_meter_for

PAST_WINDOW = 35 * 86400
FUTURE_WINDOW = 5 * 60
MAX_IDENTIFIER = 100
_INTEGER = re.compile(r"^-?\d+$")


def duplicate_identifier(identifier: str, param: str = "identifier") -> StripeError:
    return StripeError(
        400,
        f"An event already exists with identifier {identifier}. Identifiers must be unique within a rolling "
        "24 hour period.",
        param=param,
    )


def _value(meter: dict, payload: dict, param: str, identifier: str) -> int | EventError:
    key = meter["value_settings"]["event_payload_key"]
    if key not in payload:
        if meter["default_aggregation"]["formula"] == "count":
            return 1  # a count meter counts events; their value is not read
        return EventError("meter_event_invalid_value",
                          f"Missing required payload key '{key}' (the meter's value_settings.event_payload_key).",
                          f"{param}[{key}]", identifier, meter)
    raw = payload[key]
    text = str(raw).strip() if not isinstance(raw, bool) else ""
    if isinstance(raw, float) or not _INTEGER.match(text):
        return EventError("meter_event_invalid_value", f"The value of payload[{key}] must be a whole number, not {raw!r}.",
                          f"{param}[{key}]", identifier, meter)
    return int(text)


def check_event(req: Request, event: dict, at, meters: dict) -> dict | EventError:
    """One event (event_name, payload, optional identifier and int timestamp) as a row for
    ``meter_event_log.insert_events`` (with its ``meter``), or why it is invalid. ``at(name)``
    is the parameter path of one of its fields; ``meters`` caches meters by event name."""
    store = req.store
    identifier = event.get("identifier") or _generated_identifier()
    if len(identifier) > MAX_IDENTIFIER:
        raise invalid(f"identifier can be at most {MAX_IDENTIFIER} characters long.", param=at("identifier"))
    name = event["event_name"]
    if name not in meters:
        meters[name] = active_meter_for(store, name)
    meter = meters[name]
    if meter is None:
        archived = store.all("billing.meter", event_name=name)
        return EventError("archived_meter" if archived else "no_meter",
                          f"No active meter was found for event_name '{name}'.", at("event_name"), identifier,
                          archived[0] if archived else None)
    payload = {str(k): str(v) if not isinstance(v, str) else v for k, v in (event.get("payload") or {}).items()}
    customer_key = meter["customer_mapping"]["event_payload_key"]
    customer_id = payload.get(customer_key)
    if not customer_id:
        return EventError("meter_event_no_customer_defined",
                          f"Customer mapping key {customer_key} not found in payload.",
                          f"{at('payload')}[{customer_key}]", identifier, meter)
    customer = store.get("customer", customer_id)
    if customer is None or customer.get("deleted"):
        return EventError("meter_event_customer_not_found", f"No such customer: '{customer_id}'",
                          f"{at('payload')}[{customer_key}]", identifier, meter, resource_missing=True)
    value = _value(meter, payload, at("payload"), identifier)
    if isinstance(value, EventError):
        return value
    now = customer_now(store, customer_id, req.now)
    timestamp = event.get("timestamp")
    if timestamp is None:
        timestamp = now
    if timestamp < now - PAST_WINDOW or timestamp > now + FUTURE_WINDOW:
        return EventError(
            "timestamp_too_far_in_past" if timestamp < now else "timestamp_in_future",
            "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future "
            f"(the customer's time is {now}, the event's {timestamp}).", at("timestamp"), identifier, meter)
    return {"identifier": identifier, "event_name": name, "customer": customer_id, "value": value,
            "timestamp": timestamp, "payload": payload, "meter": meter}


def _at(param_prefix: str, i: int):
    return (lambda name: f"{param_prefix}[{i}][{name}]") if param_prefix else (lambda name: name)


def prepare_events(req: Request, events: list[dict], *, param_prefix: str = "") -> list[dict]:
    """Validate ``events`` synchronously (the v1 and v2 single-event endpoints): the first
    invalid event is refused with a 400."""
    rows, seen, meters = [], set(), {}
    for i, event in enumerate(events):
        at = _at(param_prefix, i)
        row = check_event(req, event, at, meters)
        if isinstance(row, EventError):
            raise row.refusal()
        if row["identifier"] in seen:
            raise duplicate_identifier(row["identifier"], at("identifier"))
        seen.add(row["identifier"])
        rows.append(row)
    return rows


def split_events(req: Request, events: list[dict], param_prefix: str) -> tuple[list[dict], list[EventError]]:
    """The stream's asynchronous validation: the valid rows (an identifier repeated in the batch
    kept once) and the errors of the events to drop."""
    rows, errors, seen, meters = [], [], set(), {}
    for i, event in enumerate(events):
        row = check_event(req, event, _at(param_prefix, i), meters)
        if isinstance(row, EventError):
            errors.append(row)
        elif row["identifier"] not in seen:
            seen.add(row["identifier"])
            rows.append(row)
    return rows, errors


def _generated_identifier() -> str:
    return "mev_" + secrets.token_hex(12)


def iso(ts: int) -> str:
    """v2 timestamps: RFC 3339 with milliseconds, as Stripe writes them."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_iso(text: str, param: str) -> int:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"Invalid timestamp: {text!r} is not an RFC 3339 date-time.", param=param) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def cancel_event(req: Request, event_name: str, identifier: str | None, param: str) -> None:
    if not identifier:
        raise StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)
    found = log.find_recent(req.store, identifier, req.now)
    if found is None or found["event_name"] != event_name:
        raise invalid(
            f"No meter event with identifier {identifier} for event_name '{event_name}' was received in the "
            "last 24 hours; only those can be cancelled.",
            param=param,
        )
    if found["cancelled_at"] is None:
        log.cancel(req.store, found["seq"], req.now)


@router.route("POST", "/v1/billing/meter_events", params="billing.MeterEventCreateParams")
def create_meter_event(req: Request) -> dict:
    (row,) = prepare_events(req, [req.params])
    if log.taken_identifiers(req.store, [row["identifier"]], req.now):
        raise duplicate_identifier(row["identifier"])
    log.insert_events(req.store, [row], received=req.now)
    return {
        "object": "billing.meter_event",
        "created": req.now,
        "event_name": row["event_name"],
        "identifier": row["identifier"],
        "livemode": False,
        "payload": row["payload"],
        "timestamp": row["timestamp"],
    }


@router.route("POST", "/v1/billing/meter_event_adjustments", params="billing.MeterEventAdjustmentCreateParams")
def create_meter_event_adjustment(req: Request) -> dict:
    p = req.params
    identifier = (p.get("cancel") or {}).get("identifier")
    cancel_event(req, p["event_name"], identifier, "cancel[identifier]")
    return {
        "object": "billing.meter_event_adjustment",
        "cancel": {"identifier": identifier},
        "event_name": p["event_name"],
        "livemode": False,
        "status": "complete",
        "type": "cancel",
    }
