"""Line amounts and the words Stripe prints on invoice lines.

Money is integer minor units; a price's unit amount may be fractional (``unit_amount_decimal``,
up to 12 decimal places of a minor unit) and is handled as ``Decimal``, never ``float``."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# Currencies whose minor unit is the major unit (Stripe's "zero-decimal currencies").
ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
_SYMBOLS = {"usd": "$", "cad": "$", "aud": "$", "nzd": "$", "sgd": "$", "hkd": "$", "mxn": "$",
            "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩"}


def unit_amount(price: dict) -> Decimal:
    """The price per unit in minor units, exactly."""
    dec = price.get("unit_amount_decimal")
    if dec is not None:
        return Decimal(str(dec))
    if price.get("unit_amount") is not None:
        return Decimal(int(price["unit_amount"]))
    raise ValueError(f"price {price.get('id')} has no unit amount")


def line_amount(quantity: int, unit: Decimal) -> int:
    """quantity x unit price, rounded once, on the line, to the nearest minor unit with halves
    going up. Stripe's "Decimal amounts for pricing" guide: rounding happens per line item after
    multiplying by the quantity (0.05 x 30 = 1.5 -> 2 cents), and lines are rounded before they
    are summed into the invoice total."""
    return int((unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_money(minor: Decimal | int, currency: str) -> str:
    """Minor units as Stripe writes them on lines: "$20.00", "$0.10", and a fractional unit
    price with all its digits ("$0.07395890411"), never fewer than the currency's decimals."""
    currency = currency.lower()
    exponent = 0 if currency in ZERO_DECIMAL else 2
    major = Decimal(minor).scaleb(-exponent)
    text = format(major.normalize(), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) < exponent:
        frac = frac.ljust(exponent, "0")
    number = f"{whole}.{frac}" if frac else whole
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{currency.upper()} {number}"


def interval_phrase(interval: str, interval_count: int) -> str:
    """"month" or "every 3 months", as in "(at $900.00 / every 3 months)"."""
    if interval_count == 1:
        return interval
    return f"every {interval_count} {interval}s"


def line_description(quantity: int, product_name: str, unit: Decimal, currency: str,
                     interval: str, interval_count: int) -> str:
    """Stripe's subscription line text: "1 × Pro (at $20.00 / month)" (the sign is U+00D7)."""
    return (f"{quantity} × {product_name} "
            f"(at {format_money(unit, currency)} / {interval_phrase(interval, interval_count)})")
