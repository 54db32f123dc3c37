"""testclock: create, advance and show Stripe test clocks."""

from __future__ import annotations

from contextlib import nullcontext

import click

from ..timeparse import iso
from .app import cli, json_option, pass_state
from .output import console, created, emit_json, result


def _clock_json(c):
    return {"id": c.id, "name": c.name, "frozen_time": iso(c.frozen_time), "status": c.status, "customers": c.customers}


def _clock_result(c, sentence: str) -> None:
    result({**_clock_json(c), "customers": ",".join(c.customers)}, sentence)


@cli.group("testclock")
def testclock_group() -> None:
    """Stripe test clocks: move a customer's time to see the invoices of the period end.

    \b
    Example:
      usagebill testclock create --at 2026-01-01T00:00:00Z --name january
      usagebill testclock advance clock_1Nx... --to +1month2h
    """


@testclock_group.command("create")
@click.option("--at", metavar="TIME", help="The clock's starting time: ISO 8601 or Unix seconds [default: now].")
@click.option("--name", help="A name to recognise it by.")
@json_option
@pass_state
def testclock_create(state, at, name, as_json) -> None:
    """Create a test clock (then add customers on it with --test-clock).

    \b
    Example:
      usagebill testclock create --at 2026-01-01T00:00:00Z
    """
    from ..gateway.clocks import create_clock

    c = create_clock(state.billing, state.connection, at=at, name=name)
    if as_json:
        emit_json(_clock_json(c))
    else:
        created(c.id, f"Test clock {c.id} at {iso(c.frozen_time)}")


@testclock_group.command("advance")
@click.argument("clock")
@click.option("--to", "to", required=True, metavar="TIME|+DURATION",
              help="A time (ISO 8601, Unix seconds) or a duration from the clock's time: +1month, +1month2h, +3d.")
@click.option("--timeout", type=click.FloatRange(1), default=300, show_default=True, help="Seconds to wait for Stripe.")
@json_option
@pass_state
def testclock_advance(state, clock, to, timeout, as_json) -> None:
    """Advance a test clock and wait until Stripe has generated what falls due.

    \b
    Example:
      usagebill testclock advance clock_1Nx... --to +1month2h
    """
    from ..gateway.clocks import advance_clock

    con = console()
    with con.status(f"Advancing {clock}...", spinner="dots") if con.is_terminal else nullcontext():
        c = advance_clock(state.billing, state.connection, clock, to, timeout=timeout)
    if as_json:
        emit_json(_clock_json(c))
    else:
        _clock_result(c, f"Test clock {c.id} is at {iso(c.frozen_time)} ({c.status})")


@testclock_group.command("show")
@click.argument("clock")
@json_option
@pass_state
def testclock_show(state, clock, as_json) -> None:
    """Show a test clock and the customers on it.

    \b
    Example:
      usagebill testclock show clock_1Nx...
    """
    from ..gateway.clocks import show_clock

    c = show_clock(state.billing, state.connection, clock)
    if as_json:
        emit_json(_clock_json(c))
    else:
        _clock_result(c, f"Test clock {c.id}{f' ({c.name})' if c.name else ''} at {iso(c.frozen_time)}, {c.status}; "
                         f"customers: {', '.join(c.customers) or 'none in this ledger'}")
