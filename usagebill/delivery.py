"""What becomes of usage right after the ledger write: delivered to Stripe at once (the
default, for a script as for the CLI), or left pending for ``push`` (``push=False``).

The ledger write has happened before anything here runs, so nothing here may lose the event
or make the caller write it again: a failed delivery is a verdict (``exit_code`` 4 for the CLI,
"recorded, delivery pending"), never an exception. The gateway, and so the stripe SDK, is
imported only when something is actually sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ExitCode, UsagebillError
from .ledger import outbox
from .ledger.db import StoreError

if TYPE_CHECKING:
    from .billing import Billing

RECORD_ROUNDS = 3  # a cron job's record must not hang through a long Stripe outage


@dataclass(frozen=True)
class Delivery:
    """The verdict on usage pushed right after it was written (one event, or an import's)."""

    status: str  # pending | delivered | failed | invoiced (late: on the next invoice)
    reason: str | None = None
    exit_code: int = 0  # 0, or 4 (ExitCode.STRIPE_ERROR): written, but Stripe did not take it
    messages: tuple[str, ...] = ()  # warnings and notes for a person (the CLI's stderr)
    push: object | None = None  # the gateway's PushResult, when many events were pushed
    pending: int | None = None  # events still pending afterwards (after a push of many)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def json(self) -> dict:
        return {"status": self.status, "reason": self.reason} if self.reason else {"status": self.status}


def not_pushed(billing: "Billing", event_id: str) -> Delivery:
    """The delivery state of an event nobody pushed now (``push=False``, ``--no-push``)."""
    return Delivery(*outbox.event_state(billing.ledger, event_id))


def deliver_event(billing: "Billing", event_id: str, *, push: bool = True) -> Delivery:
    """Push one event just written to the ledger (a record, the usage part of a charge). It
    is safe there whatever happens here: a failure is a warning saying ``usagebill push``
    will retry, and exit code 4, so a cron job can tell "recorded, delivery pending" (4)
    from "not recorded" (1) and need not record it again."""
    if not push:
        return not_pushed(billing, event_id)
    user_id = outbox.event_user(billing.ledger, event_id)
    if not outbox.stripe_customer_id(billing.ledger, user_id):
        # nothing Stripe can do yet: say so without opening a connection (no stripe import)
        reason = f"customer {user_id} is not in Stripe (usagebill customers add {user_id})"
        return Delivery(outbox.PENDING, reason, 0, (f"Note: {event_id} stays pending: {reason}",))
    from .gateway.delivery import push as push_events

    try:
        r = push_events(billing, billing.connection, event_ids=[event_id], max_rounds=RECORD_ROUNDS)
        error, waiting = r.error, r.waiting
    except (UsagebillError, StoreError) as e:  # a bad key, a ledger bound to another Stripe...
        error, waiting = str(e), {}
    status, reason = outbox.event_state(billing.ledger, event_id)
    if status == outbox.FAILED:
        return Delivery(status, reason, int(ExitCode.STRIPE_ERROR),
                        (f"Warning: {event_id} is recorded, but Stripe refused it: {reason} (see usagebill status)",))
    if status == outbox.PENDING and error:
        return Delivery(status, error, int(ExitCode.STRIPE_ERROR),
                        (f"Warning: {event_id} is recorded, but not delivered to Stripe yet ({error}); "
                         "usagebill push will retry",))
    if status == outbox.PENDING and waiting:
        reason = next(iter(waiting))
        return Delivery(status, reason, 0, (f"Note: {event_id} stays pending: {reason}",))
    if status == outbox.INVOICED:
        return Delivery(status, reason, 0, (f"Note: {event_id} missed its period's invoice: {reason}",))
    return Delivery(status)


def waiting_notes(waiting: dict[str, int]) -> tuple[str, ...]:
    return tuple(f"Note: {n:,} event(s) stay pending: {reason}" for reason, n in waiting.items())


def deliver_pending(billing: "Billing") -> Delivery:
    """Push everything pending (after an import): the verdict of the whole push."""
    if not outbox.has_pending_in_stripe(billing.ledger):
        waiting = {f"customer {u} is not in Stripe (usagebill customers add {u})": n
                   for u, n in outbox.status(billing.ledger, outbox.Scope(), failed_limit=0).not_in_stripe.items()}
        pending = outbox.count_pending(billing.ledger, outbox.Scope())
        return Delivery(outbox.PENDING if pending else outbox.DELIVERED, messages=waiting_notes(waiting), pending=pending)
    from .gateway.delivery import push as push_events

    try:
        r = push_events(billing, billing.connection)
    except (UsagebillError, StoreError) as e:
        return Delivery(outbox.PENDING, str(e), int(ExitCode.STRIPE_ERROR),
                        (f"Warning: the events are imported, but not delivered to Stripe ({e}); usagebill push will retry",))
    if r.failed:
        status = outbox.FAILED
    elif r.still_pending:
        status = outbox.PENDING
    else:
        status = outbox.DELIVERED
    return Delivery(status, r.error, 0 if r.ok else int(ExitCode.STRIPE_ERROR), waiting_notes(r.waiting), r,
                    r.still_pending)
