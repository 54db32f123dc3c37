"""push, status, reconcile: delivering usage to Stripe and checking that it arrived; and the
delivery that ``record``, ``charge`` and ``import`` do right after writing the ledger."""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass, field

import click

from ..errors import ExitCode, UsagebillError
from ..timeparse import iso
from .app import AppError, cli, json_option, pass_state
from .output import Column, emit_json, plain, readable_times, result, say, table

RECORD_ROUNDS = 3  # a cron job's record must not hang through a long Stripe outage


def push_json(r) -> dict:
    return {
        "delivered": r.delivered, "already_delivered": r.already_delivered, "failed": r.failed,
        "still_pending": r.still_pending, "requests": r.requests, "batches": r.batches,
        "waiting": [{"reason": k, "events": v} for k, v in r.waiting.items()],
        "failures": [{"id": i, "reason": reason} for i, reason in r.failures],
        "error": r.error,
    }


def _progress():
    """A progress line on stderr when a person watches; nothing in pipes and logs."""
    if not sys.stderr.isatty():
        return None

    def show(r):
        click.echo(f"\rdelivered {r.delivered + r.already_delivered:,} events, {r.requests:,} requests", err=True, nl=False)

    return show


def say_waiting(waiting: dict[str, int]) -> None:
    for reason, n in waiting.items():
        say(f"Note: {n:,} event(s) stay pending: {reason}")


@cli.command("push")
@click.argument("user_id", required=False)
@click.option("--coalesce", is_flag=True,
              help="Send one meter event per customer, feature and billing period instead of one per usage event.")
@json_option
@pass_state
def push_cmd(state, user_id, coalesce, as_json) -> None:
    """Deliver pending usage events to Stripe (every customer's, or one's).

    Safe to repeat and to interrupt: each event reaches Stripe once. Exits 4 when Stripe
    refused events (see usagebill status) or stayed unreachable (the rest stays pending: run
    it again, from cron say). Events of customers not in Stripe stay pending, with a note.

    \b
    Example:
      usagebill push
      usagebill push alice --coalesce --json
    """
    from ..gateway.delivery import push

    progress = _progress()
    r = push(state.billing, state.connection, user_id=user_id, coalesce=coalesce, on_progress=progress)
    if progress is not None:
        click.echo("", err=True)
    if as_json:
        emit_json(push_json(r))
    else:
        batches = f" as {r.batches:,} coalesced meter event(s)" if r.batches else ""
        result({"delivered": r.delivered, "already_delivered": r.already_delivered, "failed": r.failed,
                "pending": r.still_pending, "requests": r.requests, "batches": r.batches},
               f"Delivered {r.delivered:,} event(s){batches} in {r.requests:,} request(s); "
               f"{r.already_delivered:,} already in Stripe, {r.failed:,} refused, {r.still_pending:,} pending")
        for identifier, reason in r.failures:
            say(f"Refused {identifier}: {readable_times(reason)}")
    say_waiting(r.waiting)
    if r.error:
        left = f"; {r.still_pending:,} event(s) stay pending for the next usagebill push" if r.still_pending else ""
        raise AppError(r.error + left, int(ExitCode.STRIPE_ERROR))
    if r.failed:
        raise AppError(f"Stripe refused {r.failed:,} event(s): see usagebill status", int(ExitCode.STRIPE_ERROR))


@cli.command("status")
@click.argument("user_id", required=False)
@json_option
@pass_state
def status_cmd(state, user_id, as_json) -> None:
    """How many usage events are pending, delivered and failed, and why Stripe refused those
    that failed (from the ledger; no Stripe call).

    \b
    Example:
      usagebill status
      usagebill status alice --json
    """
    from ..gateway.delivery import delivery_status

    s = delivery_status(state.billing, user_id)
    failed = [{"id": f.id, "user_id": f.user_id, "key": f.feature, "amount": f.amount,
               "timestamp": iso(f.timestamp), "reason": f.reason} for f in s.failed_events]
    if as_json:
        emit_json({"pending": s.pending, "delivered": s.delivered, "failed": s.failed,
                   "not_in_stripe": s.not_in_stripe, "failed_events": failed})
        return
    result({"pending": s.pending, "delivered": s.delivered, "failed": s.failed},
           f"{s.pending:,} pending, {s.delivered:,} delivered, {s.failed:,} failed")
    for uid, n in s.not_in_stripe.items():
        say(f"Note: {n:,} pending event(s) of {uid} wait until it is in Stripe (usagebill customers add {uid})")
    if failed and plain():
        say(f"Note: {s.failed:,} event(s) failed: usagebill status --json lists them with Stripe's reasons")
    elif failed:
        title = "Failed events" + (f" (the {len(failed)} most recent)" if len(failed) < s.failed else "")
        table(title, [Column("event", whole=True), Column("customer", drop=1), Column("feature", drop=2),
                      Column("amount", right=True), Column("time", drop=3), Column("reason")],
              [[f["id"], f["user_id"], f["key"], f["amount"], f["timestamp"], readable_times(f["reason"])] for f in failed])


