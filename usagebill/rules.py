"""The one home of every input rule: quantities, money, user ids, idempotency keys, event
time windows, and when a write repeats a recorded event. ``record``, ``charge``, credits,
the wallet and the importer all call these, so their rules cannot drift apart."""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import repeat

from .errors import IdempotencyError, ValidationError
from .timeparse import MAX_TIME, MIN_TIME, check_range, iso

# Stripe accepts meter events up to 35 days old and 5 minutes in the future.
MAX_AGE = 35 * 86400
MAX_AHEAD = 5 * 60


# -- quantities and money ----------------------------------------------------------------------
# One grammar for every count of units (usage amounts, credits, charge units) and every sum of
# money (minor units): an int, or a string of ASCII digits 0-9 (surrounding spaces allowed).
# Not "2.0", "1e3", "1_000", "+5", other scripts' digits or floats: a count is written one way.
# The limit, 2^53, is the largest integer every JSON reader (and a JavaScript dashboard) holds
# exactly; Stripe meter values stay far below it, and sums of such values fit SQLite's 64 bits.

MAX_AMOUNT = 2**53  # units or minor units in one write
MAX_BALANCE = 2**62  # a credit or wallet balance, either sign: far from SQLite's 2^63
MAX_UNIT_PRICE = Decimal(10**12)  # minor units per unit (price_per_credit)
UNIT_PRICE_DECIMALS = 12  # what Stripe's unit_amount_decimal accepts

_DIGITS = re.compile(r"[0-9]+\Z")
_FRACTION = re.compile(r"[+-]?[0-9]*\.[0-9]+\Z|[+-]?[0-9]+\.[0-9]*\Z")
_NEGATIVE = re.compile(r"-[0-9]+\Z")


def _whole(value, what: str, unit_hint: str) -> int:
    """A positive whole number from an int or a string of ASCII digits, at most MAX_AMOUNT."""
    if type(value) is int:
        number = value
    elif isinstance(value, (str, float, Decimal)):
        text = value.strip(" \t") if isinstance(value, str) else str(value)
        if _DIGITS.match(text) or _NEGATIVE.match(text):
            digits = text.lstrip("-").lstrip("0")
            if len(digits) > 40:
                # far past the limit, whatever the digits (and Python's int() refuses 4,300 and more)
                if text.startswith("-"):
                    raise ValidationError(f"{what} must be positive, not a negative number of {len(digits):,} digits")
                raise ValidationError(f"{what} is too large (at most 2^53 = {MAX_AMOUNT:,}): a number of {len(digits):,} digits")
            number = int(text)
        elif _FRACTION.match(text):
            if Decimal(text) == Decimal(text).to_integral_value():
                raise ValidationError(f"{what} must be a whole number written without a decimal point, not {value!r}")
            raise ValidationError(f"{what} must be a whole number, not {value}: {unit_hint}")
        else:
            raise ValidationError(f"{what} must be a positive whole number, not {value!r} (digits 0-9 only)")
    else:
        raise ValidationError(f"{what} must be a positive whole number, not {value!r}")
    if number <= 0:
        raise ValidationError(f"{what} must be positive, not {number}")
    if number > MAX_AMOUNT:
        raise ValidationError(f"{what} {number} is too large (at most 2^53 = {MAX_AMOUNT:,})")
    return number


def check_amount(amount, what: str = "amount") -> int:
    """A usage amount: a positive whole number of units (Stripe meters count whole units)."""
    return _whole(amount, what, "Stripe meters count whole units: record in a smaller unit (e.g. milliseconds, tokens, bytes)")


def check_units(amount, what: str = "amount") -> int:
    """A number of credits or of units to charge."""
    return _whole(amount, what, "credits are whole units: use a smaller unit")


def check_money(amount, what: str = "amount") -> int:
    """A sum of money in minor units (5000 = $50.00)."""
    return _whole(amount, what, "amounts are whole minor units (cents): 5000 is $50.00")


def check_balance(after: int, what: str) -> int:
    """A balance a write would leave: refused beyond MAX_BALANCE (nothing is written)."""
    if not -MAX_BALANCE <= after <= MAX_BALANCE:
        raise ValidationError(f"{what} would be {after:,}, beyond the limit of 2^62; nothing was changed")
    return after


