"""When a billing period is closed, and what that means for usage stamped in it.

Stripe bills a period's usage on the renewal invoice it drafts when the period ends. The draft
takes usage for that period for about an hour (the grace hour); then Stripe finalizes it, and
usage for the period sent later is accepted by the meter but billed on no invoice. Only Stripe
knows when it finalized, so:

- A period is **closed** once the ledger knows its invoice is finalized (``period_invoices``,
  mirrored from Stripe by ``testclock advance``, ``cancel``, ``push`` and ``reconcile``). Until
  then it is open, even after its end.
- ``record`` / ``charge`` / ``import`` refuse a time in a closed period (``check_open``, part of
  ``usage.check_time``): the error names the invoice and says to record it now instead.
- ``push`` asks Stripe about every ended period it holds usage for: invoice still a draft (or
  not made yet) -> the usage goes as meter events and is billed when the draft finalizes;
  finalized -> the usage is billed on the customer's next invoice as one invoice item per
  customer, feature and period that says so (``late_description``), once (idempotency key
  from the ledger, written before sending), and ``status`` / ``reconcile`` count it.
- A ledger that has not heard of a finalization yet (real-time customers, between pushes)
  accepts the event; push then finds the invoice final and bills it late. Late, never lost.

Periods are half-open, ``[start, end)``: an event at the very second a period ends belongs to
the next one. A cancellation at second T is the exception that proves the rule: the final
invoice bills usage through T, so the cancelled subscription's last period is ``[start, T + 1)``
and a subscription started in that same second (a test clock's frozen time) bills usage from
T + 1 (``usage_window``; its events are stamped T + 1, which Stripe accepts: it takes times up to
five minutes ahead). Each unit lands in exactly one period, so it is billed once."""

from __future__ import annotations

from .errors import ValidationError
from .periods import to_datetime
from .timeparse import iso


def check_open(ts: int, sub) -> None:
    """Refuse a time in a period of ``sub`` whose invoice Stripe has finalized."""
    if sub.closed_until is None or ts >= sub.closed_until:
        return
    start, end = sub.period(ts)
    raise ValidationError(
        f"timestamp {iso(ts)} is in {sub.user_id}'s billing period {iso(start)} .. {iso(end)}, already invoiced: "
        f"Stripe finalized invoice {sub.closed_invoice} (no period before {iso(sub.closed_until)} can be billed "
        "any more); record it without --at to bill it in the current period"
    )


def span(start: int, end: int) -> str:
    """``Jan 01-Feb 01`` (with years when they differ), as invoices show a period."""
    a, b = to_datetime(start), to_datetime(end)
    return f"{a:%b %d}-{b:%b %d}" if a.year == b.year else f"{a:%b %d %Y}-{b:%b %d %Y}"


def late_description(display_name: str, start: int, end: int) -> str:
    """The invoice item line of usage that missed its period's invoice."""
    return f"{display_name} ({span(start, end)}, reported late)"


def usage_window(sub, start: int, end: int) -> tuple[int, int]:
    """The usage times, half-open, that the invoice of ``sub``'s period [start, end) bills."""
    if sub.canceled_at is not None and end == sub.canceled_at and sub.period(start)[1] != end:
        end += 1  # the final invoice of a cancel (cut short: not a renewal) bills the cancel's own second
    return max(start, sub.usage_from), end


def check_cancel(ledger, sub, now: int) -> None:
    """A cancel at ``now`` bills usage through ``now`` on the final invoice: refuse it while the
    subscription holds usage stamped later (up to five minutes ahead, or the second after a
    cancel in a frozen test-clock second), which no invoice would bill."""
    from .ledger.closing import latest_event_time

    latest = latest_event_time(ledger, sub.user_id)
    if latest is not None and latest > now and latest >= sub.usage_from:
        raise ValidationError(
            f"{sub.user_id} has usage stamped {iso(latest)}, after now ({iso(now)}): the final invoice of a cancel "
            "now would not bill it; cancel after that time (with a test clock: usagebill testclock advance CLOCK --to +1m)"
        )
