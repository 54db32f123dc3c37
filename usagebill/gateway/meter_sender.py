"""Sending meter events to Stripe: the v2 meter event stream (up to 100 events a request,
authenticated by a meter event session token that is renewed before it expires), v1 meter
events one by one (each gets its own verdict), a client-side rate limit, and retries with
exponential back-off and jitter on top of the SDK's own ``max_network_retries``."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from ..errors import StripeAPIError
from .client import Connection, describe

STREAM_MAX_EVENTS = 100
SESSION_MARGIN = 60  # renew a session token this many seconds before it expires
# Stripe's error code for an identifier it already holds. Its docs name none for meter events, so
# the message is the fallback; a code seen by the conformance suite (tests/stripe_conformance) goes here.
DUPLICATE_CODES = frozenset({"resource_already_exists"})
DUPLICATE_MESSAGE = "already exists with identifier"


class Unavailable(Exception):
    """Stripe kept failing (429, 5xx, network) through every round: try again later."""


class Refused(Exception):
    """Stripe refused a stream request as invalid (400): some event in it is bad."""


@dataclass(frozen=True)
class RetryPolicy:
    rounds: int = 8  # attempts per request, each one after the SDK's own retries
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential back-off with jitter, so many clients don't retry in step."""
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class RateLimiter:
    """At most ``per_second`` requests a second, evenly spaced (None or 0: no limit)."""

    def __init__(self, per_second: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_at = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if now < self.next_at:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


@dataclass(frozen=True)
class MeterEvent:
    identifier: str  # the ledger's event id, or a coalesced batch id
    event_name: str
    customer: str  # Stripe customer id
    value: int
    timestamp: int

    def payload(self) -> dict:
        return {"stripe_customer_id": self.customer, "value": str(self.value)}


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def is_duplicate(e: Exception) -> bool:
    """Stripe refused a meter event because it already has its identifier: it was delivered."""
    if getattr(e, "code", None) in DUPLICATE_CODES:
        return True
    return DUPLICATE_MESSAGE in (getattr(e, "user_message", None) or str(e)).lower()


def _transient(e: Exception) -> bool:
    import stripe

    if isinstance(e, (stripe.APIConnectionError, stripe.RateLimitError, stripe.IdempotencyError)):
        return True
    status = getattr(e, "http_status", None)
    if status is None:
        return isinstance(e, stripe.APIError)
    return status == 409 or status >= 500


class MeterEventSender:
    def __init__(self, conn: Connection, *, rate: float | None, policy: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None):
        self.client = conn.client
        self.policy = policy
        self.rate = RateLimiter(rate, sleep=sleep)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.requests = 0  # requests this sender made (the SDK's own retries not counted)
        self._token: str | None = None
        self._renew_at = 0.0

    def _call(self, action: str, fn: Callable[[], Any]) -> Any:
        """``fn`` with the rate limit, retried on transient errors; any other error is raised."""
        last: Exception | None = None
        for attempt in range(self.policy.rounds):
            if attempt:
                self.sleep(self.policy.delay(attempt - 1, self.rng))
            self.rate.wait()
            self.requests += 1
            try:
                return fn()
            except Exception as e:
                if not _transient(e):
                    raise
                last = e
        raise Unavailable(describe(last, action) if last else action)

    @property
    def has_session(self) -> bool:
        return self._token is not None

    def _session_token(self) -> str:
        if self._token is None or time.monotonic() >= self._renew_at:
            session = self._call("meter event session", self.client.v2.billing.meter_event_session.create)
            ttl = _parse_rfc3339(session.expires_at) - _parse_rfc3339(session.created)
            self._token = session.authentication_token
            self._renew_at = time.monotonic() + max(ttl - SESSION_MARGIN, 0)
        return self._token

    def stream(self, events: list[MeterEvent]) -> None:
        """Send up to 100 events in one v2 stream request. Stripe drops events whose
        identifier it already has, so a re-sent request never counts twice. Success means
        accepted, not valid: Stripe validates the events later and reports the ones it
        drops (meter_errors.py)."""
        import stripe

        params = {
            "events": [
                {"event_name": e.event_name, "identifier": e.identifier, "payload": e.payload(),
                 "timestamp": _rfc3339(e.timestamp)}
                for e in events
            ]
        }
        stream = self.client.v2.billing.meter_event_stream
        for renewed in (False, True):
            try:
                token = self._session_token()
                self._call("meter event stream", lambda: stream.create(params=params, options={"api_key": token}))
                return
            except (stripe.TemporarySessionExpiredError, stripe.AuthenticationError) as e:
                if renewed or self._token is None:
                    raise StripeAPIError(describe(e, "meter event stream")) from e
                self._token = None  # the session expired (clock skew, a long pause): a new one
            except stripe.InvalidRequestError as e:
                raise Refused(describe(e)) from e
            except stripe.StripeError as e:
                raise StripeAPIError(describe(e, "meter event stream")) from e

    def one(self, event: MeterEvent) -> tuple[str, str | None]:
        """Send one v1 meter event; the verdict is ``delivered``, ``duplicate`` (Stripe already
        has this identifier) or ``failed`` with Stripe's reason."""
        import stripe

        params = {"event_name": event.event_name, "identifier": event.identifier, "payload": event.payload(),
                  "timestamp": event.timestamp}
        try:
            self._call("meter event", lambda: self.client.v1.billing.meter_events.create(params=params))
            return "delivered", None
        except stripe.InvalidRequestError as e:
            if is_duplicate(e):
                return "duplicate", None
            return "failed", describe(e)
        except stripe.StripeError as e:
            raise StripeAPIError(describe(e, "meter event")) from e