def check_unit_price(value) -> Decimal:
    """price_per_credit: a number (not a quoted string) of minor units per unit, 0 to 10^12,
    with at most 12 decimals (Stripe refuses more)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        if isinstance(value, str):
            raise ValidationError(f"must be a number, not the string {value!r} (write it without quotes)")
        raise ValidationError(f"must be a number, not {value!r}")
    try:
        # str() first: TOML 0.1 is the float 0.1000000000000000055..., the user meant 0.1
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValidationError(f"must be a number, not {value!r}") from None
    if not number.is_finite():
        raise ValidationError(f"must be a finite number, not {value}")
    if number < 0:
        raise ValidationError(f"must be 0 or more, not {value}")
    if number > MAX_UNIT_PRICE:
        raise ValidationError(f"must be at most 10^12 minor units per unit, not {value}")
    if number and number.normalize().as_tuple().exponent < -UNIT_PRICE_DECIMALS:
        raise ValidationError(f"has more than {UNIT_PRICE_DECIMALS} decimals ({value}); Stripe accepts at most {UNIT_PRICE_DECIMALS}")
    return number


# -- identifiers -------------------------------------------------------------------------------

def check_user_id(user_id: str) -> str:
    """1 to 200 printable characters without surrounding spaces. ``str.isprintable`` refuses
    control and format characters (bidi overrides, zero-width spaces and joiners, BOMs) and
    separators other than the ASCII space: an id must read as what it is."""
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= 200 or user_id != user_id.strip():
        raise ValidationError(
            f"user id must be 1 to 200 printable characters without surrounding spaces, not {user_id!r}"
        )
    if not user_id.isprintable():
        bad = next(c for c in user_id if not c.isprintable())
        raise ValidationError(
            f"user id {user_id!r} contains the invisible or control character U+{ord(bad):04X}; "
            "user ids must be printable characters"
        )
    return user_id


def check_key(key: str | None) -> str | None:
    """An idempotency key (``--id``): 1 to 255 characters, not only spaces."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise ValidationError(f"idempotency key must be 1 to 255 characters, not {key!r}")
    return key


# -- event times ------------------------------------------------------------------------------

def check_window(ts: int, now: int) -> None:
    if ts < now - MAX_AGE:
        raise ValidationError(
            f"timestamp {iso(ts)} is more than 35 days before the customer's now ({iso(now)}); Stripe would reject it"
        )
    if ts > now + MAX_AHEAD:
        raise ValidationError(
            f"timestamp {iso(ts)} is more than 5 minutes after the customer's now ({iso(now)}); Stripe would reject it"
        )


def check_started(ts: int, sub, feature: str | None = None) -> None:
    if ts < sub.anchor:
        raise ValidationError(
            f"timestamp {iso(ts)} is before {sub.user_id!r}'s subscription started ({iso(sub.anchor)})"
        )
    if ts < sub.usage_from:
        raise ValidationError(
            f"timestamp {iso(ts)} is the second {sub.user_id}'s previous subscription ended in, which its final "
            f"invoice bills; this subscription bills usage from {iso(sub.usage_from)}"
        )
    since = sub.priced_since.get(feature) if feature is not None else None
    if since is not None and ts < since:
        raise ValidationError(
            f"timestamp {iso(ts)} is before {iso(since)}, when sync put {feature!r} on {sub.user_id}'s subscription "
            f"at its current price: Stripe has billed (or never bills) the usage before that moment, so record it "
            f"at {iso(since)} or later"
        )


def default_event_time(now: int, sub) -> int:
    """An event's time when none is given: now, or the subscription's first usage second when
    it started in the second the previous one ended (``usagebill.closing``)."""
    return max(now, sub.usage_from)


def check_event_time(ts: int, now: int, sub, feature: str | None = None) -> None:
    """The rules for an event's time: within Stripe's window around the customer's ``now``
    (its test clock's time when it has one), not before the subscription started, and not in
    a period Stripe has invoiced for good (``usagebill.closing``), nor, for a ``feature``, before
    its current price took effect (``gateway.live_subscriptions``).
    ``record``, ``charge`` and the importer all end here (the one place for more time rules)."""
    from .closing import check_open

    check_range(ts, "timestamp")
    check_window(ts, now)
    check_started(ts, sub, feature)
    check_open(ts, sub)


