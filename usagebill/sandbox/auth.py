"""Who may call the sandbox: any test-mode secret key; never a live key. The v2 meter event
stream authenticates with short-lived meter event session tokens instead."""

from __future__ import annotations

from .errors import StripeError
from .store import Store

SESSION_NS = "meter_event_session"
SESSION_TTL = 15 * 60  # Stripe's meter event session tokens last 15 minutes


def bearer(headers: dict) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(message: str) -> StripeError:
    return StripeError(401, message, type="invalid_request_error")


def _no_key() -> StripeError:
    return _unauthorized(
        "You did not provide an API key. You need to provide your API key in the Authorization header, "
        "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication "
        "for details, or we can help at https://support.stripe.com/."
    )


def _redact(key: str) -> str:
    return key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else key[:3] + "***"


def api_key(headers: dict) -> str:
    """The request's secret key, or the 401 Stripe answers."""
    key = bearer(headers)
    if key is None:
        raise _no_key()
    if key.startswith(("sk_live_", "rk_live_")):
        raise _unauthorized(
            "The usagebill sandbox refuses live keys (sk_live_...): it only emulates test mode. "
            "Use an sk_test_ key, or talk to Stripe itself."
        )
    if not key.startswith(("sk_test_", "rk_test_")) or len(key) <= len("sk_test_"):
        raise _unauthorized(f"Invalid API Key provided: {_redact(key)}")
    return key


def save_session(store: Store, token: str, expires_at: int) -> None:
    store.kv_set(SESSION_NS, token, {"expires_at": expires_at})


def session_token(store: Store, headers: dict, now: int) -> str:
    """The meter event session token of a stream request, or 401 when unknown or expired."""
    token = bearer(headers)
    if token is None:
        raise _no_key()
    session = store.kv_get(SESSION_NS, token)
    if session is None:
        raise _unauthorized("Invalid authentication token for the meter event stream. Create a new meter event session.")
    if now >= session["expires_at"]:
        raise StripeError(
            401,
            "The meter event session has expired. Create a new meter event session.",
            type="temporary_session_expired",
            code="billing_meter_event_session_expired",
        )
    return token
