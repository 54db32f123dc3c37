"""Subscriptions and subscription items: /v1/subscriptions, /v1/subscription_items.

In this API version the billing period lives on the items (``current_period_start/end``),
not on the subscription. All items share one currency and one interval, so they share one
period; the period is always recomputed from ``billing_cycle_anchor`` (periods.py)."""

from __future__ import annotations

from decimal import Decimal

from .. import clock
from ..currencies import check_currency
from ..errors import StripeError, invalid
from ..routing import Request, list_response, router
from ..store import Store
from . import engine, invoices, periods
from .params import as_list, metadata, refuse_unemulated, required

SUBSCRIPTION = "subscription"
ITEM = "subscription_item"
INCOMPLETE_WINDOW = 23 * 3600  # an unpaid first invoice expires the subscription after 23 hours

# Accepted by Stripe, but their billing effect is not reproduced here (params.refuse_unemulated).
_UNEMULATED_CREATE = (
    "add_invoice_items", "application_fee_percent", "backdate_start_date", "billing_cycle_anchor_config",
    "billing_schedules", "billing_thresholds", "cancel_at", "default_tax_rates", "discounts",
    "on_behalf_of", "pending_invoice_item_interval", "transfer_data", "trial_end", "trial_from_plan",
    "trial_period_days", "trial_settings",
)
_UNEMULATED_UPDATE = (
    "add_invoice_items", "application_fee_percent", "billing_cycle_anchor", "billing_schedules",
    "billing_thresholds", "cancel_at", "default_tax_rates", "discounts", "items", "on_behalf_of",
    "pause_collection", "pending_invoice_item_interval", "proration_date", "transfer_data",
    "trial_end", "trial_from_plan", "trial_settings",
)


def plan_from_price(price: dict) -> dict:
    """The legacy ``plan`` view of a recurring price, which items still carry."""
    recurring = price["recurring"]
    return {
        "id": price["id"],
        "object": "plan",
        "active": price.get("active", True),
        "amount": price.get("unit_amount"),
        "amount_decimal": price.get("unit_amount_decimal"),
        "billing_scheme": price.get("billing_scheme", "per_unit"),
        "created": price.get("created"),
        "currency": price["currency"],
        "interval": recurring["interval"],
        "interval_count": recurring.get("interval_count") or 1,
        "livemode": False,
        "metadata": price.get("metadata") or {},
        "meter": recurring.get("meter"),
        "nickname": price.get("nickname"),
        "product": price["product"],
        "tiers_mode": price.get("tiers_mode"),
        "transform_usage": None,
        "trial_period_days": recurring.get("trial_period_days"),
        "usage_type": recurring.get("usage_type", "licensed"),
    }


def interval_of(sub: dict) -> tuple[str, int]:
    recurring = sub["items"]["data"][0]["price"]["recurring"]
    return recurring["interval"], recurring.get("interval_count") or 1


def is_metered(item: dict) -> bool:
    return item["price"]["recurring"].get("usage_type") == "metered"


def save(store: Store, sub: dict) -> dict:
    """Store the subscription and each of its items (items are also their own objects)."""
    for item in sub["items"]["data"]:
        if store.get(ITEM, item["id"]) is None:
            store.insert(item)
        else:
            store.put(item)
    store.put(sub)
    return sub


def get(store: Store, id: str, param: str = "id") -> dict:
    return store.find(SUBSCRIPTION, id, param=param)


def _customer(store: Store, customer_id: str) -> dict:
    return store.find("customer", customer_id, param="customer")


def _price(store: Store, price_id: str, param: str) -> dict:
    price = store.find("price", price_id, param=param)
    if price.get("type") != "recurring" or not price.get("recurring"):
        raise invalid(
            "The price specified is set to `type=one_time` but this field only accepts prices with "
            "`type=recurring`.", param=param)
    if not price.get("active", True):
        raise invalid("The price specified is inactive. This field only accepts active prices.", param=param)
    if price.get("billing_scheme", "per_unit") != "per_unit" or price.get("transform_quantity"):
        raise invalid("The usagebill sandbox bills per-unit prices only (no tiers, no transform_quantity).",
                      param=param)
    if price.get("unit_amount") is None and price.get("unit_amount_decimal") is None:
        raise invalid("The usagebill sandbox cannot bill a price without a unit amount.", param=param)
    return price


