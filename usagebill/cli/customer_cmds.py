"""customers and subscribe: both sides, the ledger and Stripe (or the sandbox)."""

from __future__ import annotations

import click

from ..money import format_money
from ..timeparse import iso
from .app import cli, json_option, pass_state
from .output import Column, created, emit_json, table, value


@cli.group("customers")
def customers_group() -> None:
    """Add, update, remove, list and show customers (in the ledger and in Stripe).

    \b
    Example:
      usagebill customers add alice --email alice@example.com
      usagebill customers list --json
    """


def _customer_json(c, sub, remote=None):
    data = {
        "user_id": c.user_id,
        "email": c.email,
        "stripe_customer_id": c.stripe_customer_id,
        "test_clock": c.test_clock,
        "created_at": iso(c.created_at),
        "subscription": None
        if sub is None
        else {
            "plan": sub.plan_name,
            "interval": sub.interval,
            "currency": sub.currency,
            "anchor": iso(sub.anchor),
            "stripe_subscription_id": sub.stripe_subscription_id,
        },
    }
    if remote is not None:
        data["stripe"] = remote
    return data


@customers_group.command("add")
@click.argument("user_id")
@click.option("--email", help="The customer's e-mail address.")
@click.option("--test-clock", "test_clock", metavar="CLOCK", help="Attach the customer to a Stripe test clock.")
@click.option("--stripe-id", "stripe_id", metavar="CUS", help="Link an existing Stripe customer instead of creating one.")
@json_option
@pass_state
def customers_add(state, user_id, email, test_clock, stripe_id, as_json) -> None:
    """Add a customer to the ledger and to Stripe (repeating it is harmless).

    \b
    Example:
      usagebill customers add alice --email alice@example.com
      usagebill customers add bob --test-clock clock_1Nx...
    """
    from ..gateway.accounts import add_customer

    b = state.billing
    _say_customer(b, add_customer(b, state.connection, user_id, email=email, test_clock=test_clock, stripe_id=stripe_id),
                  as_json)


def _say_customer(b, c, as_json: bool) -> None:
    if as_json:
        emit_json(_customer_json(c, b.subscriptions.get(c.user_id)))
        return
    extra = "".join(f", {what} {value}" for what, value in (("e-mail", c.email), ("on test clock", c.test_clock)) if value)
    created(c.stripe_customer_id, f"Customer {c.user_id} is {c.stripe_customer_id} in Stripe{extra}")


@customers_group.command("update")
@click.argument("user_id")
@click.option("--email", help="The customer's new e-mail address (in Stripe too).")
@click.option("--stripe-id", "stripe_id", metavar="CUS",
              help="Link another existing Stripe customer (not while a subscription or undelivered usage is on the old one).")
@json_option
@pass_state
def customers_update(state, user_id, email, stripe_id, as_json) -> None:
    """Change a customer's e-mail or the Stripe customer it is linked to; Stripe is changed
    first, so a failed call changes nothing.

    \b
    Example:
      usagebill customers update alice --email alice@example.org
      usagebill customers update ghost --stripe-id cus_1Nx...
    """
    from ..gateway.accounts import update_customer

    if email is None and stripe_id is None:
        raise click.UsageError("nothing to update: give --email or --stripe-id")
    b = state.billing
    _say_customer(b, update_customer(b, state.connection, user_id, email=email, stripe_id=stripe_id), as_json)


@customers_group.command("remove")
@click.argument("user_id")
@json_option
@pass_state
def customers_remove(state, user_id, as_json) -> None:
    """Remove a customer (refused while it has an active subscription or undelivered usage).
    A customer without history is deleted; one with history is retired: its usage, credits,
    wallet and subscriptions stay in the ledger, its user id cannot be added again, and the
    Stripe customer and its invoices are left as they are.

    \b
    Example:
      usagebill customers remove ghost
    """
    r = state.billing.customers.remove(user_id)
    if as_json:
        emit_json({"user_id": r.user_id, "removed": "deleted" if r.deleted else "retired", "history": r.history})
    elif r.deleted:
        say(f"Removed customer {user_id} (it had no history)")
    else:
        kept = ", ".join(f"{n} {table.replace('_', ' ')} row(s)" for table, n in r.history.items() if n)
        say(f"Retired customer {user_id}: the ledger keeps its history ({kept}); Stripe is left as it is")


