"""Meter events (v1): /v1/billing/meter_events and /v1/billing/meter_event_adjustments.

``prepare_events`` is the validation every ingestion path shares (v1, v2 single, v2 stream):
an active meter for the event name, an existing customer under the meter's mapping key, a
whole-number value, a timestamp inside Stripe's window of the customer's own clock, and an
identifier not used in the last 24 hours."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from ..clock import customer_now
from ..errors import StripeError, invalid
from ..routing import Request, router
from . import meter_event_log as log
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


def _value(meter: dict, payload: dict, param: str) -> int:
    key = meter["value_settings"]["event_payload_key"]
    if key not in payload:
        if meter["default_aggregation"]["formula"] == "count":
            return 1  # a count meter counts events; their value is not read
        raise invalid(f"Missing required payload key '{key}' (the meter's value_settings.event_payload_key).",
                      param=f"{param}[{key}]")
    raw = payload[key]
    text = str(raw).strip() if not isinstance(raw, bool) else ""
    if isinstance(raw, float) or not _INTEGER.match(text):
        raise invalid(f"The value of payload[{key}] must be a whole number, not {raw!r}.", param=f"{param}[{key}]")
    return int(text)


def prepare_events(req: Request, events: list[dict], *, param_prefix: str = "") -> list[dict]:
    """Validate ``events`` (dicts with event_name, payload, optional identifier and int
    timestamp) and return rows for ``meter_event_log.insert_events``, plus their ``meter``."""
    store, rows, seen = req.store, [], set()
    meters: dict[str, dict | None] = {}
    for i, event in enumerate(events):
        at = (lambda name: f"{param_prefix}[{i}][{name}]") if param_prefix else (lambda name: name)
        name = event["event_name"]
        if name not in meters:
            meters[name] = active_meter_for(store, name)
        meter = meters[name]
        if meter is None:
            raise invalid(f"No active meter was found for event_name '{name}'.", param=at("event_name"))
        payload = {str(k): str(v) if not isinstance(v, str) else v for k, v in (event.get("payload") or {}).items()}
        customer_key = meter["customer_mapping"]["event_payload_key"]
        customer_id = payload.get(customer_key)
        if not customer_id:
            raise invalid(f"Missing required payload key '{customer_key}' (the meter's customer_mapping key).",
                          param=f"{at('payload')}[{customer_key}]")
        customer = store.get("customer", customer_id)
        if customer is None or customer.get("deleted"):
            raise StripeError(400, f"No such customer: '{customer_id}'", code="resource_missing",
                              param=f"{at('payload')}[{customer_key}]")
        value = _value(meter, payload, at("payload"))
        now = customer_now(store, customer_id, req.now)
        timestamp = event.get("timestamp")
        if timestamp is None:
            timestamp = now
        if timestamp < now - PAST_WINDOW or timestamp > now + FUTURE_WINDOW:
            raise invalid(
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future "
                f"(the customer's time is {now}, the event's {timestamp}).",
                param=at("timestamp"),
            )
        identifier = event.get("identifier") or _generated_identifier()
        if len(identifier) > MAX_IDENTIFIER:
            raise invalid(f"identifier can be at most {MAX_IDENTIFIER} characters long.", param=at("identifier"))
        if identifier in seen:
            raise duplicate_identifier(identifier, at("identifier"))
        seen.add(identifier)
        rows.append({"identifier": identifier, "event_name": name, "customer": customer_id, "value": value,
                     "timestamp": timestamp, "payload": payload, "meter": meter})
    return rows


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
