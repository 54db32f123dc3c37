"""Idempotency keys, scoped per customer: replaying a key returns the original result; the
same key with other arguments is an error. Call inside the write's transaction."""

from __future__ import annotations

import json
from typing import Any

from .errors import IdempotencyError
from .ledger import Ledger
from .ledger import idempotency as keys


def _canonical(request: dict) -> str:
    return json.dumps(request, sort_keys=True, default=str, separators=(",", ":"))


def replay(ledger: Ledger, user_id: str, key: str | None, operation: str, request: dict) -> Any:
    """The stored response for this key, or None when the key is new."""
    if key is None:
        return None
    row, usage = keys.get_key_or_usage(ledger, user_id, key)
    if row is None:
        if usage:
            raise IdempotencyError(f"idempotency key {key!r} was already used by {user_id!r} to record usage")
        return None
    if row["operation"] != operation:
        raise IdempotencyError(f"idempotency key {key!r} was already used by {user_id!r} for {row['operation']}")
    if row["request"] != _canonical(request):
        raise IdempotencyError(
            f"idempotency key {key!r} was already used by {user_id!r} with different arguments "
            f"({row['request']}); use a new key"
        )
    return json.loads(row["response"])


def remember(ledger: Ledger, user_id: str, key: str | None, operation: str, request: dict, response: Any, now: int) -> None:
    if key is None:
        return
    keys.insert_key(ledger, user_id, key, operation, _canonical(request), json.dumps(response, default=str), now)
