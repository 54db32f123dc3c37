"""Times given by people and files: ISO 8601 or Unix seconds -> Unix seconds (UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .errors import ValidationError

_INT = re.compile(r"^\d{1,12}$")


def parse_time(value, *, what: str = "time") -> int:
    """``1767225600``, ``"1767225600"``, ``"2026-01-01"``, ``"2026-01-01T10:00:00Z"``,
    ``"2026-01-01T10:00:00+01:00"`` or an aware datetime. A time without a zone is UTC."""
    if isinstance(value, bool):
        raise ValidationError(f"{what}: not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if _INT.match(text):
            return int(text)
        if re.match(r"^\d+\.\d+$", text):
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
    return int(dt.timestamp())


def iso(ts: int | None) -> str | None:
    """Unix seconds -> ``2026-01-15T10:00:00Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
