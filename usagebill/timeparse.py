"""Times given by people and files: ISO 8601 or Unix seconds -> Unix seconds (UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .errors import ValidationError

_INT = re.compile(r"^[0-9]{1,12}$")

# The times usagebill accepts: 1970-01-01 to 9999-12-31 (what a datetime and ISO 8601 hold);
# event times are then held to Stripe's window around the customer's now (rules.py).
MIN_TIME = 0
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


def check_range(ts: int, what: str = "time") -> int:
    if not MIN_TIME <= ts <= MAX_TIME:
        raise ValidationError(
            f"{what}: {ts} is out of range (Unix seconds from 0 to {MAX_TIME}, i.e. 1970 to 9999)"
        )
    return ts


def parse_time(value, *, what: str = "time") -> int:
    """``1767225600``, ``"1767225600"``, ``"2026-01-01"``, ``"2026-01-01T10:00:00Z"``,
    ``"2026-01-01T10:00:00+01:00"`` or an aware datetime. A time without a zone is UTC."""
    if isinstance(value, bool):
        raise ValidationError(f"{what}: not a time: {value!r}")
    if isinstance(value, int):
        return check_range(value, what)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if _INT.match(text):
            return check_range(int(text), what)
        if re.match(r"^[0-9]+\.[0-9]+$", text):
            raise ValidationError(f"{what}: {value!r}: Unix times are whole seconds")
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValidationError(
                f"{what}: {value!r} is not a time (ISO 8601 like 2026-01-15T10:00:00Z, or Unix seconds)"
            ) from None
    else:
        raise ValidationError(f"{what}: not a time: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        ts = int(dt.timestamp())
    except (OverflowError, ValueError):
        raise ValidationError(f"{what}: {value!r} is out of range (1970 to 9999)") from None
    return check_range(ts, what)


def iso(ts: int | None) -> str | None:
    """Unix seconds -> ``2026-01-15T10:00:00Z`` (a time out of range stays a number: a message
    naming a bad time must not crash)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{ts} (Unix seconds)"
