"""sync: billing.toml -> Stripe Products, Prices and Meters."""

from __future__ import annotations

import click

from .app import cli, json_option, pass_state
from .output import Column, emit_json, plain, say, table


@cli.command("sync")
@click.option("--dry-run", is_flag=True, help="Show what would be created, updated or archived; change nothing.")
@json_option
@pass_state
def sync(state, dry_run: bool, as_json: bool) -> None:
    """Create or update the Stripe Products, Prices and Billing Meters of billing.toml.

    Safe to repeat: an unchanged config makes no change. A changed amount makes a new price
    that takes over the lookup key; plans and features removed from the config are archived.

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
    if not result.actions:  # piped, the header alone says "no change" to a script; the verdict to people
        if not plain():
            click.echo("Stripe matches billing.toml: nothing to do")
            return
        say("Stripe matches billing.toml: nothing to do")
    verb = "Would" if dry_run else "Did"
    table(f"{verb}: {len(result.actions)} change(s)", [
        Column("action"), Column("object"), Column("key"), Column("detail", drop=1), Column("stripe id", "stripe_id", drop=2)],
        [[a.verb, a.kind, a.key, a.detail, a.stripe_id] for a in result.actions])
