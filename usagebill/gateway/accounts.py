"""Customers and subscriptions on both sides: the ledger first, then Stripe, then the ledger
mirrors what Stripe made (ids, billing cycle anchor, current period). What only Stripe can
confirm (a Stripe customer or test clock the user names) is read before the ledger is
written, so a failed Stripe call leaves the ledger as it was."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .. import billed_prices
from ..billing import Billing
from ..context import Subscription
from ..customers import Customer
from ..errors import NotFoundError, UsagebillError
from ..ledger import accounts
from ..rules import check_email
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
    """Add the customer to the ledger and create it in Stripe, or link an existing Stripe
    customer with ``stripe_id``. Safe to repeat: a second run finds what the first made.
    A failed Stripe call leaves the ledger as it was: what Stripe must confirm (the test
    clock, the customer to link) is read before the ledger is written, and a customer this
    call added is taken out again when Stripe refuses to create it."""
    if test_clock and conn.is_live:
        raise UsagebillError("test clocks exist only in test mode and the sandbox, not live mode")
    existing = billing.customers.find(user_id)
    if existing is not None and existing.stripe_customer_id:
        # done before: same details returned, others refused, before any Stripe call
        return billing.customers.add(user_id, email=email, test_clock=test_clock, stripe_customer_id=stripe_id)
    with stripe_errors(f"customer {user_id}", typed_ids=(test_clock, stripe_id)):
        clock = conn.client.v1.test_helpers.test_clocks.retrieve(test_clock) if test_clock else None
        if stripe_id:
            _check_linkable(conn, stripe_id, test_clock or (existing.test_clock if existing else None))
    if clock is not None:
        billing.customers.set_clock_time(clock.id, clock.frozen_time, clock.name)
    if existing is not None and stripe_id:  # in the ledger, not in Stripe yet: link it
        billing.customers.add(user_id, email=email, test_clock=test_clock)
        billing.customers.link_stripe(user_id, stripe_id)
        return billing.customers.get(user_id)
    local = billing.customers.add(user_id, email=email, test_clock=test_clock, stripe_customer_id=stripe_id)
    if local.stripe_customer_id:
        return local
    params: dict = {"metadata": {"usagebill_user_id": user_id}, "name": user_id}
    if email:
        params["email"] = email
    if test_clock:
        params["test_clock"] = test_clock
    # the key ties a retry (after a crash before the link below) to the same customer
    key = f"usagebill-customer-{user_id}-{local.created_at}"
    try:
        with stripe_errors(f"customer {user_id}"):
            remote = conn.client.v1.customers.create(params=params, options={"idempotency_key": key})
    except UsagebillError:
        if local.created:
            billing.customers.forget_new(user_id)
        raise
    billing.customers.link_stripe(user_id, remote.id)
    return billing.customers.get(user_id)


def _check_linkable(conn: Connection, stripe_id: str, test_clock: str | None):
    """The Stripe customer a ``--stripe-id`` names: it must exist, not be deleted, and be on
    the test clock the ledger says (or on none)."""
    remote = conn.client.v1.customers.retrieve(stripe_id)
    if getattr(remote, "deleted", False):
        raise NotFoundError(f"Stripe customer {stripe_id} is deleted: it cannot be linked")
    have = remote.test_clock if isinstance(remote.test_clock, str) or remote.test_clock is None else remote.test_clock.id
    if have != test_clock:
        where = f"on test clock {have}" if have else "on no test clock"
        raise UsagebillError(
            f"Stripe customer {stripe_id} is {where}, not {f'on {test_clock}' if test_clock else 'on none'}"
        )
    return remote


def update_customer(
    billing: Billing, conn: Connection, user_id: str, *, email: str | None = None, stripe_id: str | None = None
) -> Customer:
    """Change a customer's e-mail (in Stripe, then the ledger) or the Stripe customer it is
    linked to (checked in Stripe first: it must exist and be on the customer's test clock).
    Relinking is refused while the customer has an active subscription or undelivered usage:
    both belong to the Stripe customer it has now. A failed Stripe call changes nothing."""
    check_email(email)
    customer = billing.customers.get(user_id)
    relink = stripe_id is not None and stripe_id != customer.stripe_customer_id
    if relink:
        sub = billing.subscriptions.get(user_id)
        pending = billing.customers.pending_usage(user_id)
        if sub is not None or pending:
            what = f"an active {sub.plan_name!r} subscription" if sub is not None else f"{pending} undelivered usage event(s)"
            raise UsagebillError(
                f"customer {user_id!r} has {what} on Stripe customer {customer.stripe_customer_id}: "
                "cancel or deliver first, then change its Stripe id"
            )
    target = stripe_id or customer.stripe_customer_id
    with stripe_errors(f"customer {user_id}", typed_ids=(stripe_id,)):
        if relink:
            _check_linkable(conn, stripe_id, customer.test_clock)
        if email is not None and target:
            conn.client.v1.customers.update(target, params={"email": email})
    return billing.customers.update(user_id, email=email, stripe_customer_id=stripe_id if relink else None)


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
    if customer.removed_at is not None:
        raise UsagebillError(f"customer {user_id!r} was removed: it cannot be subscribed again")
    # Stripe's idempotency key numbers this customer's subscriptions as the ledger counted
    # them before this call looked for a live one: racing calls that all found none share a
    # key, so Stripe makes one subscription for them (counted later, a racer that read "none"
    # before another's ledger write would count it and make a second one). Counted before
    # ``current`` is read: a subscription written between the two reads is then seen as live.
    attempt = _attempt(billing, user_id)
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
            # what the ledger would refuse after Stripe bills it, refused before Stripe is asked
            billing.subscriptions.rehearse(user_id, plan.name, price.interval, price.currency)
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
                # for the next subscription (after a cancel)
                options={"idempotency_key": f"usagebill-subscribe-{user_id}-{customer.created_at}-{attempt}"},
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
        billed_prices.record(billing.ledger, sub, usage_prices(remote["items"].data), remote.start_date)
        return sub


def usage_prices(items) -> dict[str, Decimal]:
    """feature -> unit price of a Stripe subscription's metered items (by the usagebill key
    their prices carry in their metadata)."""
    out = {}
    for item in items:
        key = mapping.key_of(item.price) or ""
        if key.startswith("price:usage:"):
            out[key.split(":")[3]] = Decimal(item.price.unit_amount_decimal)
    return out


def deliver_first(billing: Billing, conn: Connection, user_id: str, otherwise: str) -> None:
    """Deliver the customer's pending usage before a change that Stripe bills from what its
    meter holds at that moment (a cancel, a price change); refuse the change when it cannot."""
    from .delivery import push

    pushed = push(billing, conn, user_id=user_id)
    if pushed.error or pushed.still_pending:
        raise UsagebillError(
            f"{pushed.still_pending} usage event(s) of {user_id!r} could not be delivered "
            f"({pushed.error or 'see usagebill status'}); {otherwise}: deliver them first"
        )


def _attempt(billing: Billing, user_id: str) -> int:
    return accounts.count_subscriptions(billing.ledger, user_id)


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

    sub = billing.subscriptions.require(user_id)
    check_cancel(billing.ledger, sub, billing.now_for(user_id))
    if sub.stripe_subscription_id:
        deliver_first(billing, conn, user_id, "nothing was cancelled")
        with stripe_errors(f"cancel {user_id}"):
            remote = conn.client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
            if remote.status not in ("canceled", "incomplete_expired"):
                conn.client.v1.subscriptions.cancel(
                    sub.stripe_subscription_id, params={"invoice_now": invoice_now, "prorate": False}
                )
        from .invoices import mirror_period_invoices

        mirror_period_invoices(billing, conn, sub)  # the final invoice closes the last period
    return billing.subscriptions.cancel(user_id)
