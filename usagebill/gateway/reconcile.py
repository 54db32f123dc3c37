"""``reconcile``: what the ledger says it delivered, per customer, feature and billing period,
against Stripe's meter event summaries over the same window.

Stripe wants minute-aligned windows, so each period is widened to whole minutes on both
sides and the ledger is summed over that same window. The ledger side counts what was sent
as meter events: events delivered on their own at their own time, coalesced batches at the
batch's time, so a batch never straddles the window on one side only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..billing import Billing
from ..errors import NotFoundError, ValidationError
from ..usage import MAX_AHEAD
from ..ledger import outbox
from . import mapping
from .client import Connection, stripe_errors
from .delivery import default_rate
from .meter_sender import RateLimiter

RECENT = 5 * 60  # Stripe's summaries lag ingestion: deliveries this recent may not show yet


@dataclass(frozen=True)
class Line:
    user_id: str
    feature: str
    period_start: int
    period_end: int
    start_time: int  # the minute-aligned window compared
    end_time: int
    ledger: int  # delivered according to the ledger
    stripe: int  # Stripe's aggregated value
    pending: int  # events in the window not confirmed yet (run push first)
    recent: bool  # something in the window was delivered in the last few minutes

    @property
    def difference(self) -> int:
        return self.stripe - self.ledger


@dataclass
class ReconcileResult:
    lines: list[Line] = field(default_factory=list)

    @property
    def differences(self) -> list[Line]:
        return [x for x in self.lines if x.difference]

    @property
    def ok(self) -> bool:
        return not self.differences


def minute_window(start: int, end: int) -> tuple[int, int]:
    return start - start % 60, -(-end // 60) * 60


def ledger_delivered(billing: Billing, user_id: str, feature: str, start: int, end: int) -> tuple[int, int, bool]:
    """(delivered total, pending events, delivered recently) of one customer's feature in a window."""
    return outbox.delivered_in_window(billing.ledger, user_id, feature, start, end, int(time.time()) - RECENT)


def _features(billing: Billing, sub, user_id: str) -> list[str]:
    """The plan's usage features and any other feature the customer has events of."""
    keys = [k for k, f in sub.plan.features.items() if f.track_usage]
    for row in billing.ledger.all("SELECT DISTINCT feature FROM usage_events WHERE user_id = ?", (user_id,)):
        if row[0] not in keys:
            keys.append(row[0])
    return [k for k in keys if mapping.get(billing.ledger, mapping.meter_key(k))]


def _periods(sub, now: int, count: int) -> list[tuple[int, int]]:
    """The current period and up to ``count - 1`` before it, newest first, none before the anchor."""
    out = [sub.period(now)]
    while len(out) < count and out[-1][0] > sub.anchor:
        out.append(sub.period(out[-1][0] - 1))
    return out


def reconcile(billing: Billing, conn: Connection, *, user_id: str | None = None, periods: int = 3) -> ReconcileResult:
    """Compare the last ``periods`` billing periods of each customer in Stripe (or one)."""
    if periods < 1:
        raise ValidationError(f"periods must be at least 1, not {periods}")
    ctx = billing.ctx
    if user_id is not None:
        ctx.require_subscription(user_id)
        if not billing.customers.get(user_id).stripe_customer_id:
            raise NotFoundError(f"customer {user_id!r} is not in Stripe: nothing to reconcile")
        users = [user_id]
    else:
        users = [r[0] for r in billing.ledger.all(
            "SELECT c.user_id FROM customers c JOIN subscriptions s ON s.user_id = c.user_id AND s.status = 'active' "
            "WHERE c.stripe_customer_id IS NOT NULL ORDER BY c.user_id"
        )]
    result = ReconcileResult()
    summaries = conn.client.v1.billing.meters.event_summaries
    limiter = RateLimiter(default_rate(conn))
    for uid in users:
        sub = ctx.subscription(uid)
        customer = billing.customers.get(uid).stripe_customer_id
        now = ctx.now_for(uid)
        for feature in _features(billing, sub, uid):
            meter = mapping.get(billing.ledger, mapping.meter_key(feature))
            for start, end in _periods(sub, now, periods):
                # no event can be later than now + 5 minutes: don't ask Stripe about the future
                lo, hi = minute_window(start, min(end, now + MAX_AHEAD))
                ledger, pending, recent = ledger_delivered(billing, uid, feature, lo, hi)
                limiter.wait()
                with stripe_errors(f"meter event summaries of {uid} ({feature})"):
                    page = summaries.list(meter, params={"customer": customer, "start_time": lo, "end_time": hi})
                    stripe_total = sum(s.aggregated_value for s in page.auto_paging_iter())
                result.lines.append(Line(uid, feature, start, end, lo, hi, ledger, round(stripe_total), pending, recent))
    return result
