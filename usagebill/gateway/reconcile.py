"""``reconcile``: does Stripe bill what the ledger holds? Per customer, feature and billing
period:

- **closed** periods (Stripe finalized their invoice): the ledger's units against the
  quantities Stripe *billed*, the usage lines of that invoice plus the late-usage invoice items
  made for the period (``usagebill.closing``). Any difference, and any unit still pending or
  refused, is money at risk.
- **open** periods (the current one, a renewal still a draft in its grace hour, or an ended
  period Stripe has no invoice for yet): nothing is billed yet, so the units the ledger
  delivered are compared with Stripe's meter totals (the meter-summary check: it is the one
  that catches a meter event Stripe dropped or one sent behind usagebill's back while there is
  still time to fix it), and the pending units are shown.

Stripe wants minute-aligned meter windows, so an open period is widened to whole minutes on
both sides and the ledger summed over that same window (events by their own time, coalesced
batches by the batch's time, as Stripe sees them)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..billing import Billing
from ..closing import usage_window
from ..errors import NotFoundError, ValidationError
from ..ledger import closing as ledger_closing
from ..ledger import outbox
from ..rules import MAX_AHEAD
from . import mapping, meter_errors
from .client import Connection, stripe_errors
from .delivery import default_rate
from .invoices import mirror_period_invoices
from .late_usage import LATE_KEY
from .meter_sender import RateLimiter

RECENT = 5 * 60  # Stripe's summaries lag ingestion: deliveries this recent may not show yet
CLOSED, OPEN = "closed", "open"


@dataclass(frozen=True)
class Line:
    user_id: str
    feature: str
    period_start: int
    period_end: int
    start_time: int  # the window compared (minute-aligned for an open period)
    end_time: int
    ledger: int  # closed: every unit of the period in the ledger; open: the units delivered
    stripe: int  # closed: units on Stripe's invoices for it; open: Stripe's meter total
    pending: int  # units not in Stripe yet (for a closed period: not billed)
    recent: bool = False  # open: something was delivered in the last minutes (totals may lag)
    state: str = OPEN  # closed | open
    invoice_id: str | None = None  # the period's invoice, when Stripe has made it
    failed: int = 0  # units Stripe refused (status lists them)
    late: int = 0  # of ``stripe``: units billed as late-usage invoice items

    @property
    def difference(self) -> int:
        return self.stripe - self.ledger

    @property
    def at_risk(self) -> bool:
        """Money at risk: a closed period billed otherwise than the ledger says."""
        return self.state == CLOSED and bool(self.difference or self.pending or self.failed)


@dataclass
class ReconcileResult:
    lines: list[Line] = field(default_factory=list)
    dropped: int = 0  # usage events Stripe dropped after accepting them, found now (status lists them)
    unattributed_drops: int = 0  # drops Stripe reported without naming the event

    @property
    def differences(self) -> list[Line]:
        return [x for x in self.lines if x.difference or x.at_risk or x.failed]

    @property
    def at_risk(self) -> list[Line]:
        return [x for x in self.lines if x.at_risk]

    @property
    def ok(self) -> bool:
        return not self.differences


def minute_window(start: int, end: int) -> tuple[int, int]:
    return start - start % 60, -(-end // 60) * 60


def _features(billing: Billing, sub, user_id: str) -> list[str]:
    """The plan's usage features and any other feature the customer has events of."""
    keys = [k for k, f in sub.plan.features.items() if f.track_usage]
    keys += [k for k in outbox.features_of(billing.ledger, user_id) if k not in keys]
    return [k for k in keys if mapping.get(billing.ledger, mapping.meter_key(k))]


@dataclass(frozen=True)
class _Period:
    sub: object  # the ledger's Subscription
    start: int
    end: int
    invoice_id: str | None
    closed: bool


def _periods(billing: Billing, conn: Connection, user_id: str, count: int) -> list[_Period]:
    """The customer's newest ``count`` billing periods over all its subscriptions: those Stripe
    has an invoice for (closed when final), then the ended and current ones it has none for."""
    now = billing.now_for(user_id)
    found: list[_Period] = []
    for sub in billing.subscriptions.all_of(user_id):
        invoiced = {p.period_start: p for p in mirror_period_invoices(billing, conn, sub)}
        last = min(now, sub.canceled_at) if sub.canceled_at is not None else now
        start, end = sub.period(sub.anchor)
        while start <= last:
            p = invoiced.pop(start, None)
            if p is not None:
                found.append(_Period(sub, start, p.period_end, p.invoice_id, p.finalized))
            elif sub.canceled_at is None or start < sub.canceled_at:
                found.append(_Period(sub, start, min(end, sub.canceled_at or end), None, False))
            start, end = sub.period(end)
        found += [_Period(sub, p.period_start, p.period_end, p.invoice_id, p.finalized) for p in invoiced.values()]
    found.sort(key=lambda p: (p.start, p.sub.id), reverse=True)
    return found[:count]