def _parse_items(store: Store, raw: list) -> list[dict]:
    items: list[dict] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise invalid("Invalid hash", param=f"items[{i}]")
        for name in ("price_data", "plan", "discounts", "tax_rates", "billing_thresholds"):
            if entry.get(name) not in (None, "", []):
                raise invalid(f"The usagebill sandbox does not emulate `items[{i}][{name}]`.",
                              param=f"items[{i}][{name}]")
        price = _price(store, required(entry, "price", f"items[{i}][price]"), f"items[{i}][price]")
        if price["id"] in seen:
            raise invalid(f"Cannot add multiple subscription items with the same price: {price['id']}",
                          param="items")
        seen.add(price["id"])
        metered = price["recurring"].get("usage_type") == "metered"
        quantity = entry.get("quantity")
        if metered and quantity is not None:
            raise invalid(
                f"Quantity should not be specified where usage_type is `metered`. Remove quantity from `items[{i}]`",
                param=f"items[{i}][quantity]")
        if quantity is not None and int(quantity) < 0:
            raise invalid("This value must be greater than or equal to 0.", param=f"items[{i}][quantity]")
        items.append({
            "price": price,
            "quantity": None if metered else (1 if quantity is None else int(quantity)),
            "metadata": metadata(entry.get("metadata"), f"items[{i}][metadata]"),
        })
    first = items[0]["price"]
    for i, item in enumerate(items[1:], start=1):
        price = item["price"]
        if price["currency"] != first["currency"]:
            raise invalid(
                "Currency of all prices must match: the subscription's prices use "
                f"`{first['currency']}` and `{price['currency']}`.", param=f"items[{i}][price]")
        a, b = first["recurring"], price["recurring"]
        if (a["interval"], a.get("interval_count") or 1) != (b["interval"], b.get("interval_count") or 1):
            # classic billing mode refuses this; flexible mode (the default since 2025-09-30.clover)
            # accepts mixed intervals, which the sandbox does not emulate
            raise invalid(
                "The price specified has a different billing interval than the other prices on this "
                "subscription. The usagebill sandbox only emulates subscriptions whose prices share "
                "`recurring.interval` and `recurring.interval_count`.", param=f"items[{i}][price]")
    return items


