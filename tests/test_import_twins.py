"""The importer's column twins (rules.amounts_twin, times_twin, keys_twin) agree with the rules
they stand in for: whatever a twin vouches for, the rule accepts with the same result; what a
twin does not vouch for goes to the rule itself (tests/test_import_equals_record.py checks the
whole row against ``record``)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usagebill import UsagebillError
from usagebill.rules import MAX_AMOUNT, amounts_twin, check_amount, check_key, keys_twin, times_twin
from usagebill.timeparse import MAX_TIME, parse_time

HOSTILE = [
    0, -1, 1, 2**53, 2**53 + 1, 2**63, -(2**63), 1e30, 2.0, 0.5, True, False, None, [], {}, float("nan"),
    "", " ", "0", "00", "-1", "+5", "1", "007", " 7", "7 ", "\t7", "7\n", "2.0", "2.5", "1e3", "1e30", "1_000", "0x10",
    "\u0663", "\u0661\u0662", "\uff17", "\u00b2", "\u2167", "\U0001d7d9", str(2**53), str(2**53 + 1), str(2**63),
    "9" * 16, "9" * 17, "1" * 40, "1" * 41, "1" * 5000, "00000000000000007", "NaN", "inf", "１２３",
    # times: the shapes the time twin takes, and their near misses
    "2026-01-15T10:00:00Z", "2026-01-15T10:00:00z", "2026-01-15T10:00:00", "2026-01-15 10:00:00Z",
    "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-15T24:00:00Z", "2026-01-15T23:59:60Z",
    "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "2026-W03-1T10:00:00Z", "2026-01-15T10:00:00+00:00", "2026-01-15T10:00:00.5Z",
    "２０２６-01-15T10:00:00Z", "2026-01-15T10:00:00Z ", " 2026-01-15T10:00:00Z", "2026-01-15",
    "1767225600", "999999999999", "9999999999999", str(MAX_TIME), str(MAX_TIME + 1), "-5", "1772323200.5",
    MAX_TIME, MAX_TIME + 1, 1767225600,
    # ids
    "k1", "x" * 255, "x" * 256, "\u00a0", "\u2003", "\u200b", "名前", "a,b", "'=cmd'",
]


def rule_result(rule, value):
    try:
        return ("ok", rule(value))
    except UsagebillError:
        return ("refused",)
    except TypeError:
        return ("refused",)


def time_rule(value):
    return parse_time(value, what="timestamp")


def agrees(twin, rule, values) -> None:
    """A column's answer is None (the importer then asks about each value on its own: a mix
    of kinds or of forms is answered None as a whole) or exactly the rule's result for each
    value; a value alone is answered None or the rule's result."""
    for v in values:
        one = twin([v])
        if one is not None:
            assert rule_result(rule, v) == ("ok", one[0]), (v, one)
    column = twin(values)
    if column is not None:
        assert [("ok", x) for x in column] == [rule_result(rule, v) for v in values], values


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_the_amounts_twin_vouches_only_for_what_check_amount_accepts(value):
    agrees(amounts_twin, check_amount, [value])


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_the_times_twin_vouches_only_for_what_parse_time_accepts(value):
    agrees(times_twin, time_rule, [value])


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_the_keys_twin_vouches_only_for_what_check_key_returns_unchanged(value):
    if keys_twin([value]):
        assert rule_result(check_key, value) == ("ok", value)


def test_what_the_twins_take_in_bulk():
    assert amounts_twin(["1", "007", str(MAX_AMOUNT)]) == [1, 7, MAX_AMOUNT]
    assert amounts_twin([5, 7]) == [5, 7]
    assert amounts_twin(["1", 2]) is None  # a mix of kinds: each value on its own
    assert amounts_twin(["1", "0"]) is None and amounts_twin(["1", ""]) is None and amounts_twin([1, True]) is None
    assert times_twin(["2026-01-15T10:00:00Z", "1970-01-01T00:00:00Z"]) == [1768471200, 0]
    assert times_twin(["1768471200", "0"]) == [1768471200, 0]
    assert times_twin(["2026-01-15T10:00:00Z", "2026-02-30T10:00:00Z"]) is None
    assert keys_twin(["a", "b" * 255]) and not keys_twin(["a", ""]) and not keys_twin(["a", "  "])
    assert amounts_twin([]) == [] and times_twin([]) == [] and keys_twin([])


digits = st.text(alphabet="0123456789", min_size=0, max_size=20)
iso_like = st.builds(
    "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format,
    st.integers(0, 9999), st.integers(0, 19), st.integers(0, 39), st.integers(0, 29), st.integers(0, 69),
    st.integers(0, 69),
)
values = (
    digits | iso_like | st.sampled_from(HOSTILE) | st.integers(-(2**64), 2**64)
    | st.text(alphabet="0123456789 .-+eE_:TZz\u0661\uff11", max_size=22) | st.text(max_size=6)
)


@settings(max_examples=500, deadline=None)
@given(st.lists(values, max_size=6))
def test_the_twins_agree_with_their_rules_on_any_column(column):
    agrees(amounts_twin, check_amount, column)
    agrees(times_twin, time_rule, column)
    if keys_twin(column):
        assert all(rule_result(check_key, v) == ("ok", v) for v in column)


@settings(max_examples=300, deadline=None)
@given(st.lists(iso_like, min_size=1, max_size=5))
def test_iso_times_in_bulk_are_parse_times(column):
    agrees(times_twin, time_rule, column)
