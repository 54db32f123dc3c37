"""Customers and subscriptions on both sides: the ledger first, then Stripe, then the ledger
mirrors what Stripe made (ids, billing cycle anchor, current period)."""

from __future__ import annotations

from dataclasses import dataclass

from ..billing import Billing
from ..context import Subscription
from ..customers import Customer
from ..errors import NotFoundError, UsagebillError
from . import mapping
from .client import Connection, stripe_errors


@dataclass(frozen=True)
class CustomerView:
    """A customer as the ledger and Stripe see it."""

    customer: Customer
    subscription: Subscription | None
    stripe: dict | None  # the Stripe customer's id, email, test clock, or None when not in Stripe


def add_customer(
    billing: Billing,
    conn: Connection,
    user_id: str,
    *,
    email: str | None = None,
    test_clock: str | None = None,
    stripe_id: str | None = None,
) -> Customer:
    """Add the customer to the ledger, then create it in Stripe (or link an existing Stripe
    customer with ``stripe_id``). Safe to repeat: a second run finds what the first made."""
    with stripe_errors(f"customer {user_id}"):
        if test_clock:
            if conn.is_live:
                raise UsagebillError("test clocks exist only in test mode and the sandbox, not live mode")
            clock = conn.client.v1.test_helpers.test_clocks.retrieve(test_clock)
            billing.customers.set_clock_time(clock.id, clock.frozen_time, clock.name)
        local = billing.customers.add(user_id, email=email, test_clock=test_clock, stripe_customer_id=stripe_id)
        if stripe_id:
            remote = conn.client.v1.customers.retrieve(stripe_id)
            if test_clock and remote.test_clock != test_clock:
                raise UsagebillError(f"Stripe customer {stripe_id} is not on test clock {test_clock}")
            return billing.customers.get(user_id)
        if local.stripe_customer_id:
            return local
        params: dict = {"metadata": {"usagebill_user_id": user_id}, "name": user_id}
        if email:
            params["email"] = email
        if test_clock:
            params["test_clock"] = test_clock
        # the key ties a retry (after a crash before the link below) to the same customer
        key = f"usagebill-customer-{user_id}-{local.created_at}"
        remote = conn.client.v1.customers.create(params=params, options={"idempotency_key": key})
        billing.customers.link_stripe(user_id, remote.id)
    return billing.customers.get(user_id)


def subscribe(
    billing: Billing,
    conn: Connection,
    user_id: str,
    plan_name: str,
    interval: str | None = None,
    currency: str | None = None,
    *,
    days_until_due: int = 30,
) -> Subscription:
    """Subscribe in Stripe (the plan's base price and one metered price per usage feature),
    then mirror the subscription, its anchor and current period into the ledger. A customer
    with a default payment method is charged automatically; one without is sent invoices,
    due ``days_until_due`` days after they are finalized."""
    plan = billing.config.plan(plan_name)
    price = plan.price_for(interval, currency)
    customer = billing.customers.get(user_id)
    current = billing.subscriptions.get(user_id)
    if current is not None and current.stripe_subscription_id:
        # same plan: nothing to do; another plan: the ledger explains
        return billing.subscriptions.start(user_id, plan.name, price.interval, price.currency)
    if not customer.stripe_customer_id:
        raise NotFoundError(f"customer {user_id!r} is not in Stripe yet: run usagebill customers add {user_id}")
    keys = [mapping.plan_price_key(plan.key, price.currency, price.interval)] + [
        mapping.usage_price_key(plan.key, k, price.currency, price.interval)
        for k, f in plan.features.items()
        if f.track_usage
    ]
    items = []
    for key in keys:
        price_id = mapping.get(billing.ledger, key)
        if price_id is None:
            raise NotFoundError(f"plan {plan.name!r} is not in Stripe yet ({key}): run usagebill sync")
        items.append({"price": price_id})
    with stripe_errors(f"subscribe {user_id}"):
        subs = conn.client.v1.subscriptions
        found = [
            s
            for s in subs.list(params={"customer": customer.stripe_customer_id, "limit": 100}).auto_paging_iter()
            if s.status in ("active", "trialing", "past_due") and (s.metadata.to_dict().get("usagebill_plan") == plan.key)
        ]
        if found:
            remote = found[0]  # made by an earlier run that stopped before the ledger write
        else:
            params = {
                "customer": customer.stripe_customer_id,
                "items": items,
                "metadata": {"usagebill_user_id": user_id, "usagebill_plan": plan.key},
            }
            remote_customer = conn.client.v1.customers.retrieve(customer.stripe_customer_id)
            settings = remote_customer.invoice_settings
            if settings is None or not settings.default_payment_method:
                # Without a card, Stripe leaves a charge_automatically subscription
                # "incomplete" and expires it after 23 hours: bill by invoice instead.
                params.update(collection_method="send_invoice", days_until_due=days_until_due)
            remote = subs.create(
                params=params,
                # stable across retries of this attempt (a crash before the ledger write), new
                # for the next subscription (after a cancel): counts the ledger's subscriptions
                options={"idempotency_key": f"usagebill-subscribe-{user_id}-{customer.created_at}-{_attempt(billing, user_id)}"},
            )
        item = remote["items"].data[0]
        period = (item.current_period_start, item.current_period_end)
        sub = billing.subscriptions.start(
            user_id,
            plan.name,
            price.interval,
            price.currency,
            anchor=remote.billing_cycle_anchor,
            stripe_subscription_id=remote.id,
            period=period,
        )
        if sub.stripe_subscription_id != remote.id:  # subscribed in the ledger alone before
            billing.subscriptions.set_period(user_id, *period, stripe_subscription_id=remote.id)
            sub = billing.subscriptions.get(user_id)
        return sub