@router.route("POST", "/v1/subscriptions", params="SubscriptionCreateParams")
def create_subscription(req: Request) -> dict:
    p, store = req.params, req.store
    refuse_unemulated(p, _UNEMULATED_CREATE)
    if (p.get("automatic_tax") or {}).get("enabled"):
        raise invalid("The usagebill sandbox does not emulate `automatic_tax`.", param="automatic_tax")
    customer = _customer(store, required(p, "customer"))
    raw_items = as_list(p.get("items"), "items")
    if not raw_items:
        raise StripeError(400, "Missing required param: items.", code="parameter_missing", param="items")
    items = _parse_items(store, raw_items)
    collection = p.get("collection_method") or "charge_automatically"
    days_until_due = p.get("days_until_due")
    if collection == "send_invoice" and days_until_due is None:
        raise invalid("Missing required param: days_until_due.", param="days_until_due")
    if collection == "charge_automatically" and days_until_due is not None:
        raise invalid("Invalid days_until_due: days_until_due can only be set when collection_method is "
                      "send_invoice.", param="days_until_due")
    if p.get("currency") and check_currency(p["currency"]) != items[0]["price"]["currency"]:
        raise invalid("The currency must match the currency of the subscription's prices.", param="currency")

    now = clock.customer_now(store, customer["id"], req.now)
    interval, count = items[0]["price"]["recurring"]["interval"], items[0]["price"]["recurring"].get("interval_count") or 1
    anchor = p.get("billing_cycle_anchor")
    if anchor is None:
        anchor = now
    else:
        anchor = int(anchor)
        natural = periods.boundary(now, interval, count, 1)
        if anchor < now:
            raise invalid("billing_cycle_anchor cannot be in the past.", param="billing_cycle_anchor")
        if anchor > natural:
            raise invalid(
                f"billing_cycle_anchor cannot be later than next natural billing date ({natural}) for plan",
                param="billing_cycle_anchor")
    # the first period runs from the start to the anchor when the anchor is in the future
    period_end = anchor if anchor > now else periods.boundary(anchor, interval, count, 1)

    sub_id = Store.new_id("sub")
    sub = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": anchor,
        "billing_cycle_anchor_config": None,
        # new subscriptions default to flexible billing mode since API version 2025-09-30.clover
        "billing_mode": {"flexible": None, "type": (p.get("billing_mode") or {}).get("type") or "flexible",
                         "updated_at": None},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": bool(p.get("cancel_at_period_end", False)),
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection,
        "created": now,
        "currency": items[0]["price"]["currency"],
        "customer": customer["id"],
        "customer_account": None,
        "days_until_due": None if days_until_due is None else int(days_until_due),
        "default_payment_method": p.get("default_payment_method"),
        "default_source": p.get("default_source"),
        "default_tax_rates": [],
        "description": p.get("description"),
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {"object": "list", "data": [], "has_more": False, "total_count": len(items),
                  "url": f"/v1/subscription_items?subscription={sub_id}"},
        "latest_invoice": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": metadata(p.get("metadata")),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "presentment_details": None,
        "schedule": None,
        "start_date": now,
        "status": "active",
        "status_details": None,
        "test_clock": customer.get("test_clock"),
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }
    if sub["cancel_at_period_end"]:
        sub["cancel_at"], sub["canceled_at"] = period_end, now
        sub["cancellation_details"]["reason"] = "cancellation_requested"
    for parsed in items:
        sub["items"]["data"].append(_new_item(parsed, sub_id, now, now, period_end))
    store.insert(sub)

    # The first invoice: licensed items for the first period (prorated up to a future anchor),
    # metered items at quantity 0 (their usage is billed in arrears, on the next invoice).
    prorate = p.get("proration_behavior") != "none"
    full_start = periods.boundary(anchor, interval, count, -1) if anchor > now else now
    specs = []
    for item in sub["items"]["data"]:
        if is_metered(item):
            specs.append(invoices.LineSpec(item, 0, now, period_end))
        elif anchor > now:
            share = Decimal(period_end - now) / Decimal(period_end - full_start)
            unit = invoices.amounts.unit_amount(item["price"])
            amount = invoices.amounts.line_amount(1, unit * item["quantity"] * share) if prorate else 0
            specs.append(invoices.LineSpec(item, item["quantity"], now, period_end, amount=amount))
        else:
            specs.append(invoices.LineSpec(item, item["quantity"], now, period_end))
    invoice = invoices.build_invoice(store, sub, customer, created=now, billing_reason="subscription_create",
                                     period_start=now, period_end=now, specs=specs)
    sub["latest_invoice"] = invoice["id"]
    if collection == "charge_automatically":
        # charge_automatically first invoices are finalized at once (send_invoice ones an hour later)
        behavior = p.get("payment_behavior") or "allow_incomplete"
        needs_payment = invoice["amount_due"] > 0
        if needs_payment and behavior == "error_if_incomplete" and not invoices.charge_succeeds(sub, customer):
            _refuse_payment(sub, customer)
        invoice = invoices.finalize(store, invoice, sub, customer, now, charge=behavior != "default_incomplete")
        if invoice["status"] != "paid":
            sub["status"] = "incomplete"
    save(store, sub)
    engine.schedule(store, sub)
    return sub


def _new_item(parsed: dict, sub_id: str, created: int, period_start: int, period_end: int) -> dict:
    return {
        "id": Store.new_id("si"),
        "object": "subscription_item",
        "billed_until": None,
        "billing_thresholds": None,
        "created": created,
        "current_period_end": period_end,
        "current_period_start": period_start,
        "current_trial": None,
        "discounts": [],
        "metadata": parsed["metadata"],
        "plan": plan_from_price(parsed["price"]),
        "price": parsed["price"],
        "quantity": parsed["quantity"],
        "subscription": sub_id,
        "tax_rates": [],
    }


def _refuse_payment(sub: dict, customer: dict) -> None:
    """payment_behavior=error_if_incomplete: nothing is created when the first payment fails."""
    if invoices.payment_method(sub, customer) is None:
        raise invalid(
            "This customer has no attached payment source or default payment method. Please consider "
            "adding a default payment method. For more information, visit "
            "https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority.")
    raise StripeError(402, "Your card was declined.", type="card_error", code="card_declined",
                      extra={"decline_code": "generic_decline"})


@router.route("GET", "/v1/subscriptions/{id}", params="SubscriptionRetrieveParams")
def retrieve_subscription(req: Request, id: str) -> dict:
    return get(req.store, id)


