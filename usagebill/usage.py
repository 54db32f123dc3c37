"""Post-paid usage: events written to the ledger (immutable, pending delivery to Stripe),
and real-time summaries of the current period from the ledger."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Callable

from .closing import check_open
from .context import Context, Subscription
from .errors import IdempotencyError, ValidationError
from .idempotency import check_key
from .money import cost
from .timeparse import iso, parse_time

if TYPE_CHECKING:
    from .delivery import Delivery

log = logging.getLogger("usagebill")

# Stripe accepts meter events up to 35 days old and 5 minutes in the future.
MAX_AGE = 35 * 86400
MAX_AHEAD = 5 * 60


@dataclass(frozen=True)
class UsageEvent:
    id: str  # the ledger's event id, sent to Stripe as the meter event identifier
    user_id: str
    key: str
    amount: int
    timestamp: int
    recorded_at: int
    idempotency_key: str | None = None
    replayed: bool = False  # True when an idempotency key returned an earlier event
    delivery: "Delivery | None" = None  # what became of it in Stripe (usagebill.delivery)


@dataclass(frozen=True)
class UsageSummary:
    user_id: str
    key: str
    display_name: str
    total_amount: int
    estimated_cost: int  # minor units, rounded once
    currency: str
    unit_price: Decimal  # minor units per unit
    period_start: int
    period_end: int
    events: int

    @property
    def period(self) -> tuple[int, int]:
        return self.period_start, self.period_end


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
    if value > 2**53:
        raise ValidationError(f"amount {value} is too large")
    return value


def check_window(ts: int, now: int) -> None:
    if ts < now - MAX_AGE:
        raise ValidationError(
            f"timestamp {iso(ts)} is more than 35 days before the customer's now ({iso(now)}); Stripe would reject it"
        )
    if ts > now + MAX_AHEAD:
        raise ValidationError(
            f"timestamp {iso(ts)} is more than 5 minutes after the customer's now ({iso(now)}); Stripe would reject it"
        )


def check_started(ts: int, sub: Subscription) -> None:
    if ts < sub.anchor:
        raise ValidationError(
            f"timestamp {iso(ts)} is before {sub.user_id!r}'s subscription started ({iso(sub.anchor)})"
        )


def check_time(ts: int, now: int, sub: Subscription) -> None:
    """The rules for an event's time: within Stripe's window around the customer's ``now``
    (its test clock's time when it has one), not before the subscription started, and not in
    a period Stripe has already invoiced for good (``usagebill.closing``)."""
    check_window(ts, now)
    check_started(ts, sub)
    check_open(ts, sub)


def same_event(feature: str, amount: int, timestamp: int, key: str, new_amount: int, new_ts: int | None) -> bool:
    """Whether a write with an idempotency key repeats the recorded event (a write without a
    time matches any time: "now" differs at each retry)."""
    return feature == key and amount == new_amount and (new_ts is None or timestamp == new_ts)


def key_reused(idempotency_key: str, user_id: str, amount: int, feature: str, timestamp: int) -> IdempotencyError:
    return IdempotencyError(
        f"idempotency key {idempotency_key!r} was already used by {user_id!r} for {amount} "
        f"{feature} at {iso(timestamp)}; use a new key"
    )


def new_event_id() -> str:
    return "ube_" + uuid.uuid4().hex


class Usage:
    def __init__(self, ctx: Context, on_usage_recorded: Callable[[UsageEvent], None] | None = None,
                 deliverer=None):
        self.ctx = ctx
        self.on_usage_recorded = on_usage_recorded
        self.deliverer = deliverer  # the Billing (.deliver, .deliver_pending); None: ledger only

    def notify(self, event: UsageEvent) -> None:
        """Tell ``on_usage_recorded``. The event is committed: a callback that raises must
        not make the write look failed (a caller that retries would count it twice), so its
        error is logged on stderr and the write returns normally."""
        if self.on_usage_recorded is None:
            return
        try:
            self.on_usage_recorded(event)
        except Exception as e:
            log.error("usagebill: on_usage_recorded raised %s: %s (event %s is recorded and stays so)",
                      type(e).__name__, e, event.id, exc_info=bool(os.environ.get("USAGEBILL_DEBUG")))

    def usage_feature(self, sub: Subscription, key: str):
        feature = self.ctx.plan_feature(sub, key)
        if not feature.track_usage:
            raise ValidationError(
                f"feature {key!r} of plan {sub.plan.name!r} does not track usage (track_usage is not set); "
                "use credits or charge for it"
            )
        return feature

    def record(
        self, user_id: str, key: str, amount=1, at=None, idempotency_key: str | None = None, *, push: bool = True
    ) -> UsageEvent:
        """Write a usage event to the ledger, then deliver it to Stripe (``push``; with
        ``push=False`` it stays pending for ``usagebill push``). ``event.delivery`` is the
        verdict: a failed delivery leaves the event recorded and pending, never raises."""
        amount = check_amount(amount)
        check_key(idempotency_key)
        ts = None if at is None else parse_time(at, what="--at")
        ctx = self.ctx
        with ctx.ledger.transaction():
            event = self._insert(user_id, key, amount, ts, idempotency_key, "record")
        if self.deliverer is not None:
            event = replace(event, delivery=self.deliverer.deliver(event.id, push))
        if not event.replayed:
            self.notify(event)
        return event

    def _insert(self, user_id: str, key: str, amount: int, ts: int | None, idempotency_key: str | None, source: str) -> UsageEvent:
        """Validate and insert one event, inside the caller's transaction."""
        ctx = self.ctx
        sub = ctx.require_subscription(user_id)
        if idempotency_key is not None:
            earlier = self._replay(user_id, key, amount, ts, idempotency_key)
            if earlier is not None:
                return earlier
        self.usage_feature(sub, key)
        now = ctx.now_for(user_id)
        ts = now if ts is None else ts
        check_time(ts, now, sub)
        event = UsageEvent(new_event_id(), user_id, key, amount, ts, ctx.clock(), idempotency_key)
        ctx.ledger.conn.execute(
            "INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, idempotency_key, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event.id, user_id, key, amount, ts, event.recorded_at, idempotency_key, source),
        )
        return event

    def _replay(self, user_id, key, amount, ts, idempotency_key) -> UsageEvent | None:
        row = self.ctx.ledger.one(
            "SELECT * FROM usage_events WHERE user_id = ? AND idempotency_key = ?", (user_id, idempotency_key)
        )
        if row is None:
            if self.ctx.ledger.one(
                "SELECT 1 FROM idempotency_keys WHERE user_id = ? AND key = ?", (user_id, idempotency_key)
            ):
                raise IdempotencyError(f"idempotency key {idempotency_key!r} was already used by {user_id!r} for another operation")
            return None
        if not same_event(row["feature"], row["amount"], row["timestamp"], key, amount, ts):
            raise key_reused(idempotency_key, user_id, row["amount"], row["feature"], row["timestamp"])
        return _event(row, replayed=True)

    def import_rows(self, source, format: str | None = None, *, push: bool = True, **options):
        """Import usage rows from a CSV or JSON Lines file (a path, or a binary file object):
        idempotent, streaming, in bounded transactions (``usagebill.importer.import_rows``);
        then deliver what is pending to Stripe (``push``): ``result.delivery`` is the verdict."""
        from .importer import import_rows

        result = import_rows(self, source, format, **options)
        if push and result.imported and not result.dry_run and self.deliverer is not None:
            result.delivery = self.deliverer.deliver_pending()
        return result

    def get_summary(self, user_id: str, key: str) -> UsageSummary:
        """Usage and estimated cost of a feature in the customer's current period."""
        sub = self.ctx.require_subscription(user_id)
        feature = self.usage_feature(sub, key)
        start, end = sub.period(self.ctx.now_for(user_id))
        row = self.ctx.ledger.one(
            "SELECT COALESCE(SUM(amount), 0) AS total, COUNT(*) AS n FROM usage_events "
            "WHERE user_id = ? AND feature = ? AND timestamp >= ? AND timestamp < ?",
            (user_id, key, start, end),
        )
        total = int(row["total"])
        return UsageSummary(
            user_id=user_id,
            key=key,
            display_name=feature.display_name,
            total_amount=total,
            estimated_cost=cost(total, feature.price_per_credit),
            currency=sub.currency,
            unit_price=feature.price_per_credit,
            period_start=start,
            period_end=end,
            events=int(row["n"]),
        )

    def get_summaries(self, user_id: str) -> list[UsageSummary]:
        """Summaries of every usage feature of the customer's plan."""
        sub = self.ctx.require_subscription(user_id)
        return [self.get_summary(user_id, k) for k, f in sub.plan.features.items() if f.track_usage]

    def events(self, user_id: str, key: str | None = None, limit: int = 100) -> list[UsageEvent]:
        """The customer's events, newest first."""
        self.ctx.customer(user_id)
        sql, args = "SELECT * FROM usage_events WHERE user_id = ?", [user_id]
        if key is not None:
            sql += " AND feature = ?"
            args.append(key)
        rows = self.ctx.ledger.all(sql + " ORDER BY seq DESC LIMIT ?", [*args, int(limit)])
        return [_event(r) for r in rows]


def _event(row, replayed: bool = False) -> UsageEvent:
    return UsageEvent(
        id=row["id"],
        user_id=row["user_id"],
        key=row["feature"],
        amount=row["amount"],
        timestamp=row["timestamp"],
        recorded_at=row["recorded_at"],
        idempotency_key=row["idempotency_key"],
        replayed=replayed,
    )
