"""completion: shell completion scripts, generated from the Click app; and the completion of
real names (customer ids, plan names, feature keys, clock ids, invoice ids) from the config
and the ledger: fast, read-only, no Stripe call."""

from __future__ import annotations

import click

from .app import cli

SHELLS = ("bash", "zsh", "fish")


def completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    return cls(cli, {}, "usagebill", "_USAGEBILL_COMPLETE").source()


@cli.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script (also checked in under completions/).

    \b
    Example:
      usagebill completion bash > ~/.local/share/bash-completion/completions/usagebill
      usagebill completion zsh > "${fpath[1]}/_usagebill"
      usagebill completion fish > ~/.config/fish/completions/usagebill.fish
    """
    click.echo(completion_script(shell), nl=False)


# -- completing names ------------------------------------------------------------------------

def _config(ctx: click.Context):
    from ..config import load_config

    root = ctx.find_root()
    try:
        return load_config(root.params.get("config") or "billing.toml")
    except Exception:  # no or a broken config: nothing to offer, never a traceback in a shell
        return None


def _ledger(ctx: click.Context):
    from ..billing import default_db_path
    from ..ledger.reports import read_only

    db = ctx.find_root().params.get("db")
    if not db:
        config = _config(ctx)
        if config is None:
            return None
        db = default_db_path(config)
    return read_only(db)


def _from_ledger(query):
    def complete(ctx, param, incomplete):
        ledger = _ledger(ctx)
        if ledger is None:
            return []
        try:
            return query(ledger, incomplete)
        finally:
            ledger.close()

    return complete


def _customers(ledger, incomplete):
    from ..ledger.reports import customer_ids

    return customer_ids(ledger, incomplete)


def _clocks(ledger, incomplete):
    from click.shell_completion import CompletionItem

    from ..ledger.reports import clock_ids

    return [CompletionItem(i, help=name) for i, name in clock_ids(ledger, incomplete)]


def _invoices(ledger, incomplete):
    from ..ledger.reports import invoice_ids

    return invoice_ids(ledger, incomplete)


def _plans(ctx, param, incomplete):
    from click.shell_completion import CompletionItem

    config = _config(ctx)
    # a name with spaces would be split by the shell: offer its key (pay_as_you_go), which resolves too
    names = [] if config is None else [(p.key if " " in p.name else p.name, p.name) for p in config.plans]
    return [CompletionItem(v, help=n if v != n else None) for v, n in names if v.casefold().startswith(incomplete.casefold())]


def _features(ctx, param, incomplete):
    config = _config(ctx)
    return [] if config is None else [k for k in config.feature_keys() if k.startswith(incomplete)]


COMPLETERS = {
    "user_id": _from_ledger(_customers),
    "plan": _plans,
    "key": _features,
    "clock": _from_ledger(_clocks),
    "test_clock": _from_ledger(_clocks),
    "invoice": _from_ledger(_invoices),
}


def attach_completers(group: click.Group = cli) -> None:
    """Give every USER, PLAN, KEY, CLOCK and INVOICE parameter its completer, by name, in one
    place (the commands stay as they are)."""
    for cmd in group.commands.values():
        if isinstance(cmd, click.Group):
            attach_completers(cmd)
        for param in cmd.params:
            if param.name in COMPLETERS:
                param._custom_shell_complete = COMPLETERS[param.name]  # what shell_complete= sets
