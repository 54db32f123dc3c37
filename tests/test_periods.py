from datetime import datetime, timezone

from hypothesis import given, strategies as st

from usagebill.periods import boundary, period_at


def ts(*args):
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def test_month_ends_are_clamped_from_the_anchor_not_cumulatively():
    a = ts(2025, 1, 31, 12)
    assert [boundary(a, "month", k) for k in range(4)] == [
        ts(2025, 1, 31, 12), ts(2025, 2, 28, 12), ts(2025, 3, 31, 12), ts(2025, 4, 30, 12)
    ]


def test_leap_years():
    a = ts(2024, 1, 31)
    assert boundary(a, "month", 1) == ts(2024, 2, 29)
    y = ts(2024, 2, 29)
    assert boundary(y, "year", 1) == ts(2025, 2, 28)
    assert boundary(y, "year", 4) == ts(2028, 2, 29)


def test_period_at_contains_the_time():
    a = ts(2025, 1, 31)
    assert period_at(a, "month", ts(2025, 3, 15)) == (ts(2025, 2, 28), ts(2025, 3, 31))
    assert period_at(a, "month", ts(2025, 3, 31)) == (ts(2025, 3, 31), ts(2025, 4, 30))
    assert period_at(a, "week", ts(2025, 2, 8)) == (ts(2025, 2, 7), ts(2025, 2, 14))


anchors = st.integers(min_value=ts(2000, 1, 1), max_value=ts(2090, 1, 1))


@given(anchors, st.sampled_from(["week", "month", "year"]), st.integers(min_value=0, max_value=10**9))
def test_period_at_always_contains_and_is_a_boundary_pair(anchor, interval, offset):
    at = anchor + offset
    start, end = period_at(anchor, interval, at)
    assert start <= at < end
    # the bounds are anchor-based boundaries: never drift, whatever the path
    from usagebill.periods import period_index

    k = period_index(anchor, interval, at)
    assert (start, end) == (boundary(anchor, interval, k), boundary(anchor, interval, k + 1))


@given(anchors, st.integers(min_value=0, max_value=600))
def test_monthly_boundary_keeps_the_anchor_day_when_it_exists(anchor, k):
    a = datetime.fromtimestamp(anchor, tz=timezone.utc)
    b = datetime.fromtimestamp(boundary(anchor, "month", k), tz=timezone.utc)
    assert (b.hour, b.minute, b.second) == (a.hour, a.minute, a.second)
    assert b.day == a.day or (a.day > 28 and b.day < a.day and (b + __import__("datetime").timedelta(days=1)).day == 1)
