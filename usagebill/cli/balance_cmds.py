"""credits and wallet command groups."""

from __future__ import annotations

import sys

import click

from ..errors import ExitCode
from ..money import format_money
from ..timeparse import iso
from .app import cli, id_option, json_option, pass_state
from .numbers import NUMBERS
from .output import emit_json, jsonable, say, table


def _history(entries, limit, as_json: bool, title: str, money: bool) -> None:
    """Every row asked for; with --limit, one row more is read to tell whether it truncates."""
    truncated = limit is not None and len(entries) > limit
    entries = entries[:limit] if truncated else entries
    first = "currency" if money else "feature"
    if as_json:
        emit_json([{**e.__dict__, first: e.unit, "created_at": iso(e.created_at), "period_start": iso(e.period_start),
                    "expires_at": iso(e.expires_at)} for e in entries])
    else:
        fmt = (lambda v, e: format_money(v, e.unit)) if money else (lambda v, e: f"{v:,}")
        table(title, ["when", first, "change", "balance", "reason", "expires", "idempotency key"], [
            [iso(e.created_at), e.unit, ("+" if e.delta > 0 else "") + fmt(e.delta, e), fmt(e.balance_after, e),
             e.reason, iso(e.expires_at), e.idempotency_key]
            for e in entries
        ], right=["change", "balance"])
    if truncated:
        say(f"(the newest {limit:,} rows; older ones exist: raise --limit or give --since)")


def _history_options(fn):
    fn = click.option("--since", metavar="TIME", help="Only rows from TIME on (ISO 8601 or Unix seconds).")(fn)
    return click.option("--limit", type=click.IntRange(1), help="Only the newest N rows [default: every row].")(fn)


@cli.group("credits")
def credits_group() -> None:
    """Pre-paid units per feature: balance, grant, consume, history.

    \b
    Example:
      usagebill credits balance alice api_calls
    """


@credits_group.command("balance")
@click.argument("user_id")
@click.argument("key")
@json_option
@pass_state
def credits_balance(state, user_id, key, as_json) -> None:
    """Show a customer's credits for a feature.

    \b
    Example:
      usagebill credits balance alice api_calls --json
    """
    parts = state.billing.credits.get_parts(user_id, key)
    if as_json:
        emit_json({**jsonable(parts), "lots": [{"remaining": lot.remaining, "expires_at": iso(lot.expires_at)}
                                               for lot in parts.lots]})
    else:
        say(f"{user_id} has {parts.balance:,} {key} credits "
            f"({parts.included:,} included by the plan, {parts.granted:,} granted)")


@credits_group.command("grant", context_settings=NUMBERS)
@click.argument("user_id")
@click.argument("key")
@click.argument("amount")
@click.option("--expires", metavar="TIME", help="When the granted credits expire [default: never].")
@id_option
@json_option
@pass_state
def credits_grant(state, user_id, key, amount, expires, idempotency_key, as_json) -> None:
    """Add credits to a customer's balance for a feature. Granted credits are not the plan's
    allocation: renewals never expire them; they stay until used or until --expires.

    \b
    Example:
      usagebill credits grant alice api_calls 50 --id goodwill-4411
      usagebill credits grant alice api_calls 500 --id purchase-1 --expires 2026-12-31
    """
    r = state.billing.credits.grant(user_id, key, amount, idempotency_key=idempotency_key, expires=expires)
    if as_json:
        emit_json({**jsonable(r), "expires_at": iso(r.expires_at)})
    else:
        until = f", until {iso(r.expires_at)}" if r.expires_at is not None else ""
        say(f"{'Already granted' if r.replayed else 'Granted'} {r.delta:,} {key} to {user_id}{until}; "
            f"balance {r.balance:,}")