def event_time_bounds(now: int, sub) -> tuple[int, int]:
    """(lowest, highest) timestamp ``check_event_time`` accepts: the importer's fast path
    compares with these and calls ``check_event_time`` only outside them."""
    priced = max(sub.priced_since.values(), default=0)  # any feature's: the slow path checks which
    return max(now - MAX_AGE, sub.usage_from, sub.closed_until or 0, priced), now + MAX_AHEAD


# -- the importer's column twins ---------------------------------------------------------------
# The importer checks a block of rows one column at a time, in C-level passes (map, join,
# min/max) instead of a Python call per value. Each twin answers only for values its rule
# accepts unchanged, with the rule's own result; for any other value it answers None and the
# importer asks the rule itself (check_amount, parse_time, check_key) for that row, which gives
# the message. tests/test_rules.py holds each twin to its rule on hostile values.

_ISO_SHAPE = "0000-00-00T00:00:00Z"  # 2026-01-15T10:00:00Z, the usual export format
_TO_ZERO = str.maketrans("123456789", "000000000")
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_FIRST_19 = operator.itemgetter(slice(0, 19))


def amounts_twin(values: Sequence) -> list[int] | None:
    """``[check_amount(v) for v in values]`` when every value is an int or a string of 1 to 16
    ASCII digits in 1..MAX_AMOUNT; None when any is not (then each goes to check_amount)."""
    if not values:
        return []
    kinds = set(map(type, values))
    if kinds == {str}:
        joined = "".join(values)
        # every character an ASCII digit, every value 1 to 16 of them (int() of more is slow)
        if not (joined.isascii() and joined.isdecimal()) or min(map(len, values)) < 1 or max(map(len, values)) > 16:
            return None
        numbers = list(map(int, values))
    elif kinds == {int}:  # bool is its own type: True is not 1 unit
        numbers = list(values)
    else:
        return None
    if min(numbers) < 1 or max(numbers) > MAX_AMOUNT:
        return None
    return numbers


def times_twin(values: Sequence) -> list[int] | None:
    """``[parse_time(v) for v in values]`` when every value is a string of 1 to 12 ASCII digits
    or of the shape 2026-01-15T10:00:00Z (an upper-case Z), within 1970..9999, or an int in that
    range; None when any is not (then each goes to parse_time)."""
    if not values:
        return []
    kinds = set(map(type, values))
    if kinds == {str}:
        shapes = set(map(str.translate, values, repeat(_TO_ZERO)))
        if shapes == {_ISO_SHAPE}:
            try:
                dates = list(map(datetime.fromisoformat, map(_FIRST_19, values)))
            except ValueError:  # 2026-02-30, 0000-01-01...
                return None
            numbers = list(map(operator.floordiv, map(operator.sub, dates, repeat(_EPOCH)), repeat(_SECOND)))
        else:
            joined = "".join(values)
            if not (joined.isascii() and joined.isdecimal()) or min(map(len, values)) < 1 or max(map(len, values)) > 12:
                return None
            numbers = list(map(int, values))
    elif kinds == {int}:
        numbers = list(values)
    else:
        return None
    if min(numbers) < MIN_TIME or max(numbers) > MAX_TIME:
        return None
    return numbers


def keys_twin(values: Sequence) -> bool:
    """Whether ``check_key`` returns every value unchanged: strings of 1 to 255 characters, not
    only spaces."""
    if not values:
        return True
    return (set(map(type, values)) == {str} and min(map(len, values)) >= 1 and max(map(len, values)) <= 255
            and not any(map(str.isspace, values)))


# -- the same event again --------------------------------------------------------------------

def same_event(feature: str, amount: int, timestamp: int, key: str, new_amount: int, new_ts: int | None) -> bool:
    """Whether a write with an idempotency key repeats the recorded event (a write without a
    time matches any time: "now" differs at each retry)."""
    return feature == key and amount == new_amount and (new_ts is None or timestamp == new_ts)


def key_reused(idempotency_key: str, user_id: str, amount: int, feature: str, timestamp: int) -> IdempotencyError:
    return IdempotencyError(
        f"idempotency key {idempotency_key!r} was already used by {user_id!r} for {amount} "
        f"{feature} at {iso(timestamp)}; use a new key"
    )


def check_email(email: str | None) -> str | None:
    if email is not None and ("@" not in email or len(email) > 512 or email != email.strip()):
        raise ValidationError(f"not an e-mail address: {email!r}")
    return email
