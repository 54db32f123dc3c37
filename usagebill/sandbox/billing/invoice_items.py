"""Invoice items: /v1/invoiceitems.

A pending item (``invoice`` null) waits for the customer's next subscription invoice, which
takes it as a line of its own (``invoices.build_invoice``; ``create_preview`` shows it too).
Given ``invoice``, it goes onto that draft at once. ``subscription`` keeps it for that
subscription's invoices. It can be deleted while pending or while its invoice is a draft."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from .. import clock
from ..currencies import check_currency
from ..errors import StripeError, invalid
from ..resources._common import created_filter, reference
from ..routing import Request, list_response, router
from ..store import Store
from . import amounts, invoices
from .params import metadata, refuse_unemulated, required

ITEM = invoices.INVOICE_ITEM
_UNEMULATED = ("customer_account", "discounts", "price_data", "quantity_decimal", "tax_behavior", "tax_code",
               "tax_rates")


def _not_editable(invoice_id: str) -> StripeError:
    return invalid(f"The invoice {invoice_id} is no longer a draft: its invoice items cannot change.",
                   param="invoice", code="invoice_not_editable")


def _draft(req: Request, invoice_id: str, customer_id: str) -> dict:
    invoice = reference(req, invoices.INVOICE, invoice_id, "invoice")
    if invoice["customer"] != customer_id:
        raise invalid(f"The invoice {invoice_id} belongs to another customer.", param="invoice")
    if invoice["status"] != "draft":
        raise _not_editable(invoice_id)
    return invoice


def _pricing(req: Request, p: dict, customer: dict) -> tuple[int, str, dict, int, str | None]:
    """(amount, currency, pricing, quantity, default description) from ``amount``,
    ``unit_amount_decimal`` x ``quantity`` or ``pricing[price]`` x ``quantity``."""
    given = [n for n in ("amount", "unit_amount_decimal", "pricing") if p.get(n) not in (None, "", {})]
    if len(given) > 1:
        raise StripeError(400, f"You may only specify one of these parameters: {', '.join(given)}.",
                          code="parameters_exclusive", param=given[-1])
    if not given:
        raise StripeError(400, "Missing required param: amount.", code="parameter_missing", param="amount")
    quantity = p.get("quantity", 1)
    if quantity < 0:
        raise invalid("This value must be greater than or equal to 0.", param="quantity")
    if given[0] == "pricing":
        price = reference(req, "price", required(p["pricing"], "price", "pricing[price]"), "pricing[price]")
        if price.get("recurring") and price["recurring"].get("usage_type") == "metered":
            raise invalid(f"The price {price['id']} is metered; invoice items take licensed or one-time prices.",
                          param="pricing[price]")
        if p.get("currency") and p["currency"].lower() != price["currency"]:
            raise invalid("The currency must match the price's currency.", param="currency")
        unit = amounts.unit_amount(price)
        pricing = {"price_details": {"price": price["id"], "product": price["product"]},
                   "type": "price_details", "unit_amount_decimal": invoices.decimal_string(unit)}
        return (amounts.line_amount(quantity, unit), price["currency"], pricing, quantity,
                invoices.product_name(req.store, price["product"]))
    currency = (p.get("currency") or customer.get("currency") or "").lower()
    if not currency:
        raise StripeError(400, "Missing required param: currency.", code="parameter_missing", param="currency")
    check_currency(currency)
    if given[0] == "amount":
        if "quantity" in p and quantity != 1:
            raise invalid("Pass unit_amount_decimal with quantity; amount is the item's total.", param="quantity")
        unit = Decimal(p["amount"])
        amount = p["amount"]
    else:
        unit = Decimal(p["unit_amount_decimal"])
        amount = amounts.line_amount(quantity, unit)
    pricing = {"price_details": None, "type": "price_details", "unit_amount_decimal": invoices.decimal_string(unit)}
    return amount, currency, pricing, quantity, None


@router.route("POST", "/v1/invoiceitems", params="InvoiceItemCreateParams")
def create_invoice_item(req: Request) -> dict:
    p, store = req.params, req.store
    refuse_unemulated(p, _UNEMULATED)
    customer = reference(req, "customer", required(p, "customer"), "customer")
    amount, currency, pricing, quantity, description = _pricing(req, p, customer)
    sub_id = p.get("subscription") or None
    if sub_id:
        sub = reference(req, "subscription", sub_id, "subscription")
        if sub["customer"] != customer["id"]:
            raise invalid(f"The subscription {sub_id} belongs to another customer.", param="subscription")
    invoice = _draft(req, p["invoice"], customer["id"]) if p.get("invoice") else None
    if invoice is not None and invoice["currency"] != currency:
        raise invalid(f"The invoice {invoice['id']} is in {invoice['currency']}, the item in {currency}.",
                      param="currency")
    now = clock.customer_now(store, customer["id"], req.now)
    period = p.get("period") or {"start": now, "end": now}
    if period["end"] < period["start"]:
        raise invalid("The period end must be greater than or equal to the period start.", param="period[end]")
    item = _build(customer, now, amount=amount, currency=currency, pricing=pricing, quantity=quantity,
                  description=p.get("description") or description, sub_id=sub_id, period=period,
                  meta=metadata(p.get("metadata")), discountable=p.get("discountable", amount >= 0))
    store.insert(item)
    if invoice is not None:
        _attach(store, item, invoice)
    return item


def usage_before_price_change(store: Store, sub: dict, sub_item: dict, quantity: int, start: int, end: int) -> dict:
    """The pending item Stripe makes when a metered item's price changes mid-period (flexible
    billing mode): the usage of [start, end) at the old price, for the next invoice."""
    price = sub_item["price"]
    unit = amounts.unit_amount(price)
    pricing = {"price_details": {"price": price["id"], "product": price["product"]},
               "type": "price_details", "unit_amount_decimal": invoices.decimal_string(unit)}
    customer = store.get("customer", sub["customer"]) or {"id": sub["customer"]}
    item = _build(customer, end, amount=amounts.line_amount(quantity, unit), currency=price["currency"],
                  pricing=pricing, quantity=quantity, description=invoices.product_name(store, price["product"]),
                  sub_id=sub["id"], period={"start": start, "end": end}, meta={}, discountable=True)
    item["proration"] = True
    item["parent"]["subscription_details"]["subscription_item"] = sub_item["id"]
    store.insert(item)
    return item


def _build(customer: dict, now: int, *, amount: int, currency: str, pricing: dict, quantity: int,
           description: str | None, sub_id: str | None, period: dict, meta: dict, discountable: bool) -> dict:
    return {
        "id": Store.new_id("ii"),
        "object": ITEM,
        "amount": amount,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "date": now,
        "description": description,
        "discountable": discountable,
        "discounts": [],
        "frozen_fields": [],  # only derived items (prorations) have frozen fields
        "invoice": None,
        "invoicing_rules": None,
        "livemode": False,
        "metadata": meta,
        "net_amount": None if discountable else amount,
        "parent": ({"subscription_details": {"subscription": sub_id, "subscription_item": None},
                    "type": "subscription_details"} if sub_id else None),
        "period": {"end": period["end"], "start": period["start"]},
        "pricing": pricing,
        "proration": False,
        "proration_details": {"credited_items": None, "discount_amounts": []},
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": customer.get("test_clock"),
    }


def _attach(store: Store, item: dict, invoice: dict) -> None:
    sub_id = (invoice.get("parent") or {}).get("subscription_details", {}).get("subscription")
    store.insert(invoices.item_line(item, invoice["id"], Store.new_id("il"), sub_id))
    item["invoice"] = invoice["id"]
    store.put(item)
    invoices.set_totals(invoice, invoices.invoice_lines(store, invoice["id"]))
    store.put(invoice)


def _detach(store: Store, item: dict) -> None:
    invoice = store.get(invoices.INVOICE, item["invoice"])
    for line in store.all(invoices.LINE, invoice=item["invoice"]):
        if (line["parent"].get("invoice_item_details") or {}).get("invoice_item") == item["id"]:
            store.delete(invoices.LINE, line["id"])
    if invoice is not None:
        invoices.set_totals(invoice, invoices.invoice_lines(store, invoice["id"]))
        store.put(invoice)


@router.route("GET", "/v1/invoiceitems/{id}", params="InvoiceItemRetrieveParams")
def retrieve_invoice_item(req: Request, id: str) -> dict:
    return req.store.find(ITEM, id, kind="invoiceitem")


@router.route("GET", "/v1/invoiceitems", params="InvoiceItemListParams")
def list_invoice_items(req: Request) -> dict:
    p = req.params
    refuse_unemulated(p, ("customer_account",))
    filters = {k: p[k] for k in ("customer", "invoice") if p.get(k)}
    found = req.store.all(ITEM, **filters)
    if "pending" in p:
        found = [i for i in found if (i["invoice"] is None) == p["pending"]]
    found = created_filter(found, p.get("created"), field="date")
    return list_response(req, found, "/v1/invoiceitems")


@router.route("DELETE", "/v1/invoiceitems/{id}", params="InvoiceItemDeleteParams")
def delete_invoice_item(req: Request, id: str) -> dict:
    """Only while pending, or while the invoice it is on is still a draft."""
    store = req.store
    item = store.find(ITEM, id, kind="invoiceitem")
    if item["invoice"] is not None:
        invoice = store.get(invoices.INVOICE, item["invoice"])
        if invoice is not None and invoice["status"] != "draft":
            raise _not_editable(item["invoice"])
        _detach(store, item)
    store.delete(ITEM, id)
    return {"id": id, "object": ITEM, "deleted": True}


def delete_customer_items(store: Store, customer_id: str) -> None:
    """For a deleted test clock: its customers' items go with them."""
    for item in store.all(ITEM, customer=customer_id):
        store.delete(ITEM, item["id"])


