"""sync: billing.toml -> Stripe Products, Prices and Meters."""

from __future__ import annotations

import click

from .app import cli, json_option, pass_state
from .output import emit_json, say, table


@cli.command("sync")
@click.option("--dry-run", is_flag=True, help="Show what would be created, updated or archived; change nothing.")
@json_option
@pass_state
def sync(state, dry_run: bool, as_json: bool) -> None:
    """Create or update the Stripe Products, Prices and Billing Meters of billing.toml, then
    bring the live subscriptions in line with it.

    Safe to repeat: an unchanged config makes no change. A changed amount makes a new price
    that takes over the lookup key; plans and features removed from the config are archived.
    Active subscriptions of a plan get its new usage features (billed from the sync on) and
    move to its changed prices: a usage price at once (the usage so far this period is billed
    at the old price, the rest at the new one, on the next invoice), a base price from the
    next period. Dropping a plan, price or usage feature that active subscriptions use is
    refused. --dry-run lists every change, subscriptions included.

    \b
    Example:
      usagebill sync --dry-run
      usagebill sync
    """
    from ..gateway.sync import sync as do_sync

    result = do_sync(state.billing, state.connection, dry_run=dry_run)
    if as_json:
        emit_json({"dry_run": dry_run, "actions": result.actions})
        return
    if not result.actions:
        say("Stripe matches billing.toml: nothing to do")
        return
    verb = "Would" if dry_run else "Did"
    table(f"{verb}: {len(result.actions)} change(s)", ["action", "object", "key", "detail", "stripe id"],
          [[a.verb, a.kind, a.key, a.detail, a.stripe_id] for a in result.actions])
    subs = {a.key for a in result.actions if a.kind == "subscription"}
    if subs:
        say(f"{'Would change' if dry_run else 'Changed'} {len(subs)} live subscription(s): new usage prices "
            "apply from now (usage so far at the old price, on the next invoice), new base prices from the next period")
