"""doctor: the ledger checks itself, and what it points at in Stripe."""

from __future__ import annotations

import click

from ..errors import ExitCode
from .app import AppError, cli, json_option, pass_state
from .output import emit_json, say


@cli.command("doctor")
@click.option("--offline", is_flag=True, help="Check the ledger only, without asking Stripe.")
@json_option
@pass_state
def doctor_cmd(state, offline, as_json) -> None:
    """Check the ledger: SQLite's integrity check, its own invariants (histories add up to
    balances, no usage event both pending and delivered), and that the Stripe objects it
    points at still exist. Exits 1 on any finding.

    \b
    Example:
      usagebill doctor
      usagebill doctor --offline --json
    """
    from ..gateway.doctor import doctor

    findings = doctor(state.billing, None if offline else state.connection)
    if as_json:
        emit_json({"ok": not findings, "findings": findings})
    else:
        for f in findings:
            say(f"Problem: {f}")
    if findings:
        raise AppError(f"{len(findings)} problem(s) found in the ledger {state.billing.db_path}", int(ExitCode.ERROR))
    if not as_json:
        say(f"The ledger {state.billing.db_path} is sound" + ("" if offline else ", and Stripe has what it points at"))
