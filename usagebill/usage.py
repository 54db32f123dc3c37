"""Post-paid usage: events written to the ledger (immutable, pending delivery to Stripe),
and real-time summaries of the current period from the ledger."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Callable

from .billed_prices import check_billed, estimate
from .context import Context, Subscription
from .errors import IdempotencyError, ValidationError
from .delivery import Delivery
from .ledger import events, outbox
from .ledger import idempotency as keys
from .rules import MAX_AGE, MAX_AHEAD  # noqa: F401  (their old home: gateway.reconcile imports them from here)
from .rules import check_amount, check_event_time, check_key, default_event_time, key_reused, same_event
from .timeparse import parse_time

if TYPE_CHECKING:
    from .delivery import Delivery

log = logging.getLogger("usagebill")


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


def new_event_id() -> str:
    """``ube_`` and 32 hex digits: the time in milliseconds (12), then 80 random bits (20).
    Ids made one after another sort together, so the unique indexes on them (usage_events.id,
    event_delivery's key) grow at their end: a push's claim of 400 events touches a few index
    pages, not 400 random ones (its INSERT costs a third as much CPU, measured)."""
    return f"ube_{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


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
        check_billed(self.ctx.ledger, sub, key)
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
        with ctx.ledger.transaction(user_id):
            event = self.insert(user_id, key, amount, ts, idempotency_key, events.RECORD)
        if self.deliverer is not None:
            if push or event.replayed:
                event = replace(event, delivery=self.deliverer.deliver(event.id, push))
            else:  # written just now and sent by nobody yet: pending, no need to ask the ledger
                event = replace(event, delivery=Delivery(outbox.PENDING))
        if not event.replayed:
            self.notify(event)
        return event

    def insert(self, user_id: str, key: str, amount: int, ts: int | None, idempotency_key: str | None, source: str) -> UsageEvent:
        """Validate and insert one event, inside the caller's transaction (``record``, and the
        usage part of ``charge``); ``amount`` is checked already."""
        ctx = self.ctx
        sub = ctx.require_subscription(user_id)
        if idempotency_key is not None:
            earlier = self._replay(user_id, key, amount, ts, idempotency_key)
            if earlier is not None:
                return earlier
        self.usage_feature(sub, key)
        now = ctx.now_for(user_id)
        ts = default_event_time(now, sub) if ts is None else ts
        check_event_time(ts, now, sub, key)
        event = UsageEvent(new_event_id(), user_id, key, amount, ts, ctx.clock(), idempotency_key)
        events.insert_event(ctx.ledger, event.id, user_id, key, amount, ts, event.recorded_at, idempotency_key, source)
        return event

    def _replay(self, user_id, key, amount, ts, idempotency_key) -> UsageEvent | None:
        row = events.event_by_key(self.ctx.ledger, user_id, idempotency_key)
        if row is None:
            if keys.key_exists(self.ctx.ledger, user_id, idempotency_key):
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
        # a re-run that imports nothing new still finishes the delivery a killed run left
        if push and not result.dry_run and self.deliverer is not None:
            result.delivery = self.deliverer.deliver_pending()
        return result

    def get_summary(self, user_id: str, key: str) -> UsageSummary:
        """Usage and estimated cost of a feature in the customer's current period."""
        sub = self.ctx.require_subscription(user_id)
        feature = self.usage_feature(sub, key)
        start, end = sub.period(self.ctx.now_for(user_id))
        counted_from = max(start, sub.usage_from)
        total, n = events.usage_total(self.ctx.ledger, user_id, key, counted_from, end)
        estimated, unit_price = estimate(self.ctx.ledger, sub, key, counted_from, end, feature.price_per_credit,
                                         known=(counted_from, end, total))
        return UsageSummary(
            user_id=user_id,
            key=key,
            display_name=feature.display_name,
            total_amount=total,
            estimated_cost=estimated,
            currency=sub.currency,
            unit_price=unit_price,
            period_start=start,
            period_end=end,
            events=n,
        )

    def get_summaries(self, user_id: str) -> list[UsageSummary]:
        """Summaries of every usage feature of the customer's plan."""
        sub = self.ctx.require_subscription(user_id)
        return [self.get_summary(user_id, k) for k, f in sub.plan.features.items() if f.track_usage]

    def events(self, user_id: str, key: str | None = None, limit: int = 100) -> list[UsageEvent]:
        """The customer's events, newest first."""
        self.ctx.customer(user_id)
        return [_event(r) for r in events.list_events(self.ctx.ledger, user_id, key, limit)]


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
