"""Anchor-based billing periods: month ends, leap years, no drift."""

import calendar
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usagebill.sandbox.billing.periods import boundary, period_at, period_index


def ts(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


@pytest.mark.parametrize(
    "anchor, k, expected",
    [
        (ts(2024, 1, 31, 12), 1, ts(2024, 2, 29, 12)),  # leap year
        (ts(2023, 1, 31, 12), 1, ts(2023, 2, 28, 12)),
        (ts(2023, 1, 31, 12), 2, ts(2023, 3, 31, 12)),  # back to the 31st, not Mar 28
        (ts(2023, 1, 31, 12), 3, ts(2023, 4, 30, 12)),
        (ts(2023, 1, 31, 12), 12, ts(2024, 1, 31, 12)),
        (ts(2023, 1, 31, 12), -1, ts(2022, 12, 31, 12)),
        (ts(2023, 12, 15), 1, ts(2024, 1, 15)),  # year rollover
    ],
)
def test_monthly_boundaries_are_clamped_from_the_anchor(anchor, k, expected):
    assert boundary(anchor, "month", 1, k) == expected


def test_yearly_leap_day_anchor():
    anchor = ts(2024, 2, 29, 8, 30)
    assert boundary(anchor, "year", 1, 1) == ts(2025, 2, 28, 8, 30)
    assert boundary(anchor, "year", 1, 4) == ts(2028, 2, 29, 8, 30)


def test_day_week_and_interval_count():
    anchor = ts(2024, 3, 1)
    assert boundary(anchor, "day", 1, 3) == ts(2024, 3, 4)
    assert boundary(anchor, "week", 2, 1) == ts(2024, 3, 15)
    assert boundary(ts(2023, 11, 30), "month", 3, 1) == ts(2024, 2, 29)
    assert boundary(ts(2023, 11, 30), "month", 3, 2) == ts(2024, 5, 30)


def test_period_at_contains_t_and_is_half_open():
    anchor = ts(2023, 1, 31, 12)
    assert period_at(anchor, "month", 1, ts(2023, 3, 1)) == (ts(2023, 2, 28, 12), ts(2023, 3, 31, 12))
    # a boundary belongs to the period it starts
    assert period_at(anchor, "month", 1, ts(2023, 2, 28, 12)) == (ts(2023, 2, 28, 12), ts(2023, 3, 31, 12))
    assert period_at(anchor, "month", 1, ts(2023, 2, 28, 12) - 1) == (ts(2023, 1, 31, 12), ts(2023, 2, 28, 12))


def test_unknown_interval_is_refused():
    with pytest.raises(ValueError):
        boundary(0, "fortnight", 1, 1)


anchors = st.integers(min_value=ts(1990, 1, 1), max_value=ts(2090, 1, 1))


@settings(max_examples=300, deadline=None)
@given(anchor=anchors, k=st.integers(min_value=0, max_value=240), count=st.integers(1, 12))
def test_kth_month_boundary_is_anchor_plus_k_intervals_clamped(anchor, k, count):
    a = utc(anchor)
    b = utc(boundary(anchor, "month", count, k))
    months = a.month - 1 + k * count
    assert (b.year, b.month) == (a.year + months // 12, months % 12 + 1)
    assert b.day == min(a.day, calendar.monthrange(b.year, b.month)[1])
    assert (b.hour, b.minute, b.second) == (a.hour, a.minute, a.second)


@settings(max_examples=300, deadline=None)
@given(anchor=anchors, k=st.integers(min_value=-24, max_value=240),
       interval=st.sampled_from(["day", "week", "month", "year"]), count=st.integers(1, 3))
def test_period_index_inverts_boundary(anchor, k, interval, count):
    start = boundary(anchor, interval, count, k)
    end = boundary(anchor, interval, count, k + 1)
    assert start < end
    assert period_index(anchor, interval, count, start) == k
    assert period_index(anchor, interval, count, end - 1) == k
    assert period_at(anchor, interval, count, (start + end) // 2) == (start, end)


def test_cumulative_adding_would_drift_but_boundaries_do_not():
    anchor = ts(2023, 1, 31)
    drifting = anchor
    for k in range(1, 13):
        d = utc(drifting)
        month = d.month % 12 + 1
        year = d.year + (d.month == 12)
        drifting = int(d.replace(year=year, month=month, day=min(d.day, calendar.monthrange(year, month)[1])).timestamp())
        assert utc(boundary(anchor, "month", 1, k)).day == min(31, calendar.monthrange(utc(drifting).year, utc(drifting).month)[1])
    assert utc(drifting).day == 28  # what cumulative adds end with
    assert utc(boundary(anchor, "month", 1, 12)).day == 31