@credits_group.command("consume", context_settings=NUMBERS)
@click.argument("user_id")
@click.argument("key")
@click.argument("amount")
@id_option
@json_option
@pass_state
def credits_consume(state, user_id, key, amount, idempotency_key, as_json) -> None:
    """Consume credits, all or nothing; exits 3 when there are not enough.

    \b
    Example:
      usagebill credits consume alice api_calls 5 --id req-123
    """
    r = state.billing.credits.consume(user_id, key, amount, idempotency_key=idempotency_key)
    if as_json:
        emit_json(r)
    elif r.success:
        bought = f" (auto top-up bought {r.topped_up:,})" if r.topped_up else ""
        say(f"Consumed {r.consumed:,} {key} for {user_id}; {r.balance:,} left{bought}")
    else:
        say(f"Error: not enough {key} credits for {user_id}: {r.requested:,} asked, {r.balance:,} left; nothing consumed")
    if not r.success:
        sys.exit(int(ExitCode.INSUFFICIENT_CREDITS))


@credits_group.command("history")
@click.argument("user_id")
@click.argument("key", required=False)
@_history_options
@json_option
@pass_state
def credits_history(state, user_id, key, limit, since, as_json) -> None:
    """Every change of a customer's credits (every feature, or KEY's), newest first.

    \b
    Example:
      usagebill credits history alice api_calls --limit 20
    """
    rows = state.billing.credits.history(user_id, key, None if limit is None else limit + 1, since)
    _history(rows, limit, as_json, f"{user_id}: credits", money=False)


@cli.group("wallet")
def wallet_group() -> None:
    """Pre-paid money (can go negative): balance, top-up, consume, history.

    \b
    Example:
      usagebill wallet top-up alice 5000
    """


@wallet_group.command("balance")
@click.argument("user_id")
@json_option
@pass_state
def wallet_balance(state, user_id, as_json) -> None:
    """Show a customer's wallet.

    \b
    Example:
      usagebill wallet balance alice --json
    """
    w = state.billing.wallet.get_balance(user_id)
    if as_json:
        emit_json(w)
    else:
        show = (lambda v: format_money(v, w.currency)) if w.currency else str
        included = f" ({show(w.included)} of it from the plan's allocation)" if w.included else ""
        say(f"{user_id}'s wallet: {show(w.balance)}{included}")


@wallet_group.command("top-up", context_settings=NUMBERS)
@click.argument("user_id")
@click.argument("amount")
@click.option("--currency", help="Only for a customer without a subscription or wallet yet.")
@id_option
@json_option
@pass_state
def wallet_top_up(state, user_id, amount, currency, idempotency_key, as_json) -> None:
    """Add money to a wallet, in minor units (5000 = $50.00).

    \b
    Example:
      usagebill wallet top-up alice 5000 --id payment-pi_3Nx
    """
    r = state.billing.wallet.top_up(user_id, amount, currency, idempotency_key=idempotency_key)
    if as_json:
        emit_json(r)
    else:
        say(f"{'Already added' if r.replayed else 'Added'} {format_money(r.delta, r.currency)}; "
            f"balance {format_money(r.balance, r.currency)}")


@wallet_group.command("consume", context_settings=NUMBERS)
@click.argument("user_id")
@click.argument("amount")
@id_option
@json_option
@pass_state
def wallet_consume(state, user_id, amount, idempotency_key, as_json) -> None:
    """Take money from a wallet, in minor units; the balance may go negative.

    \b
    Example:
      usagebill wallet consume alice 250 --id job-77
    """
    r = state.billing.wallet.consume(user_id, amount, idempotency_key=idempotency_key)
    if as_json:
        emit_json(r)
    else:
        say(f"{'Already taken' if r.replayed else 'Took'} {format_money(-r.delta, r.currency)}; "
            f"balance {format_money(r.balance, r.currency)}")


@wallet_group.command("history")
@click.argument("user_id")
@_history_options
@json_option
@pass_state
def wallet_history(state, user_id, limit, since, as_json) -> None:
    """Every change of a wallet, newest first.

    \b
    Example:
      usagebill wallet history alice --since 2026-01-01
    """
    rows = state.billing.wallet.history(user_id, None if limit is None else limit + 1, since)
    _history(rows, limit, as_json, f"{user_id}: wallet", money=True)