@router.route("GET", "/v1/subscriptions", params="SubscriptionListParams")
def list_subscriptions(req: Request) -> dict:
    p = req.params
    filters = {k: p[k] for k in ("customer", "collection_method", "test_clock") if p.get(k)}
    found = req.store.all(SUBSCRIPTION, **filters)
    status = p.get("status")
    if status is None:  # by default, Stripe lists the subscriptions that are not canceled
        found = [s for s in found if s["status"] != "canceled"]
    elif status == "ended":
        found = [s for s in found if s["status"] in ("canceled", "incomplete_expired")]
    elif status != "all":
        found = [s for s in found if s["status"] == status]
    price = p.get("price") or p.get("plan")
    if price:
        found = [s for s in found if any(i["price"]["id"] == price for i in s["items"]["data"])]
    return list_response(req, found, "/v1/subscriptions")


@router.route("POST", "/v1/subscriptions/{id}", params="SubscriptionUpdateParams")
def update_subscription(req: Request, id: str) -> dict:
    p, store = req.params, req.store
    sub = get(store, id)
    if sub["status"] in ("canceled", "incomplete_expired"):
        allowed = {"metadata", "cancellation_details"}
        extra = [k for k in p if k not in allowed]
        if extra:
            raise invalid("A canceled subscription can only update its cancellation_details and metadata.",
                          param=extra[0])
    refuse_unemulated(p, _UNEMULATED_UPDATE)
    if "metadata" in p:
        sub["metadata"] = metadata(p["metadata"], current=sub["metadata"])
    if "description" in p:
        sub["description"] = p["description"] or None
    if "default_payment_method" in p:
        sub["default_payment_method"] = p["default_payment_method"] or None
    if "cancellation_details" in p:
        for key in ("comment", "feedback"):
            if key in (p["cancellation_details"] or {}):
                sub["cancellation_details"][key] = p["cancellation_details"][key] or None
    if "collection_method" in p or "days_until_due" in p:
        collection = p.get("collection_method") or sub["collection_method"]
        days = p.get("days_until_due", sub["days_until_due"] if collection == "send_invoice" else None)
        if collection == "send_invoice" and days is None:
            raise invalid("Missing required param: days_until_due.", param="days_until_due")
        if collection == "charge_automatically" and p.get("days_until_due") is not None:
            raise invalid("Invalid days_until_due: days_until_due can only be set when collection_method is "
                          "send_invoice.", param="days_until_due")
        sub["collection_method"], sub["days_until_due"] = collection, None if days is None else int(days)
    if "cancel_at_period_end" in p:
        now = clock.customer_now(store, sub["customer"], req.now)
        if p["cancel_at_period_end"]:
            sub["cancel_at_period_end"] = True
            sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"]
            sub["canceled_at"] = now
            sub["cancellation_details"]["reason"] = "cancellation_requested"
        else:
            sub["cancel_at_period_end"] = False
            sub["cancel_at"] = sub["canceled_at"] = None
            sub["cancellation_details"]["reason"] = None
    store.put(sub)
    engine.schedule(store, sub)
    return sub


@router.route("DELETE", "/v1/subscriptions/{id}", params="SubscriptionCancelParams")
def cancel_subscription(req: Request, id: str) -> dict:
    p, store = req.params, req.store
    sub = get(store, id)
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid(f"This subscription ({id}) is already canceled and cannot be canceled again.")
    now = clock.customer_now(store, sub["customer"], req.now)
    engine.cancel_now(store, sub, now, req.now, invoice_now=bool(p.get("invoice_now")),
                      prorate=bool(p.get("prorate")), details=p.get("cancellation_details") or {})
    return store.get(SUBSCRIPTION, id)


# -- subscription items ------------------------------------------------------------------------
# Flexible billing mode (the default for new subscriptions): a metered item added mid-period
# bills the usage from the moment it was added; a metered item whose price changes bills the
# usage so far at the old price on an invoice item (proration_behavior=create_prorations, the
# default; "none" drops it), and the usage from the change on at the new price (Stripe's
# "Manage your usage-based billing setup": update prices mid-cycle). Licensed items change
# price without prorations only (proration_behavior=none: the new price from the next period).
_UNEMULATED_ITEM = ("billing_thresholds", "current_trial", "discounts", "plan", "price_data", "proration_date",
                    "tax_rates")


def _live(store: Store, sub_id: str, param: str = "subscription") -> dict:
    sub = get(store, sub_id, param=param)
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid(f"This subscription ({sub_id}) is canceled: its items cannot change.", param=param)
    return sub


