"""The billing engine: moves subscriptions through time.

A subscription has pending events - a draft invoice to finalize, an unpaid first invoice to
expire, a period end to cross - and ``catch_up`` plays them in time order up to a moment: a
test clock's new frozen time when the clock advances, or the sandbox's real time for
subscriptions of customers without a clock (the ``before_request`` hook below, which only
touches subscriptions whose next event is due, found through an index kept in kv)."""

from __future__ import annotations

from ..errors import invalid
from ..routing import Request, router
from ..store import Store
from . import invoice_items, invoices, periods, subscriptions

DUE_NS = "billing.due"  # kv: subscription id -> real time of its next event (no test clock)
USAGE_FROM_NS = invoices.USAGE_FROM_NS


usage = invoices.metered_quantity


def bill_usage_so_far(store: Store, sub: dict, item: dict, now: int, real_now: int) -> None:
    """A metered item's price changes at ``now``: its usage so far this period, at the old
    price, becomes a pending invoice item, billed on the subscription's next invoice."""
    start = max(item["current_period_start"], store.kv_get(USAGE_FROM_NS, item["id"]) or 0)
    quantity = usage(store, item, sub["customer"], start, now, real_now)
    if quantity:
        invoice_items.usage_before_price_change(store, sub, item, quantity, start, now)


def _events(store: Store, sub: dict) -> list[tuple[int, int, str, str | None]]:
    """(time, order at equal times, kind, invoice id), earliest first."""
    found = [
        (inv["automatically_finalizes_at"], 0, "finalize", inv["id"])
        for inv in invoices.subscription_invoices(store, sub["id"], status="draft")
        if inv.get("automatically_finalizes_at") is not None
    ]
    if sub["status"] == "incomplete":
        found.append((sub["created"] + subscriptions.INCOMPLETE_WINDOW, 1, "expire", None))
    if sub["status"] in ("active", "past_due"):
        found.append((sub["items"]["data"][0]["current_period_end"], 2, "period_end", None))
    return sorted(found)


def schedule(store: Store, sub: dict) -> None:
    """Index the next event of a subscription that lives in real time (not on a test clock)."""
    if sub.get("test_clock"):
        return
    events = _events(store, sub)
    if events:
        store.kv_set(DUE_NS, sub["id"], events[0][0])
    else:
        store.kv_delete(DUE_NS, sub["id"])


def catch_up(store: Store, sub_id: str, until: int, real_now: int) -> None:
    """Play the subscription's events with time <= ``until``, in order."""
    while True:
        sub = store.get(subscriptions.SUBSCRIPTION, sub_id)
        if sub is None:
            store.kv_delete(DUE_NS, sub_id)
            return
        events = _events(store, sub)
        if not events or events[0][0] > until:
            break
        t, _, kind, invoice_id = events[0]
        if kind == "finalize":
            _finalize(store, sub, invoice_id, t, real_now)
        elif kind == "expire":
            _expire(store, sub, t)
        else:
            _period_end(store, sub, t, real_now)
    schedule(store, sub)


def _customer(store: Store, sub: dict) -> dict | None:
    return store.get("customer", sub["customer"])


def _refresh_status(store: Store, sub: dict) -> None:
    """active <-> past_due: past_due while a charge_automatically invoice is left unpaid."""
    if sub["status"] not in ("active", "past_due"):
        return
    unpaid = [inv for inv in invoices.subscription_invoices(store, sub["id"], status="open")
              if inv["collection_method"] == "charge_automatically"]
    sub["status"] = "past_due" if unpaid else "active"


def _finalize(store: Store, sub: dict, invoice_id: str, t: int, real_now: int) -> None:
    invoice = invoices.refresh_live(store, store.get(invoices.INVOICE, invoice_id), real_now)
    invoices.finalize(store, invoice, sub, _customer(store, sub), t)
    _refresh_status(store, sub)
    store.put(sub)


def _expire(store: Store, sub: dict, t: int) -> None:
    """An incomplete subscription whose first invoice stayed unpaid for 23 hours expires, and
    its invoice is voided; it never bills again."""
    for invoice in invoices.subscription_invoices(store, sub["id"], status="open"):
        invoices.void(store, invoice, t)
    sub["status"] = "incomplete_expired"
    sub["ended_at"] = t
    store.put(sub)


def _period_end(store: Store, sub: dict, end: int, real_now: int) -> None:
    """Cross a period end: roll the items to the next period and draft the renewal invoice
    (licensed items for the new period, metered items for the usage of the period that
    ended), or, when the subscription cancels at period end, end it and bill its usage."""
    items = sub["items"]["data"]
    start = items[0]["current_period_start"]
    customer_id = sub["customer"]
    if sub["cancel_at_period_end"]:
        sub["status"] = "canceled"
        sub["ended_at"] = end
        # "Any metered usage is charged for in a final invoice when the subscription cancels at
        # the end of the billing period" (Stripe, cancel subscriptions guide).
        specs = [invoices.LineSpec(i, usage(store, i, customer_id, start, end, real_now), start, end, live=True)
                 for i in items if subscriptions.is_metered(i)]
        if specs:
            invoice = invoices.build_invoice(
                store, sub, _customer(store, sub), created=end, billing_reason="subscription_cycle",
                period_start=start, period_end=end, specs=specs)
            sub["latest_invoice"] = invoice["id"]
        store.put(sub)
        return
    interval, count = subscriptions.interval_of(sub)
    anchor = sub["billing_cycle_anchor"]
    new_start, new_end = periods.period_at(anchor, interval, count, end)
    specs = []
    for item in items:
        if subscriptions.is_metered(item):
            specs.append(invoices.LineSpec(item, usage(store, item, customer_id, start, end, real_now), start, end,
                                           live=True))
        else:
            specs.append(invoices.LineSpec(item, item["quantity"], new_start, new_end))
        item["current_period_start"], item["current_period_end"] = new_start, new_end
    invoice = invoices.build_invoice(
        store, sub, _customer(store, sub), created=end, billing_reason="subscription_cycle",
        period_start=start, period_end=end, specs=specs)
    sub["latest_invoice"] = invoice["id"]
    subscriptions.save(store, sub)


