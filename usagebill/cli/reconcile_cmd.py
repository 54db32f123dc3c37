"""reconcile: does Stripe bill what the ledger holds? (the library side: gateway/reconcile.py)"""

from __future__ import annotations

import sys

import click

from ..errors import ExitCode, ValidationError
from ..timeparse import iso
from .app import AppError, cli, json_option, pass_state
from .delivery_cmds import say_drops
from .output import Column, emit_json, plain, progress_console, say, table


def _checked(check):
    """A Click callback running the library's own check of an option (one-line usage error)."""

    def callback(ctx, param, value):
        try:
            return check(value)
        except ValidationError as e:
            raise click.BadParameter(str(e), ctx, param) from None

    return callback


def _rate(value):
    from ..gateway.reconcile import check_rate

    return check_rate(value)


def _workers(value):
    from ..gateway.reconcile import check_workers

    return check_workers(value)


def _customers_from(source: str) -> list[tuple[int, str]]:
    from ..gateway.reconcile import read_customer_ids

    name = "<stdin>" if source == "-" else source
    try:
        if source == "-":
            return read_customer_ids(sys.stdin, name)
        with open(source, encoding="utf-8") as f:
            return read_customer_ids(f, name)
    except OSError as e:
        raise AppError(f"{name}: cannot read it: {e.strerror}", int(ExitCode.ERROR)) from None
    except UnicodeDecodeError:
        raise AppError(f"{name}: not UTF-8 text (one user id a line)", int(ExitCode.ERROR)) from None


class _Progress:
    """A rich progress bar on stderr (customers done, of how many), only for a person at a
    terminal: nothing when stderr is a pipe or a log, nor with --json."""

    def __init__(self, wanted: bool):
        self.bar = self.task = None
        con = progress_console() if wanted else None
        if con is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("reconciling"), BarColumn(), MofNCompleteColumn(), TextColumn("customers"),
                                TimeRemainingColumn(), console=con, transient=True)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task("reconcile", total=total)
        self.bar.update(self.task, completed=done)

    @property
    def callback(self):
        return self.update if self.bar is not None else None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


@cli.command("reconcile")
@click.argument("user_id", required=False)
@click.option("--periods", default=3, show_default=True, type=click.IntRange(1, 24),
              help="How many billing periods to compare per customer, the newest ones.")
@click.option("--closed-only", is_flag=True,
              help="Only periods whose invoice Stripe has finalized: exits 1 exactly when money is at risk (cron).")
@click.option("--since", metavar="TIME",
              help="Only billing periods that end after TIME (ISO 8601 or Unix seconds); at most --periods each.")
@click.option("--customers-from", "customers_file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True),
              help="Only these customers: one user id a line (- for stdin; blank lines and # comments ignored).")
@click.option("--rate", type=float, callback=_checked(_rate), metavar="N",
              help="At most N Stripe requests a second [default: 20 in test mode; 80 in live mode, 20 to any one "
                   "endpoint (Stripe's documented limits: 25 and 100, 25 an endpoint); none on the sandbox].")
@click.option("--workers", type=int, callback=_checked(_workers), metavar="N",
              help="Stripe requests in flight at once, one customer each [default: 8].")
