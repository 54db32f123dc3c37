"""Commands over the core: config check, record, summary, charge."""

from __future__ import annotations

import click

from ..money import format_money, format_unit_price
from ..timeparse import iso
from .app import cli, id_option, json_option, pass_state
from .delivery_cmds import finish
from .numbers import NUMBERS
from .output import emit_json, jsonable, say, table


@cli.group("config")
def config_group() -> None:
    """Inspect billing.toml.

    \b
    Example:
      usagebill config check --json
    """


@config_group.command("check")
@json_option
@pass_state
def config_check(state, as_json: bool) -> None:
    """Validate billing.toml and show its plans and features. With a ledger, also refuse a
    config that drops a plan, price or usage feature that active subscriptions still use.

    \b
    Example:
      usagebill --config billing.toml config check
    """
    from ..live_plans import check_config_file

    config = state.config
    check_config_file(config, state.db_path)
    if as_json:
        emit_json(
            {
                "path": str(config.path),
                "plans": [
                    {
                        "name": p.name,
                        "key": p.key,
                        "prices": p.prices,
                        "wallet": p.wallet,
                        "features": list(p.features.values()),
                    }
                    for p in config.plans
                ],
            }
        )
        return
    rows = []
    for p in config.plans:
        prices = ", ".join(f"{format_money(x.amount, x.currency)}/{x.interval}" for x in p.prices)
        wallet = f"wallet {p.wallet.allocation} ({p.wallet.on_renewal})" if p.wallet else ""
        rows.append([p.name, prices, "", "", "", wallet])
        currency = p.prices[0].currency
        for f in p.features.values():
            price = format_unit_price(f.price_per_credit, currency) if f.price_per_credit is not None else ""
            how = "usage" if f.track_usage else "credits"
            credits = f"{f.credits.allocation} ({f.credits.on_renewal})" if f.credits else ""
            extra = f"auto top-up {f.auto_top_up.amount} below {f.auto_top_up.threshold}" if f.auto_top_up else ""
            rows.append(["", f"  {f.key}", f.display_name, f"{price} {how}".strip(), credits, extra])
    table(f"{config.path}: OK", ["plan", "price / feature", "display name", "per unit", "credits", "notes"], rows)


# -- usage ---------------------------------------------------------------------------------

def no_push_option(fn):
    return click.option(
        "--no-push", is_flag=True,
        help="Only write the ledger (fast, no Stripe call); usagebill push delivers it later.",
    )(fn)


@cli.command("record", context_settings=NUMBERS)
@click.argument("user_id")
@click.argument("key")
@click.argument("amount", default="1")
@click.option("--at", metavar="TIME", help="When it happened: ISO 8601 or Unix seconds [default: now].")
@id_option
@no_push_option
@json_option
@pass_state
def record(state, user_id, key, amount, at, idempotency_key, no_push, as_json) -> None:
    """Record usage of a feature (post-paid, billed at the end of the period), then deliver it
    to Stripe.

    Exits 4 when the event is recorded but could not be delivered: it stays pending and
    usagebill push delivers it later (don't record it again; --id makes that harmless too).

    \b
    Example:
      usagebill record alice api_calls 150 --id import-2026-01-15-alice
      usagebill record alice api_calls 1 --no-push
    """
    event = state.billing.usage.record(user_id, key, amount, at=at, idempotency_key=idempotency_key, push=not no_push)
    delivery = event.delivery
    if as_json:
        emit_json({**_event_json(event), "delivery": delivery.json()})
    else:
        what = "Already recorded" if event.replayed else "Recorded"
        sent = {"delivered": ", delivered to Stripe", "failed": ", refused by Stripe",
                "invoiced": ", billed late on the next invoice"}.get(delivery.status, "")
        say(f"{what} {event.amount} {event.key} for {event.user_id} at {iso(event.timestamp)} ({event.id}){sent}")
    finish(delivery)


def _event_json(e):
    return {
        "id": e.id, "user_id": e.user_id, "key": e.key, "amount": e.amount, "timestamp": iso(e.timestamp),
        "idempotency_key": e.idempotency_key, "replayed": e.replayed,
    }


@cli.command("summary")
@click.argument("user_id")
@click.option("--key", help="One feature [default: every usage feature of the plan].")
@json_option
@pass_state
def summary(state, user_id, key, as_json) -> None:
    """Usage so far this period and what it will cost, from the ledger.

    \b
    Example:
      usagebill summary alice --key api_calls --json
    """
    b = state.billing
    items = [b.usage.get_summary(user_id, key)] if key else b.usage.get_summaries(user_id)
    if as_json:
        data = [
            {
                "user_id": s.user_id, "key": s.key, "display_name": s.display_name, "total_amount": s.total_amount,
                "estimated_cost": s.estimated_cost, "currency": s.currency, "unit_price": str(s.unit_price),
                "period_start": iso(s.period_start), "period_end": iso(s.period_end), "events": s.events,
                "formatted_cost": format_money(s.estimated_cost, s.currency),
            }
            for s in items
        ]
        emit_json(data[0] if key else data)
        return
    if not items:
        say(f"{user_id}'s plan has no usage features")
        return
    s0 = items[0]
    table(
        f"{user_id}: {iso(s0.period_start)} .. {iso(s0.period_end)}",
        ["feature", "used", "unit price", "estimated cost"],
        [[s.display_name, f"{s.total_amount:,}", format_unit_price(s.unit_price, s.currency),
          format_money(s.estimated_cost, s.currency)] for s in items],
        right=["used", "unit price", "estimated cost"],
    )


@cli.command("charge", context_settings=NUMBERS)
@click.argument("user_id")
@click.argument("key")
@click.argument("units")
@id_option
@no_push_option
@json_option
@pass_state
def charge(state, user_id, key, units, idempotency_key, no_push, as_json) -> None:
    """Charge units of a feature: credits first, then the wallet, the rest as usage (delivered
    to Stripe at once, like record).

    Exits 3 (and takes nothing) when a feature without usage tracking cannot be covered; 4
    when the charge is done but its usage could not be delivered (usagebill push will).

    \b
    Example:
      usagebill charge alice exports 3 --id export-8812
    """
    r = state.billing.charge(user_id, key, units, idempotency_key=idempotency_key, push=not no_push)
    delivery = r.delivery
    if as_json:
        emit_json({**jsonable(r), "delivery": delivery and delivery.json()})
    else:
        say(f"{r.units} {key} for {user_id}: {r.from_credits} from credits, {r.from_wallet} from the wallet "
            f"({format_money(r.wallet_debit, r.currency)}), {r.as_usage} as usage")
    if delivery is not None:
        finish(delivery)
