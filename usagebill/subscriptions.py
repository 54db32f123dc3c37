"""Subscriptions in the ledger: which plan a customer is on, at what interval and currency,
and from which billing cycle anchor its periods are computed."""

from __future__ import annotations

from .context import Context, Subscription
from .errors import ValidationError
from .idempotency import check_key, remember, replay
from .renewals import refresh


class Subscriptions:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def start(
        self,
        user_id: str,
        plan: str,
        interval: str | None = None,
        currency: str | None = None,
        *,
        anchor: int | None = None,
        stripe_subscription_id: str | None = None,
        period: tuple[int, int] | None = None,
        idempotency_key: str | None = None,
    ) -> Subscription:
        """Subscribe a customer to a plan (and grant the plan's allocations for the first
        period). Subscribing again to the same plan, interval and currency returns the active
        subscription; a different plan while one is active is an error."""
        ctx = self.ctx
        check_key(idempotency_key)
        p = ctx.config.plan(plan)
        price = p.price_for(interval, currency)
        request = {"plan": p.key, "interval": price.interval, "currency": price.currency}
        with ctx.ledger.transaction():
            ctx.customer(user_id)
            done = replay(ctx.ledger, user_id, idempotency_key, "subscribe", request)
            current = ctx.subscription(user_id)
            if done is not None and current is not None and current.id == done["id"]:
                return current
            if current is not None:
                if (current.plan.key, current.interval, current.currency) == (p.key, price.interval, price.currency):
                    return current
                raise ValidationError(
                    f"customer {user_id!r} is already subscribed to {current.plan.name!r} "
                    f"({current.interval}); cancel that subscription first"
                )
            now = ctx.now_for(user_id)
            anchor = now if anchor is None else int(anchor)
            cur = ctx.ledger.conn.execute(
                "INSERT INTO subscriptions (user_id, plan, interval, currency, anchor, status, created_at, "
                "stripe_subscription_id, period_start, period_end) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)",
                (
                    user_id, p.key, price.interval, price.currency, anchor, now, stripe_subscription_id,
                    period[0] if period else None, period[1] if period else None,
                ),
            )
            remember(ctx.ledger, user_id, idempotency_key, "subscribe", request, {"id": cur.lastrowid}, now)
            refresh(ctx, user_id)
            return ctx.subscription(user_id)

    def get(self, user_id: str) -> Subscription | None:
        self.ctx.customer(user_id)
        return self.ctx.subscription(user_id)

    def cancel(self, user_id: str) -> Subscription:
        ctx = self.ctx
        with ctx.ledger.transaction():
            sub = ctx.require_subscription(user_id)
            ctx.ledger.conn.execute(
                "UPDATE subscriptions SET status = 'canceled', canceled_at = ? WHERE id = ?",
                (ctx.now_for(user_id), sub.id),
            )
        return sub

    def set_period(self, user_id: str, start: int, end: int, stripe_subscription_id: str | None = None) -> None:
        """Mirror Stripe's current period (e.g. after a test clock advance)."""
        with self.ctx.ledger.transaction():
            sub = self.ctx.require_subscription(user_id)
            self.ctx.ledger.conn.execute(
                "UPDATE subscriptions SET period_start = ?, period_end = ?, "
                "stripe_subscription_id = COALESCE(?, stripe_subscription_id) WHERE id = ?",
                (int(start), int(end), stripe_subscription_id, sub.id),
            )
