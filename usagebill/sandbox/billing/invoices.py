"""Subscription invoices: building, finalizing, collecting, and the /v1/invoices endpoints.

Invoices are stored in their API shape (so the core's ``expand[]`` can load them by id); their
lines are stored as separate ``line_item`` objects, the invoice embedding the first ten as
Stripe does, and ``/lines`` paginating all of them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal

from ..errors import StripeError, invalid
from ..expand import register_current, register_includable
from ..resources import meters
from ..routing import Request, list_response, router
from ..store import Store
from . import amounts

INVOICE = "invoice"
LINE = "line_item"
INVOICE_ITEM = "invoiceitem"
# kv: draft invoice id -> its metered lines [line id, subscription item id, start, end], whose
# quantity is read from the meter until the invoice finalizes (usage reported in the grace hour)
LIVE_NS = "billing.live_lines"
DRAFT_GRACE = 3600  # renewal invoices stay draft "for about an hour" before finalizing
EMBEDDED_LINES = 10

# Stripe's test PaymentMethods that decline. The sandbox has no payment-method objects: a
# subscription or customer default payment method is taken as an attached test card, and
# charging it succeeds unless it is one of these.
DECLINING_TEST_METHODS = frozenset({
    "pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds", "pm_card_visa_chargeDeclined",
    "pm_card_chargeDeclinedExpiredCard", "pm_card_chargeDeclinedProcessingError",
    "pm_card_chargeCustomerFail", "pm_card_authenticationRequired",
})


@dataclass
class LineSpec:
    item: dict  # the subscription item
    quantity: int
    start: int
    end: int
    amount: int | None = None  # set for prorations; otherwise quantity x unit price
    live: bool = False  # a metered line of an ended period: re-read from the meter until finalized


USAGE_FROM_NS = "billing.item_usage_from"  # kv: item id -> when it got its price, if mid-period
BILLED_THROUGH_NS = "billing.metered_through"  # kv: "customer meter" -> [start, end) a final invoice billed


def priced_from(store: Store, item: dict, start: int, end: int) -> int:
    """Where [start, end) of an item's usage begins: when it got its current price, if inside."""
    since = store.kv_get(USAGE_FROM_NS, item["id"])
    return since if since is not None and start < since < end else start


def metered_quantity(store: Store, item: dict, customer_id: str, start: int, end: int, real_now: int) -> int:
    """A metered item's quantity over [start, end): its meter's aggregate for the customer,
    counted from the moment the item got its current price when that falls inside the range
    (added or repriced mid-period). ``real_now`` is the sandbox's real time, which decides
    which events are visible yet. Usage a cancellation's final invoice already billed (its own
    second included) is not billed again by a subscription started in that same second."""
    meter_id = item["price"]["recurring"].get("meter")
    meter = store.get("billing.meter", meter_id) if meter_id else None
    if meter is None:
        return 0
    start = priced_from(store, item, start, end)
    billed = store.kv_get(BILLED_THROUGH_NS, f"{customer_id} {meter_id}")
    if billed and billed[0] <= start < billed[1]:
        start = billed[1]
    return meters.aggregate(store, meter, customer_id, start, end, real_now) if start < end else 0


def mark_billed(store: Store, item: dict, customer_id: str, start: int, end: int) -> None:
    """A final invoice billed the item's meter over [start, end)."""
    meter_id = item["price"]["recurring"].get("meter")
    if meter_id:
        store.kv_set(BILLED_THROUGH_NS, f"{customer_id} {meter_id}", [start, end])


def decimal_string(d: Decimal) -> str:
    """Stripe's decimal strings: "2000", "0.5", never "2E+3"."""
    return format(d.normalize(), "f")


def product_name(store: Store, product_id: str) -> str:
    product = store.get("product", product_id)
    return product["name"] if product else product_id


def build_line(store: Store, sub: dict, spec: LineSpec, invoice_id: str, line_id: str) -> dict:
    price = spec.item["price"]
    unit = amounts.unit_amount(price)
    amount = amounts.line_amount(spec.quantity, unit) if spec.amount is None else spec.amount
    recurring = price["recurring"]
    return {
        "id": line_id,
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": amounts.line_description(
            spec.quantity, product_name(store, price["product"]), unit, price["currency"],
            recurring["interval"], recurring.get("interval_count") or 1,
        ),
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": dict(sub.get("metadata") or {}),  # subscription lines reflect its metadata
        "parent": {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": spec.amount is not None,
                "proration_details": {"credited_items": None},
                "subscription": sub["id"],
                "subscription_item": spec.item["id"],
            },
            "type": "subscription_item_details",
        },
        "period": {"end": spec.end, "start": spec.start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": decimal_string(unit),
        },
        "quantity": spec.quantity,
        "quantity_decimal": str(spec.quantity),
        "subscription": sub["id"],
        "subtotal": amount,
        "taxes": [],
    }


