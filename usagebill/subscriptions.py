"""Subscriptions in the ledger: which plan a customer is on, at what interval and currency,
and from which billing cycle anchor its periods are computed."""

from __future__ import annotations

from .context import Context, Subscription
from .errors import ValidationError
from .idempotency import remember, replay
from .ledger import accounts
from .renewals import refresh
from .rules import check_key
from .wallet import check_currency


class _Rehearsal(Exception):
    """Rolls a rehearsed start back."""


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
        with ctx.ledger.transaction(user_id):
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
            check_currency(ctx, user_id, price.currency)
            now = ctx.now_for(user_id)
            anchor = now if anchor is None else int(anchor)
            new_id = accounts.insert_subscription(
                ctx.ledger, user_id, p.key, price.interval, price.currency, anchor, now, stripe_subscription_id, period
            )
            remember(ctx.ledger, user_id, idempotency_key, "subscribe", request, {"id": new_id}, now)
            refresh(ctx, user_id)
            return ctx.subscription(user_id)

    def rehearse(self, user_id: str, plan: str, interval: str | None = None, currency: str | None = None) -> None:
        """Run ``start`` and roll it back: whatever the ledger would refuse once Stripe has made
        the subscription (another plan active, a wallet in another currency, an allocation
        that does not fit) is refused now, before Stripe is asked."""
        try:
            with self.ctx.ledger.transaction(user_id):
                self.start(user_id, plan, interval, currency)
                raise _Rehearsal
        except _Rehearsal:
            pass

    def all_of(self, user_id: str) -> list[Subscription]:
        """Every subscription the customer has had, the cancelled ones too, oldest first."""
        from .ledger import closing as ledger_closing

        return [self.ctx.subscription_from_row(r) for r in ledger_closing.subscriptions_of(self.ctx.ledger, user_id)]

    def all_of_many(self, user_ids: list[str]) -> dict[str, list[Subscription]]:
        """``all_of`` for many customers at once, in a few statements (not a few per customer)."""
        from .ledger import reconcile_reads

        rows, priced = reconcile_reads.subscriptions(self.ctx.ledger, user_ids)
        found: dict[str, list[Subscription]] = {u: [] for u in user_ids}
        for r in rows:
            found[r["user_id"]].append(self.ctx.subscription_of(
                r, closed_until=r["closed_until"], closed_invoice=r["closed_invoice"], before=r["before_end"],
                priced_since=priced.get(r["id"], {})))
        return found

    def get(self, user_id: str) -> Subscription | None:
        self.ctx.customer(user_id)
        return self.ctx.subscription(user_id)

    def active(self, user_id: str) -> Subscription | None:
        """The active subscription, or None (without checking that the customer exists)."""
        return self.ctx.subscription(user_id)

    def require(self, user_id: str) -> Subscription:
        """The active subscription; NotFoundError naming what to do when there is none."""
        return self.ctx.require_subscription(user_id)

    def cancel(self, user_id: str) -> Subscription:
        ctx = self.ctx
        with ctx.ledger.transaction(user_id):
            sub = ctx.require_subscription(user_id)
            accounts.cancel_subscription(ctx.ledger, sub.id, ctx.now_for(user_id))
        return sub

    def set_period(self, user_id: str, start: int, end: int, stripe_subscription_id: str | None = None) -> None:
        """Mirror Stripe's current period (e.g. after a test clock advance)."""
        with self.ctx.ledger.transaction(user_id):
            sub = self.ctx.require_subscription(user_id)
            accounts.set_subscription_period(self.ctx.ledger, sub.id, start, end, stripe_subscription_id)