def _parse_item(store: Store, sub: dict, entry: dict, replacing: str | None = None) -> dict:
    """One new item's price, checked against the subscription's other items (which may have
    archived prices: those keep billing) for one currency, one interval, no repeated price."""
    parsed = _parse_items(store, [entry])[0]
    price = parsed["price"]
    for other in sub["items"]["data"]:
        if other["id"] == replacing:
            continue
        if other["price"]["id"] == price["id"]:
            raise invalid(f"Cannot add multiple subscription items with the same price: {price['id']}", param="price")
        a, b = other["price"]["recurring"], price["recurring"]
        if other["price"]["currency"] != price["currency"] or (a["interval"], a.get("interval_count") or 1) != (
                b["interval"], b.get("interval_count") or 1):
            raise invalid("Currency and billing interval of all prices on a subscription must match (the "
                          "usagebill sandbox emulates subscriptions whose prices share them).", param="price")
    return parsed


def _item_prorations(p: dict, item_price: dict, param: str) -> str:
    behavior = p.get("proration_behavior") or "create_prorations"
    if behavior == "always_invoice":
        raise invalid("The usagebill sandbox does not emulate `proration_behavior=always_invoice`.",
                      param="proration_behavior")
    if behavior != "none" and item_price["recurring"].get("usage_type") != "metered":
        raise invalid(
            "The usagebill sandbox does not emulate prorations of licensed items: pass "
            "`proration_behavior=none` (the new price then applies from the next period).", param=param)
    return behavior


@router.route("POST", "/v1/subscription_items", params="SubscriptionItemCreateParams")
def create_subscription_item(req: Request) -> dict:
    p, store = req.params, req.store
    refuse_unemulated(p, _UNEMULATED_ITEM)
    sub = _live(store, required(p, "subscription"))
    entry = {"price": required(p, "price"), "metadata": p.get("metadata")}
    if p.get("quantity") is not None:
        entry["quantity"] = p["quantity"]
    parsed = _parse_item(store, sub, entry)
    _item_prorations(p, parsed["price"], "price")
    now = clock.customer_now(store, sub["customer"], req.now)
    first = sub["items"]["data"][0]
    item = _new_item(parsed, sub["id"], now, first["current_period_start"], first["current_period_end"])
    sub["items"]["data"].append(item)
    sub["items"]["total_count"] = len(sub["items"]["data"])
    store.kv_set(engine.USAGE_FROM_NS, item["id"], now)
    save(store, sub)
    return item


@router.route("POST", "/v1/subscription_items/{id}", params="SubscriptionItemUpdateParams")
def update_subscription_item(req: Request, id: str) -> dict:
    p, store = req.params, req.store
    refuse_unemulated(p, _UNEMULATED_ITEM)
    item = store.find(ITEM, id, kind="subscription_item")
    sub = _live(store, item["subscription"], param="id")
    position = next(i for i, x in enumerate(sub["items"]["data"]) if x["id"] == id)
    if "metadata" in p:
        item["metadata"] = metadata(p["metadata"], "metadata", current=item["metadata"])
    new_price = p.get("price")
    if new_price and new_price != item["price"]["id"]:
        behavior = _item_prorations(p, item["price"], "price")
        entry = {"price": new_price}
        if p.get("quantity") is not None:
            entry["quantity"] = p["quantity"]
        parsed = _parse_item(store, sub, entry, replacing=id)
        now = clock.customer_now(store, sub["customer"], req.now)
        if is_metered(item):
            if behavior == "create_prorations":
                engine.bill_usage_so_far(store, sub, item, now, req.now)
            store.kv_set(engine.USAGE_FROM_NS, id, now)
        item["price"], item["plan"] = parsed["price"], plan_from_price(parsed["price"])
        item["quantity"] = parsed["quantity"]
    elif p.get("quantity") is not None:
        if is_metered(item):
            raise invalid("Quantity should not be specified where usage_type is `metered`.", param="quantity")
        raise invalid("The usagebill sandbox does not emulate quantity changes (prorations).", param="quantity")
    sub["items"]["data"][position] = item
    save(store, sub)
    return item
@router.route("GET", "/v1/subscription_items", params="SubscriptionItemListParams")
def list_subscription_items(req: Request) -> dict:
    sub_id = required(req.params, "subscription")
    get(req.store, sub_id, param="subscription")
    items = list(reversed(req.store.all(ITEM, subscription=sub_id)))
    return list_response(req, items, "/v1/subscription_items")


@router.route("GET", "/v1/subscription_items/{id}", params="SubscriptionItemRetrieveParams")
def retrieve_subscription_item(req: Request, id: str) -> dict:
    return req.store.find(ITEM, id, kind="subscription_item")
