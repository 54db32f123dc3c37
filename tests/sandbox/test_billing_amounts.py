"""Line amounts (Decimal, half-up per line) and Stripe's line descriptions."""

from decimal import Decimal

import pytest

from usagebill.sandbox.billing.amounts import format_money, line_amount, line_description, unit_amount


def test_unit_amount_prefers_the_decimal_field():
    assert unit_amount({"unit_amount": 10, "unit_amount_decimal": "10"}) == Decimal(10)
    assert unit_amount({"unit_amount": None, "unit_amount_decimal": "0.5"}) == Decimal("0.5")
    assert unit_amount({"unit_amount": 2000}) == Decimal(2000)
    with pytest.raises(ValueError):
        unit_amount({"id": "price_x", "unit_amount": None, "unit_amount_decimal": None})


@pytest.mark.parametrize(
    "quantity, unit, expected",
    [
        (30, "0.05", 2),  # Stripe's own example: 1.5 cents -> 2
        (1, "0.5", 1),  # half goes up
        (3, "0.5", 2),  # 1.5 -> 2
        (5, "0.5", 3),  # 2.5 -> 3: half-up, not banker's rounding (which gives 2)
        (1, "0.49", 0),
        (150, "10", 1500),
        (7, "0.333333333333", 2),
        (0, "0.5", 0),
    ],
)
def test_line_amount_rounds_half_up_once_per_line(quantity, unit, expected):
    assert line_amount(quantity, Decimal(unit)) == expected


def test_format_money():
    assert format_money(2000, "usd") == "$20.00"
    assert format_money(10, "usd") == "$0.10"
    assert format_money(Decimal("7.395890411"), "usd") == "$0.07395890411"
    assert format_money(Decimal("0.5"), "eur") == "€0.005"
    assert format_money(500, "jpy") == "¥500"
    assert format_money(1999, "chf") == "CHF 19.99"


def test_line_description_as_stripe_writes_it():
    assert line_description(1, "Pro", Decimal(2000), "usd", "month", 1) == "1 × Pro (at $20.00 / month)"
    assert line_description(150, "API Calls", Decimal(10), "usd", "month", 1) == "150 × API Calls (at $0.10 / month)"
    assert line_description(1, "Plan", Decimal(90000), "usd", "month", 3) == "1 × Plan (at $900.00 / every 3 months)"
