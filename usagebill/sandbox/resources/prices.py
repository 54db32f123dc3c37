"""Prices: /v1/prices. Amounts are integer minor units (``unit_amount``) or decimal strings
(``unit_amount_decimal``), never floats; amounts, currency and recurrence are immutable."""

from __future__ import annotations

from decimal import Decimal

from ..currencies import check_currency
from ..errors import StripeError, invalid
from ..expand import register_includable
from ..routing import Request, list_response, router
from ..store import Store
from ._common import created_filter, exclusive, merge_metadata, new_metadata, reference, require
from .products import build_product

_MAX_INTERVAL = {"day": 3 * 365, "week": 156, "month": 36, "year": 3}  # three years, as Stripe
_UNSUPPORTED = ("tiers", "tiers_mode", "currency_options", "custom_unit_amount", "transform_quantity")
MAX_LOOKUP_KEY = 200


def _decimal_string(text: str, param: str) -> str:
    d = Decimal(text)
    if d < 0:
        raise invalid("This value must be greater than or equal to 0.", param=param)
    if -d.as_tuple().exponent > 12:
        raise invalid("Invalid decimal: at most 12 decimal places are allowed.", param=param)
    # Stripe answers with the plain decimal, without exponent or trailing zeros
    text = format(d.normalize(), "f")
    return text


def _amounts(p: dict) -> tuple[int | None, str | None]:
    exclusive(p, "unit_amount", "unit_amount_decimal")
    if "unit_amount" in p:
        amount = p["unit_amount"]
        if amount < 0:
            raise invalid("This value must be greater than or equal to 0.", param="unit_amount")
        return amount, str(amount)
    if "unit_amount_decimal" in p:
        text = _decimal_string(p["unit_amount_decimal"], "unit_amount_decimal")
        d = Decimal(text)
        return (int(d) if d == d.to_integral_value() else None), text
    raise StripeError(400, "Missing required param: unit_amount.", code="parameter_missing", param="unit_amount")


def _recurring(req: Request, value: dict) -> dict:
    interval = value["interval"]
    count = value.get("interval_count", 1)
    if not 1 <= count <= _MAX_INTERVAL[interval]:
        raise invalid("Invalid recurring[interval_count]: the maximum billing interval is three years.",
                      param="recurring[interval_count]")
    usage_type = value.get("usage_type", "licensed")
    meter_id = value.get("meter") or None
    if usage_type == "metered":
        if not meter_id:
            raise invalid("Metered prices must be backed by a meter: pass recurring[meter].", param="recurring[meter]")
        meter = reference(req, "billing.meter", meter_id, "recurring[meter]", kind="meter")
        if meter["status"] != "active":
            raise invalid(f"The meter {meter_id} is inactive; prices can only use active meters.",
                          param="recurring[meter]")
    elif meter_id:
        raise invalid("recurring[meter] can only be set when recurring[usage_type] is metered.", param="recurring[meter]")
    return {
        "interval": interval,
        "interval_count": count,
        "meter": meter_id,
        "trial_period_days": value.get("trial_period_days"),
        "usage_type": usage_type,
    }


def _check_lookup_key(req: Request, key: str, transfer: bool, new_id: str) -> None:
    if len(key) > MAX_LOOKUP_KEY:
        raise invalid(f"lookup_key can be at most {MAX_LOOKUP_KEY} characters long.", param="lookup_key")
    for holder in req.store.all("price", lookup_key=key):
        if holder["id"] == new_id:
            continue
        if not transfer:
            raise invalid(
                f"A price (`{holder['id']}`) already uses that lookup key. Pass transfer_lookup_key=true "
                "to move it to this price.",
                param="lookup_key",
            )
        holder["lookup_key"] = None
        req.store.put(holder)