def item_line(item: dict, invoice_id: str, line_id: str, subscription_id: str | None) -> dict:
    """The line an invoice item becomes on an invoice (its own line, ``invoice_item_details``)."""
    return {
        "id": line_id,
        "object": "line_item",
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [],
        "discountable": item["discountable"],
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": dict(item.get("metadata") or {}),
        "parent": {
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": item.get("proration", False),
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        "period": dict(item["period"]),
        "pretax_credit_amounts": [],
        "pricing": item["pricing"],
        "quantity": item["quantity"],
        "quantity_decimal": item["quantity_decimal"],
        "subscription": subscription_id,
        "subtotal": item["amount"],
        "taxes": [],
    }


def pending_items(store: Store, sub: dict) -> list[dict]:
    """The customer's pending invoice items a subscription invoice picks up, oldest first:
    those not on an invoice yet, of the invoice's currency, for this subscription or none."""
    found = store.all(INVOICE_ITEM, customer=sub["customer"], invoice=None)
    return [i for i in reversed(found)
            if i["currency"] == sub["currency"] and _item_subscription(i) in (None, sub["id"])]


def _item_subscription(item: dict) -> str | None:
    return ((item.get("parent") or {}).get("subscription_details") or {}).get("subscription")


def set_totals(invoice: dict, lines: list[dict]) -> dict:
    """The amounts and the embedded first lines of a draft, from all its lines."""
    subtotal = sum(line["amount"] for line in lines)
    for name in ("amount_due", "amount_remaining", "subtotal", "subtotal_excluding_tax", "total",
                 "total_excluding_tax"):
        invoice[name] = subtotal
    invoice["lines"].update(data=lines[:EMBEDDED_LINES], has_more=len(lines) > EMBEDDED_LINES,
                            total_count=len(lines))
    return invoice


def _customer_fields(customer: dict | None) -> dict:
    customer = customer or {}
    return {
        "customer_address": customer.get("address"),
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "customer_phone": customer.get("phone"),
        "customer_shipping": customer.get("shipping"),
        "customer_tax_exempt": customer.get("tax_exempt") or "none",
    }


def build_invoice(
    store: Store,
    sub: dict,
    customer: dict | None,
    *,
    created: int,
    billing_reason: str,
    period_start: int,
    period_end: int,
    specs: list[LineSpec],
    preview: bool = False,
) -> dict:
    """A draft invoice over ``specs``. Stored (with its lines) unless ``preview``: a preview has
    an ``upcoming_in_`` id and ``il_tmp_`` lines, as Stripe's create_preview returns."""
    invoice_id = ("upcoming_" if preview else "") + Store.new_id("in")
    line_prefix = "il_tmp" if preview else "il"
    # pending invoice items come first, then the subscription's own lines
    items = pending_items(store, sub)
    lines = [item_line(i, invoice_id, Store.new_id(line_prefix), sub["id"]) for i in items]
    live = []
    for spec in specs:
        line = build_line(store, sub, spec, invoice_id, Store.new_id(line_prefix))
        lines.append(line)
        if spec.live:
            # from where its price applies now: a later repricing must not widen it again
            live.append([line["id"], spec.item["id"], priced_from(store, spec.item, spec.start, spec.end), spec.end])
    subtotal = sum(line["amount"] for line in lines)
    currency = sub["currency"]
    invoice = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": None,
        "account_tax_ids": None,
        "amount_due": subtotal,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_paid_off_stripe": 0,
        "amount_remaining": subtotal,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": not preview,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                          "status": None},
        "automatically_finalizes_at": None if preview else created + DRAFT_GRACE,
        "billing_reason": billing_reason,
        "collection_method": sub["collection_method"],
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": sub["customer"],
        "customer_account": None,
        **_customer_fields(customer),
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines[:EMBEDDED_LINES],
            "has_more": len(lines) > EMBEDDED_LINES,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": dict(sub.get("metadata") or {}), "subscription": sub["id"]},
            "type": "subscription_details",
        },
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": period_end,
        "period_start": period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_details": None,
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "test_clock": sub.get("test_clock"),
        "total": subtotal,
        "total_discount_amounts": [],
        "total_excluding_tax": subtotal,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None if preview else created,
    }
    if not preview:
        for item in items:
            item["invoice"] = invoice_id
            store.put(item)
        for line in lines:
            store.insert(line)
        store.insert(invoice)
        if live:
            store.kv_set(LIVE_NS, invoice_id, live)
    return invoice


