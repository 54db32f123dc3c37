"""Reading Stripe's asynchronous meter event errors. The v2 meter event stream accepts a batch
and validates its events later; an invalid event is dropped and reported in a v2 core event,
``v1.billing.meter.error_report_triggered`` (per meter) or ``v1.billing.meter.no_meter_found``,
whose ``data.reason.error_types[].sample_errors[].request.identifier`` names the event. So
delivery never learns of drops from the stream's answer: ``absorb`` reads the reports since
the last read and marks the ledger events (or coalesced batches) they name failed.

Stripe gives *sample* errors: when a report counts more errors than it samples, the rest
cannot be named; they are counted as ``unattributed`` (``reconcile`` then shows the
difference against Stripe's meter totals)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator

from ..ledger import Ledger
from ..ledger import drops as ledger_drops
from .client import Connection, stripe_errors

EVENTS_PATH = "/v2/core/events"
REPORT_TYPES = ("v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found")
LATE_REPORTS = 24 * 3600  # keep looking for reports this long after the last stream request
PAGE = 100


@dataclass(frozen=True)
class Drop:
    identifier: str  # the meter event identifier: a ledger event id or a coalesced batch id
    code: str  # Stripe's error code (meter_event_customer_not_found, timestamp_too_far_in_past...)
    message: str
    report_id: str  # the v2 event that reported it

    @property
    def reason(self) -> str:
        return f"Stripe dropped it after accepting it ({self.code}): {self.message}"


@dataclass
class DropReport:
    drops: list[Drop] = field(default_factory=list)
    unattributed: int = 0  # errors Stripe counted without a sample naming the event
    newest: str | None = None  # created time of the newest report read
    newest_ids: set[str] = field(default_factory=set)  # the reports read at that time


def _created(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_drops(conn: Connection, since: str | None = None, skip: set[str] = frozenset()) -> DropReport:
    """Stripe's meter error reports created at or after ``since`` (all it keeps, 30 days,
    without), except the report ids in ``skip`` (read before)."""
    params: dict = {"types": list(REPORT_TYPES), "limit": PAGE}
    if since:
        params["created"] = {"gte": since}
    report = DropReport()
    with stripe_errors("meter error reports"):
        for event in _events(conn, params):
            if event["id"] in skip:
                continue
            created = event["created"]
            if report.newest is None or _created(created) > _created(report.newest):
                report.newest, report.newest_ids = created, {event["id"]}
            elif created == report.newest:
                report.newest_ids.add(event["id"])
            for error_type in event["data"]["reason"]["error_types"]:
                samples = error_type.get("sample_errors") or []
                report.unattributed += max(error_type["error_count"] - len(samples), 0)
                report.drops.extend(Drop(s["request"]["identifier"], error_type["code"], s["error_message"], event["id"])
                                    for s in samples)
    return report


def _events(conn: Connection, params: dict) -> Iterator[dict]:
    """The v2 events the list names, page after page (``next_page_url``), as the JSON Stripe
    sent. Through the SDK's ``raw_request`` (its requestor, headers and retries) rather than
    ``v2.core.events.list``: the SDK's list object, given parameters, looks up an attribute the
    v2 list does not have (``object``), and the miss imports its Invoice class for a debugging
    hint, 0.05-0.1 s of CPU on every push that reads the reports."""
    response = conn.client.raw_request("get", EVENTS_PATH, **params)
    while True:
        page = json.loads(response.body)
        yield from page.get("data") or []
        following = page.get("next_page_url")
        if not following:
            return
        # the parameters again, as the SDK's own paging does: merged into the page's URL's query
        response = conn.client.raw_request("get", following, **params)


@dataclass
class Absorbed:
    dropped: list[tuple[str, str, int]] = field(default_factory=list)  # (identifier, reason, usage events)
    unattributed: int = 0

    @property
    def events(self) -> int:
        return sum(n for _, _, n in self.dropped)


def absorb(ledger: Ledger, conn: Connection) -> Absorbed:
    """Read the error reports not read yet and mark the events they name failed."""
    since, seen = ledger_drops.read_position(ledger)
    report = read_drops(conn, since, seen)
    reasons = {d.identifier: d.reason for d in report.drops}
    marked = ledger_drops.mark_dropped(ledger, reasons) if reasons else {}
    if report.newest is not None:
        ids = report.newest_ids | (seen if report.newest == since else set())
        ledger_drops.save_read_position(ledger, report.newest, ids)
    return Absorbed([(i, reasons[i], n) for i, n in marked.items() if n], report.unattributed)


def reports_may_be_due(ledger: Ledger, now: float | None = None) -> bool:
    """Whether a stream request was made recently enough for Stripe to still report drops."""
    at = ledger_drops.streamed_at(ledger)
    return at is not None and (time.time() if now is None else now) - at < LATE_REPORTS