@router.route("POST", "/v1/prices", params="PriceCreateParams")
def create_price(req: Request) -> dict:
    p = req.params
    for name in _UNSUPPORTED:
        if name in p:
            raise invalid(f"The usagebill sandbox does not support the parameter '{name}'.", param=name)
    if p.get("billing_scheme", "per_unit") != "per_unit":
        raise invalid("The usagebill sandbox only supports billing_scheme=per_unit.", param="billing_scheme")
    currency = check_currency(p["currency"])
    unit_amount, unit_amount_decimal = _amounts(p)
    exclusive(p, "product", "product_data")
    if "product" in p:
        product_id = reference(req, "product", p["product"], "product")["id"]
    elif "product_data" in p:
        product_id = build_product(req, p["product_data"])["id"]
    else:
        raise StripeError(400, "Missing required param: product.", code="parameter_missing", param="product")
    recurring = _recurring(req, p["recurring"]) if "recurring" in p else None
    price_id = Store.new_id("price", 24)
    lookup_key = p.get("lookup_key") or None
    if lookup_key:
        _check_lookup_key(req, lookup_key, p.get("transfer_lookup_key", False), price_id)
    price = {
        "id": price_id,
        "object": "price",
        "active": p.get("active", True),
        "billing_scheme": "per_unit",
        "created": req.now,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": new_metadata(p.get("metadata")),
        "nickname": p.get("nickname") or None,
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": p.get("tax_behavior", "unspecified"),
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount_decimal,
    }
    return req.store.insert(price)


@router.route("GET", "/v1/prices/{id}", params="PriceRetrieveParams")
def retrieve_price(req: Request, id: str) -> dict:
    return require(req, "price", id)


@router.route("POST", "/v1/prices/{id}", params="PriceUpdateParams")
def update_price(req: Request, id: str) -> dict:
    # PriceUpdateParams has no amount, currency or recurring: validation already refused them
    price = require(req, "price", id)
    p = req.params
    if "currency_options" in p:
        raise invalid("The usagebill sandbox does not support the parameter 'currency_options'.",
                      param="currency_options")
    if "active" in p:
        price["active"] = p["active"]
    if "nickname" in p:
        price["nickname"] = p["nickname"] or None
    if "tax_behavior" in p:
        if price["tax_behavior"] in ("inclusive", "exclusive") and p["tax_behavior"] != price["tax_behavior"]:
            raise invalid("tax_behavior cannot be changed once it is inclusive or exclusive.", param="tax_behavior")
        price["tax_behavior"] = p["tax_behavior"]
    if "metadata" in p:
        price["metadata"] = merge_metadata(price["metadata"], p["metadata"])
    if "lookup_key" in p:
        key = p["lookup_key"] or None
        if key:
            _check_lookup_key(req, key, p.get("transfer_lookup_key", False), id)
        price["lookup_key"] = key
    return req.store.put(price)


@router.route("GET", "/v1/prices", params="PriceListParams")
def list_prices(req: Request) -> dict:
    p = req.params
    prices = req.store.all("price")
    for name in ("active", "product", "type"):
        if name in p:
            prices = [o for o in prices if o.get(name) == p[name]]
    if "currency" in p:
        prices = [o for o in prices if o["currency"] == p["currency"].lower()]
    if "lookup_keys" in p:
        if len(p["lookup_keys"]) > 10:
            raise invalid("You can pass at most 10 lookup keys.", param="lookup_keys")
        wanted = set(p["lookup_keys"])
        prices = [o for o in prices if o.get("lookup_key") in wanted]
    for name, value in (p.get("recurring") or {}).items():
        prices = [o for o in prices if o.get("recurring") and o["recurring"].get(name) == value]
    prices = created_filter(prices, p.get("created"))
    return list_response(req, prices, "/v1/prices")


# -- fields Stripe returns only when asked for with expand[] --------------------------------
def _currency_options(store, price: dict) -> dict:
    """Only the price's own currency: the sandbox refuses extra currency options."""
    return {price["currency"]: {"custom_unit_amount": None, "tax_behavior": price["tax_behavior"],
                                "unit_amount": price["unit_amount"], "unit_amount_decimal": price["unit_amount_decimal"]}}


register_includable("price", "currency_options", _currency_options)
register_includable("price", "tiers", lambda store, price: None)  # per-unit prices only
register_includable("plan", "tiers", lambda store, plan: None)