def refresh_live(store: Store, invoice: dict, real_now: int) -> dict:
    """A draft's metered lines re-read from the meter: usage for the ended period reported
    during the grace hour counts, as on Stripe, until the invoice finalizes."""
    live = store.kv_get(LIVE_NS, invoice["id"]) if invoice["status"] == "draft" else None
    if not live:
        return invoice
    sub = store.get("subscription", invoice["parent"]["subscription_details"]["subscription"])
    if sub is None:
        return invoice
    sub_items = {i["id"]: i for i in sub["items"]["data"]}
    changed = False
    for line_id, item_id, start, end in live:
        line, item = store.get(LINE, line_id), sub_items.get(item_id)
        if line is None or item is None:
            continue
        billed = line["pricing"]["price_details"]["price"]
        if billed != item["price"]["id"]:  # repriced since (during the grace hour): the period keeps its price
            item = {**item, "price": store.get("price", billed)}
        quantity = metered_quantity(store, item, invoice["customer"], start, end, real_now)
        if quantity != line["quantity"]:
            store.put(build_line(store, sub, LineSpec(item, quantity, start, end), invoice["id"], line_id))
            changed = True
    if changed:
        set_totals(invoice, invoice_lines(store, invoice["id"]))
        store.put(invoice)
    return invoice


def payment_method(sub: dict, customer: dict | None) -> str | None:
    """The method a charge_automatically invoice is charged to, in Stripe's priority order."""
    customer = customer or {}
    return (sub.get("default_payment_method") or sub.get("default_source")
            or (customer.get("invoice_settings") or {}).get("default_payment_method")
            or customer.get("default_source"))


def charge_succeeds(sub: dict, customer: dict | None) -> bool:
    method = payment_method(sub, customer)
    return bool(method) and method not in DECLINING_TEST_METHODS


def _next_number(store: Store, customer: dict | None, customer_id: str) -> str:
    """Stripe's default, customer-level numbering: the customer's invoice prefix and a
    four-digit sequence ("3F7A2B1C-0001")."""
    prefix = (customer or {}).get("invoice_prefix") or hashlib.sha1(customer_id.encode()).hexdigest()[:8].upper()
    seq = (store.kv_get("billing.invoice_sequence", customer_id) or 0) + 1
    store.kv_set("billing.invoice_sequence", customer_id, seq)
    return f"{prefix}-{seq:04d}"


def finalize(store: Store, invoice: dict, sub: dict, customer: dict | None, t: int, *, charge: bool = True) -> dict:
    """draft -> open, then collect: a zero total is paid at once; charge_automatically charges
    the payment method (no method or a declining one leaves it open); send_invoice gets a due
    date ``days_until_due`` days out. ``charge=False`` leaves the invoice open (a
    ``default_incomplete`` first invoice waits for its payment to be confirmed). Metered lines
    must have been refreshed (``refresh_live``) by the caller; from here they are fixed."""
    store.kv_delete(LIVE_NS, invoice["id"])
    invoice["number"] = _next_number(store, customer, invoice["customer"])
    invoice["status"] = "open"
    invoice["status_transitions"]["finalized_at"] = t
    invoice["effective_at"] = t
    invoice["automatically_finalizes_at"] = None
    _apply_customer_balance(store, invoice, customer)
    if invoice["collection_method"] == "send_invoice":
        invoice["due_date"] = t + 86400 * int(sub.get("days_until_due") or 0)
    if invoice["amount_due"] == 0:
        _mark_paid(invoice, t)
    elif invoice["collection_method"] == "charge_automatically" and charge:
        invoice["attempted"] = True
        invoice["attempt_count"] = 1
        if charge_succeeds(sub, customer):
            _mark_paid(invoice, t)
        else:
            invoice["auto_advance"] = False  # no smart retries in the sandbox
    store.put(invoice)
    return invoice


def _apply_customer_balance(store: Store, invoice: dict, customer: dict | None) -> None:
    """Stripe's customer credit balance at finalization: a credit (negative balance) lowers
    the amount due, and a negative total is not charged but credited to the balance."""
    balance = int((customer or {}).get("balance") or 0)
    due = invoice["total"] + balance
    invoice["starting_balance"] = balance
    invoice["ending_balance"] = min(due, 0)
    invoice["amount_due"] = invoice["amount_remaining"] = max(due, 0)
    if customer is not None and customer.get("balance", 0) != invoice["ending_balance"]:
        customer["balance"] = invoice["ending_balance"]
        store.put(customer)


