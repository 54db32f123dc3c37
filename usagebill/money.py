"""Money: integers of minor units, Decimal unit prices, one rounding (half-up) at the end."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

# digits for exact products: 2^53 units x a price of up to 10^12 with 12 decimals (rules.py)
PRECISION = 60

# Currencies Stripe charges in, by ISO 4217 code. Stripe's zero-decimal currencies have no
# minor unit (amounts are whole yen); three-decimal ones are left out: Stripe treats them
# specially and usagebill does not support them yet.
ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
CURRENCIES = ZERO_DECIMAL | frozenset(
    """usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl bsd bwp byn
    bzd cad cdf chf cny cop crc cve czk dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gtq gyd
    hkd hnl htg huf idr ils inr isk jmd kes kgs khr kyd kzt lak lbp lkr lrd lsl mad mdl mkd mmk
    mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd pab pen pgk php pkr pln qar ron rsd
    rub sar sbd scr sek sgd shp sle sos srd std szl thb tjs top try ttd twd tzs uah uyu uzs wst
    xcd yer zar zmw""".split()
)
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩"}


def round_minor(value: Decimal) -> int:
    """Round a cost in minor units to a whole number of minor units, half-up."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def cost(amount: int, unit_price: Decimal) -> int:
    """amount x unit price (minor units per unit), exactly, rounded once."""
    with localcontext() as c:
        c.prec = PRECISION
        return round_minor(Decimal(amount) * unit_price)


def format_money(minor: int, currency: str) -> str:
    """1500, "usd" -> "$15.00"; -250, "eur" -> "-€2.50"; 500, "jpy" -> "¥500"."""
    currency = currency.lower()
    sign = "-" if minor < 0 else ""
    if currency in ZERO_DECIMAL:
        number = f"{abs(minor):,}"
    else:
        number = f"{abs(minor) // 100:,}.{abs(minor) % 100:02d}"
    symbol = _SYMBOLS.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"


def format_unit_price(unit_price: Decimal, currency: str) -> str:
    """A per-unit price in minor units, shown in major units: Decimal(10), usd -> "$0.10";
    Decimal("0.5"), usd -> "$0.005"."""
    currency = currency.lower()
    major = unit_price if currency in ZERO_DECIMAL else unit_price / 100
    text = f"{major:,.2f}" if major == major.quantize(Decimal("0.01")) else f"{major.normalize():,f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