def cancel_now(store: Store, sub: dict, now: int, real_now: int, *, invoice_now: bool, details: dict,
               prorate: bool = False) -> None:
    """DELETE /v1/subscriptions/{id}: the subscription ends now. ``prorate`` credits the unused
    time of licensed items as proration invoice items; ``invoice_now`` bills the usage of the
    current period and the pending invoice items (those credits included) on a final,
    immediately finalized invoice. Without it, usage is dropped and credits stay pending (as
    Stripe does). Drafts already created still finalize."""
    if sub["status"] in ("active", "past_due"):
        if prorate:
            for item in sub["items"]["data"]:
                if not subscriptions.is_metered(item):
                    invoice_items.proration_credit(store, sub, item, now)
        if invoice_now:
            start = sub["items"]["data"][0]["current_period_start"]
            specs = [invoices.LineSpec(i, usage(store, i, sub["customer"], start, now + 1, real_now), start, now)
                     for i in sub["items"]["data"] if subscriptions.is_metered(i)]
            for spec in specs:  # the final invoice bills the cancel's own second: no later one does
                invoices.mark_billed(store, spec.item, sub["customer"], start, now + 1)
            if specs or invoices.pending_items(store, sub):
                customer = _customer(store, sub)
                invoice = invoices.build_invoice(
                    store, sub, customer, created=now, billing_reason="subscription_cycle",
                    period_start=start, period_end=now, specs=specs)
                invoices.finalize(store, invoice, sub, customer, now)
                sub["latest_invoice"] = invoice["id"]
    sub["status"] = "canceled"
    sub["canceled_at"] = now
    sub["ended_at"] = now
    sub["cancel_at"] = None
    sub["cancellation_details"]["reason"] = "cancellation_requested"
    for key in ("comment", "feedback"):
        if details.get(key):
            sub["cancellation_details"][key] = details[key]
    store.put(sub)
    schedule(store, sub)


def cancel_customer_subscriptions(store: Store, customer_id: str, now: int, real_now: int) -> None:
    """Stripe cancels a customer's subscriptions immediately when the customer is deleted. For
    the customers resource to call from its DELETE handler (``now`` in the customer's time)."""
    for sub in store.all(subscriptions.SUBSCRIPTION, customer=customer_id):
        if sub["status"] not in ("canceled", "incomplete_expired"):
            cancel_now(store, sub, now, real_now, invoice_now=False, details={})


def clock_subscriptions(store: Store, clock_id: str) -> list[dict]:
    found: list[dict] = []
    for customer in store.all("customer", test_clock=clock_id):
        found.extend(store.all(subscriptions.SUBSCRIPTION, customer=customer["id"]))
    return found


def advance_clock(store: Store, clock_id: str, to: int, real_now: int) -> None:
    for sub in clock_subscriptions(store, clock_id):
        catch_up(store, sub["id"], to, real_now)


def preview_invoice(store: Store, sub: dict, real_now: int) -> dict:
    """The renewal invoice as it would be if the period ended now: licensed items for the next
    period, metered items with the usage so far in the current one. Not stored."""
    if sub["status"] not in ("active", "past_due"):
        raise invalid(f"No upcoming invoices for subscription: {sub['id']}", code="invoice_upcoming_none",
                      param="subscription")
    items = sub["items"]["data"]
    start, end = items[0]["current_period_start"], items[0]["current_period_end"]
    interval, count = subscriptions.interval_of(sub)
    anchor = sub["billing_cycle_anchor"]
    k = periods.period_index(anchor, interval, count, end)
    next_end = periods.boundary(anchor, interval, count, k + 1)
    specs = []
    for item in items:
        if subscriptions.is_metered(item):
            specs.append(invoices.LineSpec(item, usage(store, item, sub["customer"], start, end, real_now), start, end))
        elif not sub["cancel_at_period_end"]:
            specs.append(invoices.LineSpec(item, item["quantity"], end, next_end))
    invoice = invoices.build_invoice(
        store, sub, _customer(store, sub), created=end, billing_reason="upcoming",
        period_start=start, period_end=end, specs=specs, preview=True)
    if sub["collection_method"] == "charge_automatically" and invoice["amount_due"] > 0:
        invoice["next_payment_attempt"] = end + invoices.DRAFT_GRACE
    return invoice


@router.before_request
def catch_up_real_time(req: Request) -> None:
    """Subscriptions not on a test clock live in real time: before each request, play the
    events that have come due since (usually none: one indexed query)."""
    rows = req.store.db.execute(
        "SELECT key FROM kv WHERE ns = ? AND CAST(value AS INTEGER) <= ?", (DUE_NS, req.now)
    ).fetchall()
    for (sub_id,) in rows:
        catch_up(req.store, sub_id, req.now, req.now)