class _Billed:
    """What Stripe billed a customer, per feature and period: the lines of its final invoice
    for the feature's product, and the late-usage invoice items (billed already, or pending
    for the next invoice)."""

    def __init__(self, billing: Billing, conn: Connection, customer: str):
        self.billing, self.conn = billing, conn
        self._lines: dict[str, list] = {}
        self.late: dict[tuple[str, str | None, int], int] = {}
        items = conn.client.v1.invoice_items.list(params={"customer": customer, "limit": 100})
        for ii in items.auto_paging_iter():
            meta = ii.metadata.to_dict() if ii.metadata is not None else {}
            if LATE_KEY in meta:
                # one subscription's period: a re-subscription's first period may start in the
                # same second as the cancelled one's last
                key = (meta.get("usagebill_feature"), meta.get("usagebill_subscription") or None,
                       int(meta.get("usagebill_period_start", 0)))
                self.late[key] = self.late.get(key, 0) + (ii.quantity or 0)

    def usage_lines(self, invoice_id: str, feature: str) -> int:
        if invoice_id not in self._lines:
            listed = self.conn.client.v1.invoices.line_items.list(invoice_id, params={"limit": 100})
            self._lines[invoice_id] = list(listed.auto_paging_iter())
        product = mapping.get(self.billing.ledger, mapping.feature_product_key(feature))
        total = 0
        for line in self._lines[invoice_id]:
            # metered lines, and the invoice items of usage before a price change (at the old
            # price, the feature's product); late-usage items name no product: counted apart
            details = getattr(getattr(line, "pricing", None), "price_details", None)
            if details is not None and details.product == product:
                total += line.quantity or 0
        return total


def reconcile(billing: Billing, conn: Connection, *, user_id: str | None = None, periods: int = 3,
              closed_only: bool = False) -> ReconcileResult:
    """Compare the last ``periods`` billing periods of each customer in Stripe (or one's);
    ``closed_only``: only the periods Stripe has invoiced for good (the cron check)."""
    if periods < 1:
        raise ValidationError(f"periods must be at least 1, not {periods}")
    if user_id is not None:
        if not billing.subscriptions.all_of(user_id):
            billing.subscriptions.require(user_id)  # says there is none, and how to make one
        if not billing.customers.get(user_id).stripe_customer_id:
            raise NotFoundError(f"customer {user_id!r} is not in Stripe: nothing to reconcile")
        users = [user_id]
    else:
        users = ledger_closing.customers_in_stripe(billing.ledger)
    result = ReconcileResult()
    # events the stream accepted and Stripe dropped later are failed, not delivered
    absorbed = meter_errors.absorb(billing.ledger, conn)
    result.dropped, result.unattributed_drops = absorbed.events, absorbed.unattributed
    summaries = conn.client.v1.billing.meters.event_summaries
    limiter = RateLimiter(default_rate(conn))
    recent_since = int(time.time()) - RECENT
    for uid in users:
        customer = billing.customers.get(uid).stripe_customer_id
        now = billing.now_for(uid)
        with stripe_errors(f"invoices of {uid}"):
            found = _periods(billing, conn, uid, periods)
            billed = _Billed(billing, conn, customer) if any(p.closed for p in found) else None
        for p in found:
            if closed_only and not p.closed:
                continue
            lo, hi = usage_window(p.sub, p.start, p.end)
            for feature in _features(billing, p.sub, uid):
                if p.closed:
                    units = outbox.units_in_window(billing.ledger, uid, feature, lo, hi)
                    late = billed.late.get((feature, p.sub.stripe_subscription_id, p.start), 0)
                    with stripe_errors(f"invoice {p.invoice_id}"):
                        on_invoice = billed.usage_lines(p.invoice_id, feature)
                    result.lines.append(Line(uid, feature, p.start, p.end, lo, hi, units.total, on_invoice + late,
                                             units.pending, state=CLOSED, invoice_id=p.invoice_id,
                                             failed=units.failed, late=late))
                    continue
                # no event can be later than now + 5 minutes: don't ask Stripe about the future
                wlo, whi = minute_window(lo, min(hi, now + MAX_AHEAD))
                delivered, pending, recent = outbox.delivered_in_window(billing.ledger, uid, feature, wlo, whi,
                                                                        recent_since)
                meter = mapping.get(billing.ledger, mapping.meter_key(feature))
                limiter.wait()
                with stripe_errors(f"meter event summaries of {uid} ({feature})"):
                    page = summaries.list(meter, params={"customer": customer, "start_time": wlo, "end_time": whi})
                    stripe_total = sum(s.aggregated_value for s in page.auto_paging_iter())
                # refused units of the open period are money at risk too, until a retry sends them
                refused = outbox.units_in_window(billing.ledger, uid, feature, lo, hi).failed
                result.lines.append(Line(uid, feature, p.start, p.end, wlo, whi, delivered, round(stripe_total),
                                         pending, recent, OPEN, p.invoice_id, failed=refused))
    return result
