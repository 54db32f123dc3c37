"""push and status: delivering usage to Stripe and what became of it (reconcile, checking that
it arrived, is in reconcile_cmd.py); and the delivery that ``record``, ``charge`` and ``import``
do right after writing the ledger."""

from __future__ import annotations

import sys
from decimal import Decimal

import click

from ..errors import ExitCode
from ..money import cost, format_money
from ..timeparse import iso
from .app import AppError, cli, json_option, pass_state
from .output import Column, emit_json, plain, readable_times, result, say, table

def push_json(r) -> dict:
    return {
        "delivered": r.delivered, "already_delivered": r.already_delivered, "failed": r.failed,
        "still_pending": r.still_pending, "requests": r.requests, "batches": r.batches,
        "invoiced_late": r.invoiced_late,
        "waiting": [{"reason": k, "events": v} for k, v in r.waiting.items()],
        "failures": [{"id": i, "reason": reason} for i, reason in r.failures],
        "dropped": r.dropped, "unattributed_drops": r.unattributed_drops,
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
    from ..delivery import waiting_notes

    for note in waiting_notes(waiting):
        say(note)


def say_drops(named: int, unnamed: int) -> None:
    """Events the stream accepted and Stripe dropped later (its error reports)."""
    if named:
        say(f"Note: Stripe dropped {named:,} event(s) after accepting them: they are failed now (usagebill status)")
    if unnamed:
        say(f"Note: Stripe dropped {unnamed:,} more event(s) without naming them: usagebill reconcile shows where")


def _rate(value):
    """--rate: a positive, finite number of requests per second (one line otherwise)."""
    if value is None:
        return None
    from ..errors import ValidationError
    from ..gateway.delivery import check_rate

    try:
        return check_rate(value)
    except ValidationError as e:
        raise click.BadParameter(str(e)) from None


@cli.command("push")
@click.argument("user_id", required=False)
@click.option("--coalesce", is_flag=True,
              help="Send one meter event per customer, feature and billing period instead of one per usage event.")
@click.option("--retry-failed", is_flag=True,
              help="Send the events Stripe refused again (after fixing the cause: usagebill status says which can succeed).")
@click.option("--id", "event_ids", multiple=True, metavar="EVENT",
              help="With --retry-failed: only these failed events (repeatable).")
@click.option("--rate", metavar="N", callback=lambda ctx, param, value: _rate(value),
              help="At most N requests per second (default: Stripe's documented limits: 20 in test mode, "
                   "100 stream requests of 100 events in live mode; no limit for the sandbox).")
@json_option
@pass_state
def push_cmd(state, user_id, coalesce, retry_failed, event_ids, rate, as_json) -> None:
    """Deliver pending usage events to Stripe (every customer's, or one's).

    Safe to repeat, to interrupt and to run from several places at once: each event reaches
    Stripe once, sent by one push. Several requests are in flight at a time. Exits 4 when Stripe
    refused events (see usagebill status) or stayed unreachable (the rest stays pending: run
    it again, from cron say). Events of customers not in Stripe stay pending, with a note.
    Refused events stay failed until --retry-failed sends them again.

    \b
    Example:
      usagebill push
      usagebill push alice --coalesce --json
      usagebill push --retry-failed --id ube_3f2a...
      usagebill push --rate 50
    """
    from ..gateway.delivery import push

    if event_ids and not retry_failed:
        raise click.UsageError("--id goes with --retry-failed (push sends every pending event)")
    progress = _progress()
    if retry_failed:
        from ..gateway.retry import retry_failed as retry

        requeued, r = retry(state.billing, state.connection, user_id=user_id, event_ids=list(event_ids) or None,
                            coalesce=coalesce, on_progress=progress, rate=rate)
        say(f"{requeued:,} refused event(s) sent again" if requeued else "No refused event to send again")
        if r is None:
            return
    else:
        r = push(state.billing, state.connection, user_id=user_id, coalesce=coalesce, on_progress=progress, rate=rate)
    if progress is not None:
        click.echo("", err=True)
    if as_json:
        emit_json(push_json(r))
    else:
        batches = f" as {r.batches:,} coalesced meter event(s)" if r.batches else ""
        result({"delivered": r.delivered, "already_delivered": r.already_delivered, "failed": r.failed,
                "pending": r.still_pending, "invoiced_late": r.invoiced_late, "requests": r.requests,
                "batches": r.batches},
               f"Delivered {r.delivered:,} event(s){batches} in {r.requests:,} request(s); "
               f"{r.already_delivered:,} already in Stripe, {r.failed:,} refused, {r.still_pending:,} pending")
        if r.invoiced_late:
            say(f"{r.invoiced_late:,} event(s) came after their period's invoice was final: billed on the "
                "customer's next invoice as late usage (see usagebill status)")
        for identifier, reason in r.failures:
            say(f"Refused {identifier}: {readable_times(reason)}")
    say_drops(0, r.unattributed_drops)
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
    """How many usage events are pending, delivered and failed, why Stripe refused those that
    failed, and the usage billed late (its period's invoice was final: an invoice item on the
    next invoice). From the ledger; no Stripe call.

    \b
    Example:
      usagebill status
      usagebill status alice --json
    """
    from ..gateway.delivery import delivery_status

    s = delivery_status(state.billing, user_id)
    from ..gateway.retry import outlook

    seen = [(f, outlook(state.billing, f)) for f in s.failed_events]
    failed = [{"id": f.id, "user_id": f.user_id, "key": f.feature, "amount": f.amount,
               "timestamp": iso(f.timestamp), "reason": f.reason, "retry": o.retry, "retry_why": o.why}
              for f, o in seen]
    late = [{"id": i.id, "user_id": i.user_id, "key": i.feature, "description": i.description,
             "quantity": i.quantity, "unit_amount": i.unit_amount, "amount": cost(i.quantity, Decimal(i.unit_amount)),
             "currency": i.currency, "period_start": iso(i.period_start), "period_end": iso(i.period_end),
             "missed_invoice": i.missed_invoice, "status": i.status, "invoice_item": i.stripe_invoice_item_id}
            for i in s.late_items]
    if as_json:
        emit_json({"pending": s.pending, "delivered": s.delivered, "failed": s.failed,
                   "invoiced_late": s.invoiced_late, "not_in_stripe": s.not_in_stripe, "failed_events": failed,
                   "late_items": late})
        return
    result({"pending": s.pending, "delivered": s.delivered, "failed": s.failed, "invoiced_late": s.invoiced_late},
           f"{s.pending:,} pending, {s.delivered:,} delivered, {s.failed:,} failed"
           + (f", {s.invoiced_late:,} billed late" if s.invoiced_late else ""))
    for uid, n in s.not_in_stripe.items():
        say(f"Note: {n:,} pending event(s) of {uid} wait until it is in Stripe (usagebill customers add {uid})")
    if failed and plain():
        say(f"Note: {s.failed:,} event(s) failed: usagebill status --json lists them with Stripe's reasons")
    elif failed:
        title = "Failed events" + (f" (the {len(failed)} most recent)" if len(failed) < s.failed else "")
        table(title, [Column("event", whole=True), Column("customer", drop=1), Column("feature", drop=2),
                      Column("amount", right=True), Column("time", drop=3), Column("reason")],
              [[f["id"], f["user_id"], f["key"], f["amount"], f["timestamp"], readable_times(f["reason"])] for f in failed])
    if failed:
        outlooks: dict[tuple[str, str], int] = {}
        for f in failed:
            outlooks[f["retry"], f["retry_why"]] = outlooks.get((f["retry"], f["retry_why"]), 0) + 1
        for (can, why), n in outlooks.items():
            say(f"Retry can succeed for {n:,} of them? {can}: {why}")
        if any(f["retry"] != "no" for f in failed):
            say("Fix the cause, then: usagebill push --retry-failed [--id EVENT ...]")
    if late and not plain():
        table("Late usage, billed on the next invoice (its period's invoice was final)",
              [Column("customer", "user_id"), Column("item", "description", drop=2),
               Column("quantity", right=True), Column("amount", right=True),
               Column("missed invoice", "missed_invoice", drop=1, whole=True), Column("state", "status", drop=3)],
              [[i["user_id"], i["description"], i["quantity"], format_money(i["amount"], i["currency"]),
                i["missed_invoice"], i["status"]] for i in late])
    elif late:
        say(f"Note: {len(late):,} late-usage invoice item(s): usagebill status --json lists them")


# -- after a ledger write (record, charge, import) -----------------------------------------

def finish(delivery) -> None:
    """Say the library's delivery warnings (after the command's own output), then exit with
    its code (4: written, but not delivered)."""
    for m in delivery.messages:
        say(readable_times(m))
    if delivery.exit_code:
        click.get_current_context().exit(delivery.exit_code)


from . import reconcile_cmd  # noqa: E402,F401  (reconcile, listed in --help after push and status)
