"""Idempotency-Key handling, as Stripe does it.

The key is claimed in its own short transaction (an "in flight" record), so a concurrent
duplicate sees it and gets a 409 instead of waiting and running twice. The final response is
saved in the same transaction as the request's effects: either both happen or neither.
5xx answers are not saved (the key is released), so a retry runs the request again."""

from __future__ import annotations

import hashlib
import json

from .errors import StripeError
from .store import Store

NS = "idempotency"
TTL = 24 * 3600  # Stripe keeps keys for at least 24 hours
IN_FLIGHT_LEASE = 120  # an in-flight claim older than this was abandoned (a crashed process)


def fingerprint(method: str, path: str, params: dict) -> str:
    text = json.dumps([method.upper(), path, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def claim(store: Store, key: str, fp: str, now: int) -> dict | None:
    """Claim ``key`` for a new request, or return the saved response to replay
    (``{"status", "body"}``). Raises the 400 mismatch / 409 in-flight errors."""
    rec = store.kv_get(NS, key)
    if rec is not None and now - rec["created"] >= TTL:
        rec = None
    if rec is not None:
        if rec["fingerprint"] != fp:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were first "
                f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                type="idempotency_error",
            )
        if rec["state"] == "done":
            return rec
        refuse_if_in_flight(rec, key, fp, now)
    store.kv_set(NS, key, {"state": "in_flight", "fingerprint": fp, "created": now, "claimed": now})
    return None


def in_flight_error(key: str) -> StripeError:
    return StripeError(
        409,
        "There is currently another in-progress request using this Idempotent Key (that probably "
        f"means you submitted twice, and the other request is still going through): {key}. "
        "Please try again later.",
        type="idempotency_error",
        code="idempotency_key_in_use",
        should_retry=True,
    )


def refuse_if_in_flight(rec: dict, key: str, fp: str, now: int) -> None:
    """409 when ``rec`` is a live claim by a request still running (same parameters; a
    mismatch is reported by ``claim`` as the 400 it is)."""
    if (rec["state"] == "in_flight" and rec["fingerprint"] == fp and now - rec["created"] < TTL
            and now - rec["claimed"] < IN_FLIGHT_LEASE):
        raise in_flight_error(key)


def mark_in_flight(store: Store, key: str, fp: str, now: int) -> None:
    """Record ``key`` as claimed by a request still running (what a concurrent duplicate sees)."""
    store.kv_set(NS, key, {"state": "in_flight", "fingerprint": fp, "created": now, "claimed": now})


def save(store: Store, key: str, fp: str, now: int, status: int, body: bytes) -> None:
    rec = store.kv_get(NS, key) or {"created": now}
    store.kv_set(
        NS,
        key,
        {"state": "done", "fingerprint": fp, "created": rec["created"], "claimed": now,
         "status": status, "body": body.decode()},
    )


def release(store: Store, key: str) -> None:
    store.kv_delete(NS, key)


def prune(store: Store, now: int) -> None:
    """Forget keys older than the 24-hour window (run when a Sandbox opens its state)."""
    store.db.execute(
        "DELETE FROM kv WHERE ns = ? AND json_extract(value, '$.created') < ?", (NS, now - TTL)
    )