@cli.command("reconcile")
@click.argument("user_id", required=False)
@click.option("--periods", default=3, show_default=True, type=click.IntRange(1, 12),
              help="How many billing periods to compare, the current one and those before it.")
@json_option
@pass_state
def reconcile_cmd(state, user_id, periods, as_json) -> None:
    """Compare the usage the ledger delivered with Stripe's meter totals, per customer,
    feature and billing period. Exits 1 when they differ.

    \b
    Example:
      usagebill reconcile
      usagebill reconcile alice --json
    """
    from ..gateway.reconcile import reconcile

    r = reconcile(state.billing, state.connection, user_id=user_id, periods=periods)
    if as_json:
        emit_json([{"user_id": x.user_id, "key": x.feature, "period_start": iso(x.period_start),
                    "period_end": iso(x.period_end), "start_time": iso(x.start_time), "end_time": iso(x.end_time),
                    "ledger": x.ledger, "stripe": x.stripe, "difference": x.difference, "pending": x.pending}
                   for x in r.lines])
    else:
        grouped = not plain()
        table(f"{len(r.lines)} customer/feature/period(s) compared", [
            Column("customer", "user_id"), Column("feature", "key"), Column("period start", drop=1),
            Column("period end", drop=2), Column("ledger", right=True), Column("stripe", right=True),
            Column("difference", right=True)],
            [[x.user_id, x.feature, iso(x.period_start), iso(x.period_end), x.ledger, x.stripe,
              (f"{x.difference:+,}" if grouped else f"{x.difference:+}") if x.difference else ""] for x in r.lines])
    if r.ok:
        say("Stripe matches the ledger")
        return
    for x in r.differences:
        if x.pending:
            say(f"Note: {x.user_id} {x.feature} has {x.pending:,} event(s) not confirmed yet: run usagebill push first")
        if x.recent:
            say(f"Note: {x.user_id} {x.feature} had deliveries in the last minutes: Stripe's totals may lag; run it again")
    raise AppError(f"{len(r.differences)} difference(s) between the ledger and Stripe", int(ExitCode.ERROR))


# -- delivery right after a ledger write (record, charge) ----------------------------------

@dataclass
class Delivery:
    """What became of an event pushed right after it was recorded."""

    status: str  # pending | delivered | failed
    reason: str | None = None
    exit_code: int = 0
    messages: list[str] = field(default_factory=list)  # warnings and notes, for stderr

    def json(self) -> dict:
        return {"status": self.status, "reason": self.reason} if self.reason else {"status": self.status}

    def finish(self) -> None:
        """Say the warnings (after the command's own output), then exit with the code."""
        for m in self.messages:
            say(m)
        if self.exit_code:
            click.get_current_context().exit(self.exit_code)


def deliver_now(state, event_id: str) -> Delivery:
    """Push an event just written to the ledger. It is safe there whatever happens here: a
    failure is a warning saying ``usagebill push`` will retry, and exit code 4, so a cron job
    can tell "recorded, delivery pending" (4) from "not recorded" (1) and need not record
    it again."""
    from ..gateway import outbox
    from ..gateway.delivery import push

    try:
        r = push(state.billing, state.connection, event_ids=[event_id], max_rounds=RECORD_ROUNDS)
        error, waiting = r.error, r.waiting
    except (UsagebillError, sqlite3.Error) as e:  # a bad key, a ledger bound to another Stripe...
        error, waiting = str(e), {}
    status, reason = outbox.event_state(state.billing.ledger, event_id)
    if status == "failed":
        return Delivery(status, reason, int(ExitCode.STRIPE_ERROR),
                        [f"Warning: {event_id} is recorded, but Stripe refused it: {readable_times(reason)} (see usagebill status)"])
    if status == "pending" and error:
        return Delivery(status, error, int(ExitCode.STRIPE_ERROR),
                        [f"Warning: {event_id} is recorded, but not delivered to Stripe yet ({error}); "
                         "usagebill push will retry"])
    if status == "pending" and waiting:
        reason = next(iter(waiting))
        return Delivery(status, reason, 0, [f"Note: {event_id} stays pending: {reason}"])
    return Delivery(status)


def not_pushed(state, event_id: str) -> Delivery:
    """The delivery state of an event that this command did not push (``--no-push``)."""
    from ..gateway import outbox

    return Delivery(*outbox.event_state(state.billing.ledger, event_id))
