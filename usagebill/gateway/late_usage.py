"""Usage that reaches ``push`` after its period's invoice was finalized: billed on the
customer's next invoice as one pending invoice item per customer, feature and period, with a
description that says so (the rule: ``usagebill.closing``).

Like the outbox: the item (its idempotency key, quantity, price) and the link of its events
are written to the ledger first, then sent; a retry re-sends the same key, and after Stripe's
24 hours of idempotency the item is looked for by its metadata before it is made again."""

from __future__ import annotations

import uuid
from typing import Callable

from ..billed_prices import price_at
from ..billing import Billing
from ..closing import late_description
from ..errors import StripeAPIError
from ..ledger import closing as period_invoices
from ..ledger import outbox
from .client import Connection, describe
from .invoices import mirror_period_invoices
from .meter_sender import MeterEventSender

LATE_KEY = "usagebill_late_item"


class LateBilling:
    """Finds the ended periods a push holds never-sent usage for, asks Stripe (once per
    subscription and push) whether their invoice is final, and bills what is late."""

    def __init__(self, billing: Billing, conn: Connection, sender: MeterEventSender, scope: outbox.Scope,
                 customer: Callable[[str], str | None], count: Callable[[str, str | None, str, int], None],
                 worker: outbox.Worker | None = None):
        self.billing, self.conn, self.sender, self.scope = billing, conn, sender, scope
        self.customer = customer  # user id -> Stripe customer id
        self.count = count  # (verdict, reason, identifier, events) -> the push result
        self.worker = worker or outbox.Worker.new()  # whose claims the items are (several pushes at once)
        self._mirrored: set[int] = set()

    def run(self) -> None:
        for item in outbox.claim_late_items(self.billing.ledger, self.scope, self.worker):
            self._send(item, retry=True)  # cut short by an earlier push
        billing = self.billing
        for user_id, oldest in outbox.oldest_never_sent(self.billing.ledger, self.scope).items():
            sub = billing.subscriptions.active(user_id)
            if sub is None or not sub.stripe_subscription_id or not self.customer(user_id):
                continue
            current_start = sub.period(billing.now_for(user_id))[0]
            start, end = sub.period(max(oldest, sub.anchor))
            while start < current_start:
                self._period(sub, start, end)
                start, end = sub.period(end)

    def _period(self, sub, start: int, end: int) -> None:
        ledger = self.billing.ledger
        events = outbox.never_sent_between(ledger, self.scope, sub.user_id, start, end)
        if not events:
            return
        known = period_invoices.get(ledger, sub.id, start)
        if (known is None or not known.finalized) and sub.id not in self._mirrored:
            self._mirrored.add(sub.id)
            mirror_period_invoices(self.billing, self.conn, sub)
            known = period_invoices.get(ledger, sub.id, start)
        if known is None or not known.finalized:
            return  # still a draft (or not made yet): sent as meter events, billed at finalization
        by_feature: dict[str, list[str]] = {}
        for e in events:
            by_feature.setdefault(e["feature"], []).append(e["id"])
        for feature, ids in by_feature.items():
            f = sub.plan.features.get(feature)
            if f is None or f.price_per_credit is None:
                continue  # not billable by this plan: left to the meter path, which says why
            item = outbox.claim_late(ledger, outbox.LateItem(
                id="ubl_" + uuid.uuid4().hex, user_id=sub.user_id, feature=feature, subscription_id=sub.id,
                period_start=start, period_end=known.period_end, missed_invoice=known.invoice_id, quantity=0,
                # the price Stripe billed at the period's end (sync may have changed it since)
                unit_amount=str(price_at(self.billing.ledger, sub, feature, known.period_end - 1, f.price_per_credit)),
                currency=sub.currency,
                description=late_description(f.display_name, start, known.period_end),
            ), ids, self.worker)
            if item is not None:
                self._send(item)

    def _find(self, item: outbox.LateItem) -> str | None:
        """The item's Stripe id if an earlier run made it (idempotency keys last 24 hours)."""
        listed = self.conn.client.v1.invoice_items.list(params={"customer": self.customer(item.user_id), "limit": 100})
        for ii in listed.auto_paging_iter():
            if ii.metadata is not None and ii.metadata.to_dict().get(LATE_KEY) == item.id:
                return ii.id
        return None

    def _send(self, item: outbox.LateItem, retry: bool = False) -> None:
        import stripe

        subscription = period_invoices.stripe_subscription_id(self.billing.ledger, item.subscription_id)
        params = {
            "customer": self.customer(item.user_id),
            "currency": item.currency,
            "unit_amount_decimal": item.unit_amount,
            "quantity": item.quantity,
            "description": item.description,
            "period": {"start": item.period_start, "end": item.period_end},
            "metadata": {LATE_KEY: item.id, "usagebill_user_id": item.user_id, "usagebill_feature": item.feature,
                         "usagebill_period_start": str(item.period_start), "usagebill_subscription": subscription or "",
                         "usagebill_missed_invoice": item.missed_invoice},
        }
        if subscription:
            params["subscription"] = subscription  # on that subscription's next invoice
        items = self.conn.client.v1.invoice_items
        try:
            made = self.sender.call("late usage invoice item", lambda: (retry and self._find(item)) or items.create(
                params=params, options={"idempotency_key": item.id}).id)
        except stripe.InvalidRequestError as e:
            outbox.mark_late_item(self.billing.ledger, item.id, error=describe(e))
            self.count("failed", describe(e), item.id, item.events)
            return
        except stripe.StripeError as e:
            raise StripeAPIError(describe(e, "late usage invoice item")) from e
        outbox.mark_late_item(self.billing.ledger, item.id, stripe_id=made)
        self.count("invoiced", None, item.id, item.events)
