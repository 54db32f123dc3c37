"""The one home of every input rule: quantities, money, user ids, idempotency keys, event
time windows, and when a write repeats a recorded event. ``record``, ``charge``, credits,
the wallet and the importer all call these, so their rules cannot drift apart."""

from __future__ import annotations

import re
from decimal import Decimal

from .errors import IdempotencyError, ValidationError
from .timeparse import iso

# Stripe accepts meter events up to 35 days old and 5 minutes in the future.
MAX_AGE = 35 * 86400
MAX_AHEAD = 5 * 60
MAX_AMOUNT = 2**53

_USER_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


# -- quantities and money ----------------------------------------------------------------------

def check_amount(amount) -> int:
    """A positive whole number of units; a fraction is an error that suggests a smaller unit."""
    if isinstance(amount, bool):
        raise ValidationError(f"amount must be a positive whole number, not {amount!r}")
    if isinstance(amount, int):
        value = amount
    else:
        try:
            number = Decimal(str(amount).strip())
        except Exception:
            raise ValidationError(f"amount must be a positive whole number, not {amount!r}") from None
        if not number.is_finite():
            raise ValidationError(f"amount must be a positive whole number, not {amount!r}")
        if number != number.to_integral_value():
            raise ValidationError(
                f"amount must be a whole number (Stripe meters count whole units), not {amount}: "
                "record in a smaller unit (e.g. milliseconds, tokens, bytes)"
            )
        value = int(number)
    if value <= 0:
        raise ValidationError(f"amount must be positive, not {value}")
    if value > MAX_AMOUNT:
        raise ValidationError(f"amount {value} is too large")
    return value


def check_units(amount, what: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        try:
            text = str(amount).strip()
            if not text.lstrip("-").isdigit():
                raise ValueError
            amount = int(text)
        except ValueError:
            raise ValidationError(f"{what} must be a positive whole number, not {amount!r}") from None
    if amount <= 0:
        raise ValidationError(f"{what} must be positive, not {amount}")
    return amount


# -- identifiers -------------------------------------------------------------------------------

def check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not _USER_ID.match(user_id) or user_id != user_id.strip():
        raise ValidationError(
            f"user id must be 1 to 200 printable characters without surrounding spaces, not {user_id!r}"
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


def check_started(ts: int, sub) -> None:
    if ts < sub.anchor:
        raise ValidationError(
            f"timestamp {iso(ts)} is before {sub.user_id!r}'s subscription started ({iso(sub.anchor)})"
        )


def check_event_time(ts: int, now: int, sub) -> None:
    """The rules for an event's time: within Stripe's window around the customer's ``now``
    (its test clock's time when it has one), and not before the subscription started.
    ``record``, ``charge`` and the importer all end here (the one place for more time rules)."""
    check_window(ts, now)
    check_started(ts, sub)


def event_time_bounds(now: int, sub) -> tuple[int, int]:
    """(lowest, highest) timestamp ``check_event_time`` accepts: the importer's fast path
    compares with these and calls ``check_event_time`` only outside them."""
    return max(now - MAX_AGE, sub.anchor), now + MAX_AHEAD


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
