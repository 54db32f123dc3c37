"""Customers: /v1/customers."""

from __future__ import annotations

import secrets
import string

from ..clock import clock_now
from ..errors import StripeError, invalid
from ..expand import register_includable
from ..routing import Request, list_response, router
from ..store import Store
from ._common import created_filter, merge_metadata, new_metadata, reference, require

# Fields the sandbox stores as given; anything else the SDK's params allow (payment methods,
# tax ids, cash balance...) is refused plainly rather than silently dropped.
_PLAIN = ("name", "email", "description", "phone", "business_name", "individual_name",
          "preferred_locales", "address", "shipping", "invoice_settings", "tax_exempt",
          "balance", "invoice_prefix", "next_invoice_sequence")
_UNSUPPORTED = ("payment_method", "source", "tax", "tax_id_data", "cash_balance", "validate", "default_source")

MAX_CUSTOMERS_PER_TEST_CLOCK = 3  # Stripe's limit


def _unsupported(params: dict) -> None:
    for name in _UNSUPPORTED:
        if name in params:
            raise invalid(f"The usagebill sandbox does not support the parameter '{name}'.", param=name)


def _address(value):
    if not value:
        return None
    keys = ("city", "country", "line1", "line2", "postal_code", "state")
    return {k: value.get(k) or None for k in keys}


def _invoice_settings(value) -> dict:
    value = value or {}
    return {
        "custom_fields": value.get("custom_fields") or None,
        "default_payment_method": value.get("default_payment_method") or None,
        "footer": value.get("footer") or None,
        "rendering_options": value.get("rendering_options") or None,
    }


def _apply(customer: dict, params: dict) -> None:
    for name in _PLAIN:
        if name not in params:
            continue
        value = params[name]
        if name == "address":
            customer["address"] = _address(value)
        elif name == "shipping":
            customer["shipping"] = value or None
        elif name == "invoice_settings":
            customer["invoice_settings"] = _invoice_settings(value)
        elif name == "preferred_locales":
            customer["preferred_locales"] = value or []
        elif name == "balance":
            customer["balance"] = value or 0
        else:
            customer[name] = value if value != "" else None


def _invoice_prefix() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))


def _check_test_clock(req: Request, clock_id: str) -> None:
    reference(req, "test_helpers.test_clock", clock_id, "test_clock", kind="test clock")
    attached = req.store.all("customer", test_clock=clock_id)
    if len([c for c in attached if not c.get("deleted")]) >= MAX_CUSTOMERS_PER_TEST_CLOCK:
        raise invalid(
            f"The test clock {clock_id} already has the maximum of {MAX_CUSTOMERS_PER_TEST_CLOCK} customers "
            "attached to it.",
            param="test_clock",
        )


@router.route("POST", "/v1/customers", params="CustomerCreateParams")
def create_customer(req: Request) -> dict:
    p = req.params
    _unsupported(p)
    clock_id = p.get("test_clock")
    if clock_id:
        _check_test_clock(req, clock_id)
    customer = {
        "id": Store.new_id("cus", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "business_name": None,
        "created": req.now if not clock_id else _clock_time(req, clock_id),
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "individual_name": None,
        "invoice_prefix": _invoice_prefix(),
        "invoice_settings": _invoice_settings(None),
        "livemode": False,
        "metadata": new_metadata(p.get("metadata")),
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": clock_id or None,
    }
    _apply(customer, p)
    return req.store.insert(customer)


def _clock_time(req: Request, clock_id: str) -> int:
    from ..clock import clock_now

    return clock_now(req.store, clock_id, req.now)


@router.route("GET", "/v1/customers/{id}", params="CustomerRetrieveParams")
def retrieve_customer(req: Request, id: str) -> dict:
    customer = req.store.get("customer", id)
    if customer is None:
        raise StripeError(404, f"No such customer: '{id}'", code="resource_missing", param="id")
    return customer  # a deleted customer is returned as its deletion stub, as Stripe does


@router.route("POST", "/v1/customers/{id}", params="CustomerUpdateParams")
def update_customer(req: Request, id: str) -> dict:
    customer = require(req, "customer", id)
    p = req.params
    _unsupported(p)
    _apply(customer, p)
    if "metadata" in p:
        customer["metadata"] = merge_metadata(customer["metadata"], p["metadata"])
    return req.store.put(customer)


@router.route("DELETE", "/v1/customers/{id}", params="CustomerDeleteParams")
def delete_customer(req: Request, id: str) -> dict:
    customer = require(req, "customer", id)
    # Stripe cancels a deleted customer's subscriptions at once
    from ..billing.engine import cancel_customer_subscriptions

    cancel_customer_subscriptions(req.store, id, clock_now(req.store, customer.get("test_clock"), req.now), req.now)
    stub = {"id": id, "object": "customer", "deleted": True}
    req.store.put(stub)
    return stub


@router.route("GET", "/v1/customers", params="CustomerListParams")
def list_customers(req: Request) -> dict:
    p = req.params
    customers = [c for c in req.store.all("customer") if not c.get("deleted")]
    # Stripe leaves test-clock customers out unless their clock is asked for
    customers = [c for c in customers if c.get("test_clock") == (p.get("test_clock") or None)]
    if "email" in p:
        customers = [c for c in customers if c.get("email") == p["email"]]
    customers = created_filter(customers, p.get("created"))
    return list_response(req, customers, "/v1/customers")


# -- fields Stripe returns only when asked for with expand[] --------------------------------
def _empty_list(url: str) -> dict:
    return {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": url}


def _subscriptions(store: Store, customer: dict) -> dict:
    subs = [s for s in store.all("subscription", customer=customer["id"]) if s["status"] != "canceled"]
    return {"object": "list", "data": subs[:10], "has_more": len(subs) > 10, "total_count": len(subs),
            "url": f"/v1/customers/{customer['id']}/subscriptions"}


register_includable("customer", "sources", lambda store, c: _empty_list(f"/v1/customers/{c['id']}/sources"))
register_includable("customer", "tax_ids", lambda store, c: _empty_list(f"/v1/customers/{c['id']}/tax_ids"))
register_includable("customer", "subscriptions", _subscriptions)
register_includable("customer", "tax", lambda store, c: {
    "automatic_tax": "unrecognized_location", "ip_address": None, "location": None, "provider": "stripe"})
register_includable("customer", "cash_balance", lambda store, c: None)  # no cash balances are emulated
register_includable("customer", "invoice_credit_balance", lambda store, c: {})
