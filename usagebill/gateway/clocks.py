"""Stripe test clocks: create, advance (and wait until ready), show. Refused in live mode.
The ledger's "now" for customers on a clock follows the clock."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable

from ..billing import Billing
from ..errors import UsagebillError, ValidationError
from ..periods import boundary
from ..ledger import clocks as ledger_clocks
from ..timeparse import iso, parse_time
from .accounts import refresh_periods
from .client import Connection, stripe_errors
from .invoices import mirror_period_invoices

_UNITS = {
    "y": "year", "year": "year", "years": "year",
    "mo": "month", "month": "month", "months": "month",
    "w": "week", "week": "week", "weeks": "week",
    "d": "day", "day": "day", "days": "day",
    "h": "hour", "hour": "hour", "hours": "hour",
    "m": "minute", "min": "minute", "minute": "minute", "minutes": "minute",
    "s": "second", "sec": "second", "second": "second", "seconds": "second",
}
_SECONDS = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}
_PART = re.compile(r"(\d+)\s*([a-z]+)")


@dataclass(frozen=True)
class Clock:
    id: str
    name: str | None
    frozen_time: int
    status: str
    customers: list[str]  # ledger customers on it


def parse_target(spec: str, frozen_time: int) -> int:
    """``+1month2h`` (relative to the clock: months and years by the calendar, month ends
    clamped) or an absolute ISO 8601 / Unix time."""
    spec = spec.strip()
    if not spec.startswith("+"):
        return parse_time(spec, what="--to")
    body = spec[1:].replace(" ", "").lower()
    parts = _PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValidationError(f"--to {spec!r}: write a duration like +1month, +1month2h, +3d, +90m (or a time)")
    target = frozen_time
    for number, unit in parts:
        name = _UNITS.get(unit)
        if name is None:
            raise ValidationError(f"--to {spec!r}: unknown unit {unit!r} (y, mo, w, d, h, m, s)")
        n = int(number)
        if name in ("year", "month"):
            target = boundary(target, name, n)
        elif name == "week":
            target += n * 7 * 86400
        else:
            target += n * _SECONDS[name]
    return target


def _refuse_live(conn: Connection) -> None:
    if conn.is_live:
        raise UsagebillError("test clocks exist only in test mode and the sandbox, not in live mode")


def _customers_on(billing: Billing, clock_id: str) -> list[str]:
    return [c.user_id for c in billing.customers.list() if c.test_clock == clock_id]


def create_clock(billing: Billing, conn: Connection, *, at=None, name: str | None = None) -> Clock:
    _refuse_live(conn)
    frozen = billing.now() if at is None else parse_time(at, what="--at")
    params: dict = {"frozen_time": frozen}
    if name:
        params["name"] = name
    with stripe_errors("create test clock"):
        clock = conn.client.v1.test_helpers.test_clocks.create(params=params)
    billing.customers.set_clock_time(clock.id, clock.frozen_time, clock.name)
    return Clock(clock.id, clock.name, clock.frozen_time, clock.status, [])


def show_clock(billing: Billing, conn: Connection, clock_id: str) -> Clock:
    _refuse_live(conn)
    with stripe_errors(f"test clock {clock_id}", typed_ids=(clock_id,)):
        clock = conn.client.v1.test_helpers.test_clocks.retrieve(clock_id)
    billing.customers.set_clock_time(clock.id, clock.frozen_time, clock.name)
    return Clock(clock.id, clock.name, clock.frozen_time, clock.status, _customers_on(billing, clock.id))


def advance_clock(
    billing: Billing,
    conn: Connection,
    clock_id: str,
    to: str,
    *,
    timeout: float = 300.0,
    on_wait: Callable[[str], None] | None = None,
) -> Clock:
    """Advance the clock and wait until Stripe has finished (status ``ready``); then refresh
    the ledger's view of the clock and of its customers' periods.

    Crash-safe and idempotent: the absolute target is recorded in the ledger before Stripe is
    asked, so a re-run after a failure or a kill finishes that advance (a relative ``+1month``
    is not applied twice), and a target equal to the clock's time only refreshes the ledger."""
    _refuse_live(conn)
    clocks = conn.client.v1.test_helpers.test_clocks
    spec = to.strip()
    with stripe_errors(f"advance test clock {clock_id}", typed_ids=(clock_id,)):
        clock = _wait_ready(clocks, clocks.retrieve(clock_id), timeout, on_wait)
        unfinished = ledger_clocks.unfinished_advance(billing.ledger, clock_id)
        if unfinished is not None:
            # an earlier run recorded this advance and stopped before the ledger caught up
            clock = _move(billing, clocks, clock, unfinished["target"], timeout, on_wait)
            users = _settle(billing, conn, clock)
            if unfinished["spec"] == spec:
                return Clock(clock.id, clock.name, clock.frozen_time, clock.status, users)
        target = parse_target(spec, clock.frozen_time)
        if target < clock.frozen_time:
            raise ValidationError(
                f"--to {iso(target)} is before the clock's time ({iso(clock.frozen_time)}); clocks only move forward"
            )
        if target > clock.frozen_time:
            ledger_clocks.start_advance(billing.ledger, clock_id, clock.frozen_time, target, spec, billing.now())
            clock = _move(billing, clocks, clock, target, timeout, on_wait)
    users = _settle(billing, conn, clock)
    return Clock(clock.id, clock.name, clock.frozen_time, clock.status, users)