def proration_credit(store: Store, sub: dict, sub_item: dict, now: int) -> dict:
    """The credit for the unused time of a licensed item from ``now`` to its period end (a
    cancellation with ``prorate``): a pending proration invoice item, amount < 0."""
    start, end = sub_item["current_period_start"], sub_item["current_period_end"]
    price, quantity = sub_item["price"], sub_item["quantity"]
    unit = amounts.unit_amount(price)
    share = Decimal(max(end - now, 0)) / Decimal(end - start)
    amount = -amounts.line_amount(1, unit * quantity * share)
    name = invoices.product_name(store, price["product"])
    day = datetime.fromtimestamp(now, timezone.utc).strftime("%d %b %Y")
    item = {
        "id": Store.new_id("ii"),
        "object": ITEM,
        "amount": amount,
        "currency": price["currency"],
        "customer": sub["customer"],
        "customer_account": None,
        "date": now,
        "description": f"Unused time on {f'{quantity} × ' if quantity != 1 else ''}{name} after {day}",
        "discountable": False,  # "Always false for prorations"
        "discounts": [],
        "frozen_fields": ["discounts", "pricing", "quantity"],  # derived values
        "invoice": None,
        "invoicing_rules": None,
        "livemode": False,
        "metadata": {},
        "net_amount": amount,
        "parent": {"subscription_details": {"subscription": sub["id"], "subscription_item": sub_item["id"]},
                   "type": "subscription_details"},
        "period": {"end": end, "start": now},
        "pricing": {"price_details": {"price": price["id"], "product": price["product"]}, "type": "price_details",
                    "unit_amount_decimal": invoices.decimal_string(Decimal(amount) / quantity if quantity else unit)},
        "proration": True,
        "proration_details": {"credited_items": None, "discount_amounts": []},
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": sub.get("test_clock"),
    }
    return store.insert(item)
