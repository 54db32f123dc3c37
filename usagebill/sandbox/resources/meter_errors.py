"""Asynchronous meter event errors, reported as Stripe reports them: the v2 meter event stream
accepts a batch, drops its invalid events, and publishes a ``v2.core.event`` per meter
(``v1.billing.meter.error_report_triggered``, related to the meter) or, for events naming no
meter, ``v1.billing.meter.no_meter_found``. Their ``data.reason`` counts the errors by code,
with sample errors naming each dropped event's ``identifier``. Listed by ``GET /v2/core/events``
(v2_events.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from ..store import Store

EVENT = "v2.core.event"
ERROR_REPORT = "v1.billing.meter.error_report_triggered"
NO_METER_FOUND = "v1.billing.meter.no_meter_found"
MAX_SAMPLES = 100  # per error code; a stream request holds at most 100 events


@dataclass
class EventError:
    """Why one meter event is invalid: Stripe's async error ``code`` (error reports) and the
    synchronous refusal the v1 endpoint and the v2 single-event endpoint give instead."""

    code: str
    message: str
    param: str
    identifier: str
    meter: dict | None = None
    resource_missing: bool = False

    def refusal(self):
        from ..errors import StripeError

        return StripeError(400, self.message, param=self.param,
                           code="resource_missing" if self.resource_missing else None)


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def report(store: Store, errors: list[EventError], now: int) -> list[dict]:
    """One event per meter (and one for events without a meter) over ``errors``."""
    by_meter: dict[str | None, list[EventError]] = {}
    for error in errors:
        by_meter.setdefault(error.meter["id"] if error.meter else None, []).append(error)
    return [store.insert(_event(meter_id, group, now)) for meter_id, group in by_meter.items()]


def _event(meter_id: str | None, errors: list[EventError], now: int) -> dict:
    codes: dict[str, list[EventError]] = {}
    for error in errors:
        codes.setdefault(error.code, []).append(error)
    n = len(errors)
    event = {
        "id": "evt_test_" + secrets.token_hex(27),
        "object": EVENT,
        "context": None,
        "created": iso(now),
        "data": {
            "developer_message_summary": f"There {'is' if n == 1 else 'are'} {n} invalid event{'' if n == 1 else 's'}",
            "reason": {
                "error_count": n,
                "error_types": [
                    {"code": code, "error_count": len(group),
                     "sample_errors": [{"error_message": e.message, "request": {"identifier": e.identifier}}
                                       for e in group[:MAX_SAMPLES]]}
                    for code, group in codes.items()
                ],
            },
            "validation_end": iso(now),
            "validation_start": iso(now),
        },
        "livemode": False,
        "reason": None,
        "type": ERROR_REPORT if meter_id else NO_METER_FOUND,
    }
    if meter_id:
        event["related_object"] = {"id": meter_id, "type": "billing.meter", "url": f"/v1/billing/meters/{meter_id}"}
    return event