def _mark_paid(invoice: dict, t: int) -> None:
    invoice["status"] = "paid"
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["auto_advance"] = False
    invoice["status_transitions"]["paid_at"] = t


def void(store: Store, invoice: dict, t: int) -> dict:
    invoice["status"] = "void"
    invoice["amount_remaining"] = 0
    invoice["auto_advance"] = False
    invoice["status_transitions"]["voided_at"] = t
    store.put(invoice)
    return invoice


def subscription_invoices(store: Store, sub_id: str, status: str | None = None) -> list[dict]:
    """A subscription's invoices, newest first (the link lives under ``parent`` in this API)."""
    sql = ("SELECT data FROM objects WHERE object = 'invoice' "
           "AND json_extract(data, '$.parent.subscription_details.subscription') = ?")
    args: list = [sub_id]
    if status:
        sql += " AND json_extract(data, '$.status') = ?"
        args.append(status)
    return [json.loads(r[0]) for r in store.db.execute(sql + " ORDER BY seq DESC", args)]


def invoice_lines(store: Store, invoice_id: str) -> list[dict]:
    """All lines of a stored invoice, in invoice order."""
    return list(reversed(store.all(LINE, invoice=invoice_id)))


def delete_invoice(store: Store, invoice_id: str) -> None:
    for line in store.all(LINE, invoice=invoice_id):
        store.delete(LINE, line["id"])
    store.delete(INVOICE, invoice_id)
    store.kv_delete(LIVE_NS, invoice_id)


# -- fields Stripe returns only when asked for with expand[] --------------------------------
register_includable(INVOICE, "payments", lambda store, inv: {
    "object": "list", "data": [], "has_more": False, "url": f"/v1/invoice_payments?invoice={inv['id']}"})  # none emulated
register_includable(INVOICE, "threshold_reason", lambda store, inv: None)  # no billing thresholds
register_includable(INVOICE, "confirmation_secret", lambda store, inv: None)  # no PaymentIntents
register_current(INVOICE, refresh_live)  # an expanded draft shows its usage live too


# -- endpoints ------------------------------------------------------------------------------
@router.route("GET", "/v1/invoices/{id}", params="InvoiceRetrieveParams")
def retrieve_invoice(req: Request, id: str) -> dict:
    return refresh_live(req.store, req.store.find(INVOICE, id), req.now)


@router.route("GET", "/v1/invoices", params="InvoiceListParams")
def list_invoices(req: Request) -> dict:
    p = req.params
    if p.get("subscription"):
        found = subscription_invoices(req.store, p["subscription"])
    else:
        found = req.store.all(INVOICE)
    for field in ("customer", "status", "collection_method"):
        if p.get(field):
            found = [inv for inv in found if inv.get(field) == p[field]]
    page = list_response(req, found, "/v1/invoices")
    page["data"] = [refresh_live(req.store, inv, req.now) for inv in page["data"]]
    return page


@router.route("GET", "/v1/invoices/{id}/lines", params="InvoiceLineItemListParams")
def list_invoice_lines(req: Request, id: str) -> dict:
    refresh_live(req.store, req.store.find(INVOICE, id), req.now)
    return list_response(req, invoice_lines(req.store, id), f"/v1/invoices/{id}/lines")


@router.route("POST", "/v1/invoices/create_preview", params="InvoiceCreatePreviewParams")
def create_preview(req: Request) -> dict:
    from .engine import preview_invoice  # engine imports this module

    p = req.params
    unsupported = [k for k in p if k not in ("customer", "subscription", "expand")]
    if unsupported:
        raise invalid(
            f"The usagebill sandbox previews a subscription's next renewal only; it does not emulate "
            f"`{unsupported[0]}`.", param=unsupported[0])
    customer_id, sub_id = p.get("customer"), p.get("subscription")
    if not customer_id and not sub_id:
        raise invalid("Missing required param: customer.", param="customer")
    if sub_id:
        sub = req.store.find("subscription", sub_id, param="subscription")
        if customer_id and sub["customer"] != customer_id:
            raise invalid(f"The subscription {sub_id} does not belong to the customer {customer_id}.",
                          param="subscription")
    else:
        req.store.find("customer", customer_id, param="customer")
        live = [s for s in req.store.all("subscription", customer=customer_id)
                if s["status"] in ("active", "past_due", "trialing")]
        if not live:
            raise StripeError(404, f"No upcoming invoices for customer: {customer_id}",
                              code="invoice_upcoming_none")
        sub = min(live, key=lambda s: s["items"]["data"][0]["current_period_end"])
    return preview_invoice(req.store, sub, req.now)
