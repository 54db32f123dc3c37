"""v2 metering: meter event sessions, the high-throughput meter event stream, and the v2
single-event and adjustment endpoints. v2 speaks JSON and RFC 3339 timestamps."""

from __future__ import annotations

import secrets

from .. import auth
from ..errors import StripeError
from ..routing import Request, router
from ..store import Store
from . import meter_errors
from . import meter_event_log as log
from .meter_events import cancel_event, duplicate_identifier, iso, parse_iso, prepare_events, split_events

MAX_STREAM_EVENTS = 100


def _with_int_timestamps(events: list[dict], prefix: str) -> list[dict]:
    out = []
    for i, event in enumerate(events):
        event = dict(event)
        if event.get("timestamp") is not None:
            param = f"{prefix}[{i}][timestamp]" if prefix else "timestamp"
            event["timestamp"] = parse_iso(event["timestamp"], param)
        out.append(event)
    return out


@router.route("POST", "/v2/billing/meter_event_session", params="v2.billing.MeterEventSessionCreateParams")
def create_meter_event_session(req: Request) -> dict:
    token = "mes_token_" + secrets.token_urlsafe(32)
    expires_at = req.now + auth.SESSION_TTL
    auth.save_session(req.store, token, expires_at)
    return {
        "id": Store.new_id("mes", 24),
        "object": "v2.billing.meter_event_session",
        "authentication_token": token,
        "created": iso(req.now),
        "expires_at": iso(expires_at),
        "livemode": False,
    }


@router.route("POST", "/v2/billing/meter_event_stream", params="v2.billing.MeterEventStreamCreateParams")
def create_meter_event_stream(req: Request):
    events = req.params["events"]
    if not events:
        raise StripeError(400, "events must contain at least one event.", param="events")
    if len(events) > MAX_STREAM_EVENTS:
        raise StripeError(400, f"events can contain at most {MAX_STREAM_EVENTS} events per request.", param="events")
    # Stripe validates the stream's events asynchronously: the batch is accepted, invalid
    # events are dropped and reported as meter error reports (v2 core events).
    rows, errors = split_events(req, _with_int_timestamps(events, "events"), "events")
    # A re-sent batch is normal after a lost response: events whose identifier Stripe already
    # has are dropped, not refused, so a retry never fails and never counts twice.
    taken = log.taken_identifiers(req.store, [r["identifier"] for r in rows], req.now)
    log.insert_events(req.store, [r for r in rows if r["identifier"] not in taken], received=req.now)
    if errors:
        meter_errors.report(req.store, errors, req.now)
    return 202, {}


@router.route("POST", "/v2/billing/meter_events", params="v2.billing.MeterEventCreateParams")
def create_v2_meter_event(req: Request) -> dict:
    (row,) = prepare_events(req, _with_int_timestamps([req.params], ""))
    if log.taken_identifiers(req.store, [row["identifier"]], req.now):
        raise duplicate_identifier(row["identifier"])
    log.insert_events(req.store, [row], received=req.now)
    return {
        "object": "v2.billing.meter_event",
        "created": iso(req.now),
        "event_name": row["event_name"],
        "identifier": row["identifier"],
        "livemode": False,
        "payload": row["payload"],
        "timestamp": iso(row["timestamp"]),
    }


@router.route("POST", "/v2/billing/meter_event_adjustments", params="v2.billing.MeterEventAdjustmentCreateParams")
def create_v2_meter_event_adjustment(req: Request) -> dict:
    p = req.params
    identifier = p["cancel"]["identifier"]
    cancel_event(req, p["event_name"], identifier, "cancel[identifier]")
    return {
        "id": Store.new_id("mtradj", 24),
        "object": "v2.billing.meter_event_adjustment",
        "cancel": {"identifier": identifier},
        "created": iso(req.now),
        "event_name": p["event_name"],
        "livemode": False,
        "status": "complete",
        "type": "cancel",
    }
