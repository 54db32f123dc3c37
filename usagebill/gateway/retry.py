"""Usage Stripe refused: whether sending it again can succeed, and why (``usagebill status``,
ledger facts only), and sending it again (``push --retry-failed``) once the cause is fixed."""

from __future__ import annotations

from dataclasses import dataclass

from ..billing import Billing
from ..ledger import mapping as ledger_mapping
from ..ledger import outbox
from ..rules import MAX_AGE
from .client import Connection
from .mapping import meter_key

YES = "yes"
AFTER_FIX = "after a fix"
NO = "no"
MAYBE = "maybe"


@dataclass(frozen=True)
class Outlook:
    retry: str  # yes | after a fix | no | maybe
    why: str


def outlook(billing: Billing, event) -> Outlook:
    """What ``push --retry-failed`` would do with a failed event (``ledger.outbox.FailedEvent``)."""
    reason = event.reason or ""
    sub = billing.subscriptions.active(event.user_id)
    now = billing.now_for(event.user_id)
    if sub is not None and event.timestamp >= sub.usage_from and sub.closed_until and event.timestamp < sub.closed_until:
        return Outlook(YES, "its period's invoice is final: a retry bills it on the next invoice as late usage")
    if event.timestamp < now - MAX_AGE:
        return Outlook(NO, "older than the 35 days Stripe takes meter events for: bill it by hand "
                           "(an invoice item) or grant credits instead")
    if ledger_mapping.get(billing.ledger, meter_key(event.feature)) is None:
        return Outlook(AFTER_FIX, f"feature {event.feature} has no Stripe meter: run usagebill sync, then retry")
    if "No active meter" in reason or "inactive" in reason:
        return Outlook(AFTER_FIX, "the meter was not active: usagebill sync reactivates it, then retry")
    if "No such customer" in reason:
        return Outlook(AFTER_FIX, f"Stripe did not know the customer: fix it (usagebill customers update "
                                  f"{event.user_id} --stripe-id ...), then retry")
    if "Timestamp" in reason or "timestamp" in reason:
        return Outlook(YES, "within Stripe's 35 days now: a retry sends it again")
    return Outlook(MAYBE, "Stripe's reason above says whether the cause is gone")


def retry_failed(billing: Billing, conn: Connection, *, user_id: str | None = None,
                 event_ids: list[str] | None = None, **push_options):
    """Send refused events again (all, one customer's, or the given ids): they become pending,
    then a push delivers them (or bills them late, or they fail again with Stripe's new
    reason). Returns (how many were requeued, the push's result)."""
    from .delivery import push

    if user_id is not None:
        billing.customers.get(user_id)
    ids = outbox.failed_ids(billing.ledger, outbox.Scope(user_id, None if event_ids is None else tuple(event_ids)))
    if event_ids is not None:
        unknown = sorted(set(event_ids) - set(ids))
        if unknown:
            from ..errors import NotFoundError

            raise NotFoundError(f"not a failed usage event: {', '.join(unknown[:5])}"
                                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                                + " (usagebill status lists the failed ones)")
    requeued = outbox.requeue_failed(billing.ledger, ids)
    if not requeued:
        return 0, None
    # a few events by id; many through the customer's (or everyone's) pending, as push does
    scope = {"event_ids": ids} if len(ids) <= 500 else {}
    return requeued, push(billing, conn, user_id=user_id, **scope, **push_options)