def _attempt(billing: Billing, user_id: str) -> int:
    return billing.ledger.one("SELECT COUNT(*) FROM subscriptions WHERE user_id = ?", (user_id,))[0]


def refresh_periods(billing: Billing, conn: Connection, user_ids: list[str]) -> None:
    """Mirror Stripe's current periods into the ledger (after a test clock advance, say);
    the credit renewals of a new period then happen on the next read, once."""
    with stripe_errors("refresh subscriptions"):
        for user_id in user_ids:
            sub = billing.subscriptions.get(user_id)
            if sub is None or not sub.stripe_subscription_id:
                continue
            remote = conn.client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
            item = remote["items"].data[0]
            billing.subscriptions.set_period(user_id, item.current_period_start, item.current_period_end)


def show_customer(billing: Billing, conn: Connection, user_id: str) -> CustomerView:
    customer = billing.customers.get(user_id)
    remote = None
    if customer.stripe_customer_id:
        with stripe_errors(f"customer {user_id}"):
            c = conn.client.v1.customers.retrieve(customer.stripe_customer_id)
            remote = {"id": c.id, "email": c.email, "test_clock": c.test_clock}
    return CustomerView(customer, billing.subscriptions.get(user_id), remote)


def cancel(billing: Billing, conn: Connection, user_id: str, *, invoice_now: bool = True) -> Subscription:
    """Cancel the customer's subscription now: first deliver its pending usage, then cancel
    in Stripe (``invoice_now``: a last invoice bills the usage of the unfinished period),
    then in the ledger. Credits and the wallet are kept; recording usage is refused after."""
    from ..closing import check_cancel
    from .delivery import push

    sub = billing.ctx.require_subscription(user_id)
    check_cancel(billing.ledger, sub, billing.ctx.now_for(user_id))
    if sub.stripe_subscription_id:
        pushed = push(billing, conn, user_id=user_id)
        if pushed.error or pushed.still_pending:
            raise UsagebillError(
                f"{pushed.still_pending} usage event(s) of {user_id!r} could not be delivered "
                f"({pushed.error or 'see usagebill status'}); nothing was cancelled: deliver them first"
            )
        with stripe_errors(f"cancel {user_id}"):
            remote = conn.client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
            if remote.status not in ("canceled", "incomplete_expired"):
                conn.client.v1.subscriptions.cancel(
                    sub.stripe_subscription_id, params={"invoice_now": invoice_now, "prorate": False}
                )
        from .invoices import mirror_period_invoices

        mirror_period_invoices(billing, conn, sub)  # the final invoice closes the last period
    return billing.subscriptions.cancel(user_id)