@json_option
@pass_state
def reconcile_cmd(state, user_id, periods, closed_only, since, customers_file, rate, workers, as_json) -> None:
    """Check that Stripe bills what the ledger holds, per customer, feature and billing period.

    A closed period (its invoice final) compares the ledger's units with the quantities on
    Stripe's invoices (usage lines plus late-usage invoice items); a difference, or units of it
    still pending or refused, is money at risk: exit 1. An open period (the current one, or a
    renewal still a draft) compares the delivered units with Stripe's meter totals and shows
    what is pending. Run it from cron with --closed-only as the billing check. Over many
    customers, Stripe is asked by --workers requests at once within --rate, and a progress bar
    shows on a terminal.

    \b
    Example:
      usagebill reconcile
      usagebill reconcile alice --json
      usagebill reconcile --closed-only --periods 2     # cron: exit 1 = money at risk
      usagebill reconcile --since 2026-01-01 --customers-from big-accounts.txt
    """
    from ..gateway.reconcile import reconcile

    if user_id is not None and customers_file is not None:
        raise click.UsageError("give a customer or --customers-from, not both")
    given = _customers_from(customers_file) if customers_file is not None else None
    with _Progress(not as_json) as progress:
        r = reconcile(state.billing, state.connection, user_id=user_id, periods=periods, closed_only=closed_only,
                      since=since, customers=given, rate=rate, workers=workers,
                      customers_source="<stdin>" if customers_file == "-" else customers_file or "",
                      on_progress=progress.callback)
    if as_json:
        emit_json([{"user_id": x.user_id, "key": x.feature, "state": x.state, "invoice": x.invoice_id,
                    "period_start": iso(x.period_start), "period_end": iso(x.period_end),
                    "start_time": iso(x.start_time), "end_time": iso(x.end_time),
                    "ledger": x.ledger, "stripe": x.stripe, "difference": x.difference, "pending": x.pending,
                    "failed": x.failed, "late": x.late, "at_risk": x.at_risk}
                   for x in r.lines])
    else:
        grouped = not plain()
        table(f"{len(r.lines)} customer/feature/period(s) compared", [
            Column("customer", "user_id"), Column("feature", "key"), Column("period start", drop=1),
            Column("period end", drop=2), Column("state", drop=3), Column("ledger", right=True),
            Column("stripe", right=True), Column("difference", right=True), Column("pending", right=True, drop=4)],
            [[x.user_id, x.feature, iso(x.period_start), iso(x.period_end),
              f"billed ({x.invoice_id})" if x.state == "closed" else ("draft" if x.invoice_id else "open"),
              x.ledger, x.stripe,
              (f"{x.difference:+,}" if grouped else f"{x.difference:+}") if x.difference else "",
              x.pending or ""] for x in r.lines])
    for x in r.lines:
        if x.state == "open" and x.pending:
            say(f"Note: {x.user_id} {x.feature}: {x.pending:,} unit(s) of the open period are not in Stripe yet "
                "(usagebill push delivers them)")
    if r.skipped:
        shown = ", ".join(r.skipped[:10]) + (f" and {len(r.skipped) - 10:,} more" if len(r.skipped) > 10 else "")
        say(f"Note: nothing to compare for {len(r.skipped):,} customer(s) of {customers_file}: {shown}")
    if r.throttled:
        say(f"Note: Stripe rate-limited {r.throttled:,} request(s); reconcile paused and retried them "
            "(a lower --rate avoids it)")
    say_drops(r.dropped, r.unattributed_drops)
    if r.ok:
        say("Stripe matches the ledger" + (": every closed period is billed as the ledger says" if any(
            x.state == "closed" for x in r.lines) else ""))
        return
    for x in r.differences:
        say(_in_words(x))
    risk = len(r.at_risk)
    raise AppError(f"{len(r.differences)} difference(s) between the ledger and Stripe"
                   + (f"; money at risk in {risk} closed period(s)" if risk else ""), int(ExitCode.ERROR))


def _in_words(x) -> str:
    """One line a person can act on, for a line that differs."""
    where = f"{x.user_id} {x.feature} {iso(x.period_start)} .. {iso(x.period_end)}"
    if x.state != "closed":
        why = f"Stripe's meter has {x.stripe:,} unit(s), the ledger delivered {x.ledger:,} ({x.difference:+,})"
        if x.recent:
            why += "; deliveries in the last minutes may not show yet: run it again"
        if x.failed:
            why += (f"; {x.failed:,} unit(s) refused by Stripe and never billed: fix the cause, then "
                    "usagebill push --retry-failed (usagebill status says which can succeed)")
        return f"{where} (open): {why}"
    parts = [f"the ledger has {x.ledger:,} unit(s), Stripe billed {x.stripe:,} (invoice {x.invoice_id}"
             + (f" and {x.late:,} late" if x.late else "") + ")"]
    if x.difference < 0:
        parts.append(f"{-x.difference:,} unit(s) not billed")
    elif x.difference > 0:
        parts.append(f"{x.difference:,} unit(s) billed that the ledger does not have")
    if x.pending:
        parts.append(f"{x.pending:,} still pending: usagebill push bills them on the next invoice as late usage")
    if x.failed:
        parts.append(f"{x.failed:,} refused by Stripe: see usagebill status")
    return f"Money at risk: {where}: " + "; ".join(parts)
