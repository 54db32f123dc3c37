"""Billing-period math. Period boundaries are computed from the billing cycle anchor each
time (anchor + k intervals, month ends clamped: Jan 31 -> Feb 28/29 -> Mar 31), never by
adding intervals to the previous boundary, so they never drift. Times are Unix seconds, UTC."""

from __future__ import annotations

import calendar
import time
from datetime import datetime, timedelta, timezone

_MONTHS = {"month": 1, "year": 12}


def now() -> int:
    """Real time, Unix seconds (freezegun-friendly)."""
    return int(time.time())


def to_datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def boundary(anchor: int, interval: str, k: int, interval_count: int = 1) -> int:
    """The k-th period boundary after the anchor (k = 0 is the anchor itself)."""
    a = to_datetime(anchor)
    if interval == "day":
        return int((a + timedelta(days=k * interval_count)).timestamp())
    if interval == "week":
        return int((a + timedelta(weeks=k * interval_count)).timestamp())
    if interval not in _MONTHS:
        raise ValueError(f"unknown interval {interval!r}")
    months = a.month - 1 + k * interval_count * _MONTHS[interval]
    year, month = a.year + months // 12, months % 12 + 1
    day = min(a.day, calendar.monthrange(year, month)[1])
    return int(a.replace(year=year, month=month, day=day).timestamp())


def _approx_seconds(interval: str, interval_count: int) -> float:
    days = {"day": 1, "week": 7, "month": 30.436875, "year": 365.2425}[interval]
    return days * 86400 * interval_count


def period_index(anchor: int, interval: str, at: int, interval_count: int = 1) -> int:
    """k such that boundary(k) <= at < boundary(k + 1); negative before the anchor."""
    k = int((at - anchor) // _approx_seconds(interval, interval_count))
    while boundary(anchor, interval, k, interval_count) > at:
        k -= 1
    while boundary(anchor, interval, k + 1, interval_count) <= at:
        k += 1
    return k


def period_at(anchor: int, interval: str, at: int, interval_count: int = 1) -> tuple[int, int]:
    """(start, end) of the billing period containing ``at``: start <= at < end."""
    k = period_index(anchor, interval, at, interval_count)
    return boundary(anchor, interval, k, interval_count), boundary(anchor, interval, k + 1, interval_count)
