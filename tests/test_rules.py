"""The one validator: every command, the library and the importer refuse the same values
with the same one-line message (exit 1, no traceback)."""

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from usagebill import ValidationError
from usagebill.rules import MAX_AMOUNT, check_amount, check_money, check_unit_price, check_units, check_user_id
from usagebill.timeparse import MAX_TIME, iso, parse_time


@pytest.mark.parametrize("value", ["2.0", "1e3", "1_000", "+5", "\u0663", "١٠", "0x10", "", " ", 2.0, Decimal("3.0"),
                                   True, None, "-1", 0, -1, "0", MAX_AMOUNT + 1, str(2**63), 2**63])
@pytest.mark.parametrize("check", [check_amount, check_units, check_money])
def test_one_grammar_for_every_count_and_sum(check, value):
    with pytest.raises(ValidationError):
        check(value)


@pytest.mark.parametrize("check", [check_amount, check_units, check_money])
def test_plain_digits_are_fine(check):
    assert check("7") == check(" 7 ") == check(7) == 7
    assert check(str(MAX_AMOUNT)) == MAX_AMOUNT


@given(st.text(max_size=8) | st.integers() | st.floats() | st.decimals())
def test_the_three_checks_agree_on_everything(value):
    """Any value is accepted by all of them or refused by all of them, with the same value."""
    outcomes = set()
    for check in (check_amount, check_units, check_money):
        try:
            outcomes.add(check(value))
        except ValidationError:
            outcomes.add("refused")
    assert len(outcomes) == 1


@given(st.integers(min_value=1, max_value=MAX_AMOUNT))
def test_every_int_in_range_round_trips_as_text(n):
    assert check_amount(str(n)) == n == check_units(n)


@pytest.mark.parametrize("user_id", ["al\u202eice", "al\u200bice", "al\u200dice", "\u2066bob", "bob\ufeff",
                                     "a\u00a0b", "a\tb", "a\x00b", " bob", "bob ", "", "x" * 201])
def test_user_ids_that_do_not_read_as_what_they_are(user_id):
    with pytest.raises(ValidationError, match="user id"):
        check_user_id(user_id)


@pytest.mark.parametrize("user_id", ["alice", "Ünïcødé-名前", "cust 42", "a@b.c", "x" * 200])
def test_user_ids_that_are_fine(user_id):
    assert check_user_id(user_id) == user_id


@pytest.mark.parametrize("value", [999999999999, "999999999999", -1, MAX_TIME + 1])
def test_far_times_are_refused_not_a_crash(value):
    with pytest.raises(ValidationError, match="out of range"):
        parse_time(value, what="--at")


def test_the_last_representable_second_is_fine():
    assert parse_time("9999-12-31T23:59:59Z") == MAX_TIME
    assert iso(999999999999) == "999999999999 (Unix seconds)"


@pytest.mark.parametrize("value, ok", [(10, True), (0.5, True), (Decimal("0.000000000001"), True), (10**12, True),
                                       (0.1234567890123, False), (1e30, False), ("10", False), (-1, False)])
def test_unit_price_limits(value, ok):
    if ok:
        assert check_unit_price(value) == Decimal(str(value))
    else:
        with pytest.raises(ValidationError):
            check_unit_price(value)


# -- the CLI: one line, exit 1, for every command that takes a number ------------------------------

@pytest.fixture
def subscribed(runner):
    assert runner("sync").exit_code == 0
    assert runner("customers", "add", "alice").exit_code == 0
    assert runner("subscribe", "alice", "Pro").exit_code == 0
    return runner


@pytest.mark.parametrize("args, message", [
    (["record", "alice", "api_calls", "-1", "--no-push"], "Error: amount must be positive, not -1"),
    (["record", "alice", "api_calls", "2.0", "--no-push"], "without a decimal point, not '2.0'"),
    (["record", "alice", "api_calls", "1e3", "--no-push"], "not '1e3' (digits 0-9 only)"),
    (["record", "alice", "api_calls", "1_000", "--no-push"], "not '1_000' (digits 0-9 only)"),
    (["record", "alice", "api_calls", "\u0663", "--no-push"], "(digits 0-9 only)"),
    (["record", "alice", "api_calls", "1", "--at", "999999999999", "--no-push"], "--at: 999999999999 is out of range"),
    (["charge", "alice", "api_calls", "-5", "--no-push"], "Error: units must be positive, not -5"),
    (["charge", "alice", "api_calls", "2.0", "--no-push"], "without a decimal point"),
    (["charge", "alice", "api_calls", str(2**63), "--no-push"], "is too large (at most 2^53"),
    (["credits", "grant", "alice", "api_calls", str(2**63)], "is too large (at most 2^53"),
    (["credits", "grant", "alice", "api_calls", "-1"], "Error: amount must be positive, not -1"),
    (["credits", "consume", "alice", "api_calls", "-1"], "Error: amount must be positive, not -1"),
    (["wallet", "top-up", "alice", str(2**63)], "is too large (at most 2^53"),
    (["wallet", "top-up", "alice", "-1"], "Error: amount must be positive, not -1"),
    (["wallet", "consume", "alice", "1.5"], "whole minor units"),
    (["customers", "add", "al\u202eice"], "invisible or control character U+202E"),
    (["testclock", "create", "--at", "999999999999"], "--at: 999999999999 is out of range"),
])
def test_bad_numbers_on_the_command_line(subscribed, args, message):
    r = subscribed(*args)
    assert r.exit_code == 1, r.output
    lines = [line for line in r.output.splitlines() if not line.startswith("usagebill: sandbox")]
    assert len(lines) == 1 and message in lines[0], r.output



def test_costs_are_exact_beyond_decimals_default_precision():
    """A product of more than 28 digits: Decimal's default context would round it first (up to
    ...001 here), then round again; one rounding, half-up, of the exact product gives ...000."""
    from usagebill.money import cost

    assert cost(10**15 + 1, Decimal("100000.499999999999")) == 100000500000000099000
    q, r = divmod(MAX_AMOUNT * (10**24 - 1), 10**12)  # the highest price with 12 decimals
    assert cost(MAX_AMOUNT, Decimal("999999999999.999999999999")) == q + (1 if 2 * r >= 10**12 else 0)