def _move(billing: Billing, clocks, clock, target: int, timeout: float, on_wait):
    """Ask Stripe to move the clock to ``target`` unless it is there (or past it) already."""
    import stripe

    if clock.frozen_time < target:
        try:
            clock = clocks.advance(clock.id, params={"frozen_time": target})
        except stripe.InvalidRequestError:
            # refused (400): the clock did not move, so there is no advance left to finish;
            # a network error keeps the record: Stripe may have moved it
            ledger_clocks.finish_advance(billing.ledger, clock.id)
            raise
    return _wait_ready(clocks, clock, timeout, on_wait)


def _wait_ready(clocks, clock, timeout: float, on_wait):
    deadline = time.monotonic() + timeout
    delay = 0.05
    while clock.status != "ready":
        if clock.status == "internal_failure":
            raise UsagebillError(f"Stripe failed to advance test clock {clock.id} (internal_failure)")
        if time.monotonic() > deadline:
            raise UsagebillError(
                f"test clock {clock.id} still {clock.status} after {timeout:.0f}s; "
                f"check it with: usagebill testclock show {clock.id}"
            )
        if on_wait:
            on_wait(clock.status)
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
        clock = clocks.retrieve(clock.id)
    return clock


def _settle(billing: Billing, conn: Connection, clock) -> list[str]:
    """The ledger catches up with a clock that is ready: its time, its customers' periods;
    then the advance in flight, if any, is done."""
    billing.customers.set_clock_time(clock.id, clock.frozen_time, clock.name)
    users = _customers_on(billing, clock.id)
    refresh_periods(billing, conn, users)
    for user_id in users:  # which periods Stripe has invoiced for good now (usagebill.closing)
        sub = billing.subscriptions.get(user_id)
        if sub is not None:
            mirror_period_invoices(billing, conn, sub)
    ledger_clocks.finish_advance(billing.ledger, clock.id)
    return users


def refresh_stale_clock(billing: Billing, conn: Connection, clock_id: str, *, timeout: float = 300.0) -> None:
    """Before a command reads the "now" of a customer whose clock has an unfinished advance:
    take the clock's time from Stripe (usage must not be stamped in a period Stripe has
    already invoiced). The advance itself is finished by re-running ``testclock advance``."""
    clocks = conn.client.v1.test_helpers.test_clocks
    with stripe_errors(f"test clock {clock_id}", typed_ids=(clock_id,)):
        clock = _wait_ready(clocks, clocks.retrieve(clock_id), timeout, None)
    unfinished = ledger_clocks.unfinished_advance(billing.ledger, clock_id)
    if unfinished is not None and clock.frozen_time == unfinished["from_time"]:
        # Stripe never moved it: nothing is stale, and a re-run resolves the same target
        ledger_clocks.finish_advance(billing.ledger, clock_id)
        billing.customers.set_clock_time(clock.id, clock.frozen_time, clock.name)
        return
    _settle(billing, conn, clock)