@customers_group.command("list")
@json_option
@pass_state
def customers_list(state, as_json: bool) -> None:
    """List customers with their plans and Stripe ids (from the ledger).

    \b
    Example:
      usagebill customers list --json
    """
    b = state.billing
    items = [(c, b.subscriptions.active(c.user_id)) for c in b.customers.list()]
    if as_json:
        emit_json([_customer_json(c, s) for c, s in items])
        return
    table(None, [Column("customer", "user_id"), Column("email", drop=2), Column("plan"),
                 Column("stripe customer", "stripe_customer_id", drop=1, whole=True),
                 Column("stripe subscription", "stripe_subscription_id", drop=3, whole=True)], [
        [c.user_id, c.email, s.plan_name if s else "-", c.stripe_customer_id, s.stripe_subscription_id if s else None]
        for c, s in items
    ])


@customers_group.command("show")
@click.argument("user_id")
@json_option
@pass_state
def customers_show(state, user_id: str, as_json: bool) -> None:
    """Show one customer as the ledger and Stripe see it, with its current period.

    \b
    Example:
      usagebill customers show alice
    """
    from ..gateway.accounts import show_customer

    b = state.billing
    view = show_customer(b, state.connection, user_id)
    data = _customer_json(view.customer, view.subscription, view.stripe)
    if as_json:
        emit_json(data)
        return
    rows = [[k, v] for k, v in data.items() if k not in ("subscription", "stripe")]
    sub = view.subscription
    if sub is not None:
        start, end = sub.period(b.now_for(user_id))
        rows += [["plan", f"{sub.plan_name} ({sub.interval}, {sub.currency})"], ["period", f"{iso(start)} .. {iso(end)}"],
                 ["stripe_subscription_id", sub.stripe_subscription_id]]
    rows.append(["in_stripe", bool(view.stripe)])
    if view.stripe and view.stripe.get("email") != view.customer.email:
        rows.append(["stripe_email", view.stripe.get("email")])
    table(None, ["field", "value"], rows)  # piped: field<TAB>value lines


@cli.command("subscribe")
@click.argument("user_id")
@click.argument("plan")
@click.option("--interval", type=click.Choice(["week", "month", "year"]), help="Billing interval, when the plan has several.")
@click.option("--currency", help="Currency, when the plan has prices in several.")
@click.option("--days-until-due", type=click.IntRange(1, 365), default=30, show_default=True,
              help="For customers without a payment method: invoices are sent, due this many days later.")
@json_option
@pass_state
def subscribe(state, user_id, plan, interval, currency, days_until_due, as_json) -> None:
    """Subscribe a customer to a plan in Stripe (base price and one metered price per usage
    feature) and grant the plan's included credits.

    \b
    Example:
      usagebill subscribe alice Pro --interval month
    """
    from ..gateway.accounts import subscribe as do_subscribe

    b = state.billing
    sub = do_subscribe(b, state.connection, user_id, plan, interval, currency, days_until_due=days_until_due)
    start, end = sub.period(b.now_for(user_id))
    if as_json:
        emit_json({
            "user_id": user_id, "plan": sub.plan.name, "interval": sub.interval, "currency": sub.currency,
            "period_start": iso(start), "period_end": iso(end), "stripe_subscription_id": sub.stripe_subscription_id,
        })
    else:
        created(sub.stripe_subscription_id,
                f"{user_id} is on {sub.plan.name} ({format_money(sub.price.amount, sub.currency)}/{sub.interval}), "
                f"{sub.stripe_subscription_id}; period {iso(start)} .. {iso(end)}")


@cli.command("cancel")
@click.argument("user_id")
@click.option("--no-invoice", is_flag=True, help="Do not invoice the usage of the unfinished period now.")
@json_option
@pass_state
def cancel(state, user_id, no_invoice, as_json) -> None:
    """Cancel a customer's subscription now, after delivering its pending usage; a last
    invoice bills the usage of the unfinished period (unless --no-invoice).

    \b
    Example:
      usagebill cancel alice
    """
    from ..gateway.accounts import cancel as do_cancel

    sub = do_cancel(state.billing, state.connection, user_id, invoice_now=not no_invoice)
    if as_json:
        emit_json({"user_id": user_id, "plan": sub.plan_name, "status": "canceled",
                   "stripe_subscription_id": sub.stripe_subscription_id})
    else:
        value(sub.stripe_subscription_id, f"Cancelled {user_id}'s {sub.plan_name} subscription ({sub.stripe_subscription_id})")
