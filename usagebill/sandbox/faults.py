"""Fault injection: the failures a real network and a busy Stripe produce, on demand.

5xx and 429 answers come back before the request is applied. A dropped connection is
either lost before the request reaches the sandbox or after it was applied (the response
is lost): the client cannot tell the two apart, which is exactly what retries with
idempotency keys and meter event identifiers must survive."""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass

from .errors import StripeError

ENV_VAR = "USAGEBILL_SANDBOX_FAULTS"


class DroppedConnection(Exception):
    """The connection broke; ``applied`` says whether the request took effect first.
    Transports turn it into what their client sees on a timeout or reset."""

    def __init__(self, applied: bool):
        super().__init__("sandbox dropped the connection" + (" after applying the request" if applied else ""))
        self.applied = applied


@dataclass(frozen=True)
class FaultConfig:
    rate_5xx: float = 0.0
    rate_429: float = 0.0
    rate_drop: float = 0.0
    seed: int | None = None

    def __post_init__(self):
        for name in ("rate_5xx", "rate_429", "rate_drop"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        if self.rate_5xx + self.rate_429 + self.rate_drop > 1.0:
            raise ValueError("fault rates add up to more than 1")

    @property
    def active(self) -> bool:
        return bool(self.rate_5xx or self.rate_429 or self.rate_drop)

    @classmethod
    def parse(cls, text: str) -> "FaultConfig":
        """``"5xx=0.1,429=0.05,drop=0.05,seed=7"`` (the env var's format)."""
        names = {"5xx": "rate_5xx", "429": "rate_429", "drop": "rate_drop", "seed": "seed"}
        values: dict = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = part.partition("=")
            if not sep or key.strip() not in names:
                raise ValueError(f"bad fault setting {part!r}; expected e.g. 5xx=0.1,429=0.05,drop=0.05,seed=7")
            field = names[key.strip()]
            values[field] = int(raw) if field == "seed" else float(raw)
        return cls(**values)

    @classmethod
    def from_env(cls) -> "FaultConfig":
        return cls.parse(os.environ.get(ENV_VAR, ""))


class FaultInjector:
    def __init__(self, config: FaultConfig):
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()

    def before(self) -> bool | None:
        """Raise the fault for this request, if any. Returns True when the connection must
        drop after the request is applied."""
        c = self.config
        if not c.active:
            return None
        with self._lock:
            roll, coin = self._rng.random(), self._rng.random()
        if roll < c.rate_5xx:
            raise StripeError(
                500,
                "Sorry, something went wrong. We've already been notified of the problem (sandbox fault injection).",
                type="api_error",
                should_retry=True,
            )
        roll -= c.rate_5xx
        if roll < c.rate_429:
            raise StripeError(
                429,
                "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
                type="rate_limit_error",
                code="rate_limit",
                should_retry=True,
            )
        roll -= c.rate_429
        if roll < c.rate_drop:
            if coin < 0.5:
                raise DroppedConnection(applied=False)
            return True
        return None
