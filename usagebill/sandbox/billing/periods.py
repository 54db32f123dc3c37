"""Billing-period arithmetic, as Stripe does it: every period boundary is computed from the
billing cycle anchor (``anchor + k intervals``), never by adding an interval to the previous
boundary, so a Jan 31 anchor gives Feb 28 (29 in leap years), then Mar 31 - not Mar 28.

All times are Unix seconds, read in UTC (Stripe anchors are instants; UTC has no DST jumps)."""

from __future__ import annotations

import calendar
from datetime import datetime, timezone

INTERVALS = ("day", "week", "month", "year")


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _add_months(anchor: datetime, months: int) -> datetime:
    """Same day of month and time of day as the anchor, the day clamped to the month's length."""
    total = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def boundary(anchor: int, interval: str, interval_count: int, k: int) -> int:
    """The k-th period boundary: ``anchor`` plus ``k * interval_count`` intervals (k may be < 0)."""
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}")
    if interval_count < 1:
        raise ValueError("interval_count must be >= 1")
    n = k * interval_count
    if interval == "day":
        return anchor + n * 86400
    if interval == "week":
        return anchor + n * 7 * 86400
    months = n if interval == "month" else 12 * n
    return int(_add_months(_utc(anchor), months).timestamp())


def period_index(anchor: int, interval: str, interval_count: int, t: int) -> int:
    """The k such that ``boundary(k) <= t < boundary(k + 1)``."""
    if interval in ("day", "week"):
        length = interval_count * (86400 if interval == "day" else 7 * 86400)
        return (t - anchor) // length
    # months: estimate from the calendar, then correct for clamping and time of day
    a, b = _utc(anchor), _utc(t)
    months = (b.year - a.year) * 12 + (b.month - a.month)
    per = interval_count * (1 if interval == "month" else 12)
    k = months // per
    while boundary(anchor, interval, interval_count, k) > t:
        k -= 1
    while boundary(anchor, interval, interval_count, k + 1) <= t:
        k += 1
    return k


def period_at(anchor: int, interval: str, interval_count: int, t: int) -> tuple[int, int]:
    """(start, end) of the period containing ``t``: start <= t < end."""
    k = period_index(anchor, interval, interval_count, t)
    return boundary(anchor, interval, interval_count, k), boundary(anchor, interval, interval_count, k + 1)


def approx_seconds(interval: str, interval_count: int) -> int:
    """A period's nominal length, to compare intervals (the shortest one limits clock advances)."""
    unit = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}[interval]
    return unit * interval_count


def add_intervals(t: int, interval: str, interval_count: int, n: int) -> int:
    """``t`` plus n intervals, calendar-aware (used for the test-clock advance limit)."""
    return boundary(t, interval, interval_count, n)

