"""``expand[]``: replace an id string in a response with the stored object it names.

Paths may be dotted (``data.customer`` on lists, ``latest_invoice.lines``); each step that
holds an id is expanded on the way, as Stripe does. Stripe allows four levels."""

from __future__ import annotations

import json

from .errors import invalid
from .store import Store

# id prefix -> object type, for a direct lookup; ids without a known prefix (products with
# caller-chosen ids) are found by id alone.
PREFIXES: dict[str, str] = {
    "cus_": "customer",
    "prod_": "product",
    "price_": "price",
    "mtr_": "billing.meter",
    "sub_": "subscription",
    "si_": "subscription_item",
    "in_": "invoice",
    "il_": "line_item",
    "ii_": "invoiceitem",
    "clock_": "test_helpers.test_clock",
}

MAX_DEPTH = 4


def register_prefix(prefix: str, object_type: str) -> None:
    PREFIXES[prefix] = object_type


def lookup(store: Store, id: str) -> dict | None:
    for prefix, object_type in PREFIXES.items():
        if id.startswith(prefix):
            found = store.get(object_type, id)
            if found is not None:
                return found
    row = store.db.execute("SELECT data FROM objects WHERE id = ?", (id,)).fetchone()
    return None if row is None else json.loads(row[0])


def apply(store: Store, obj: dict, paths: list[str]) -> dict:
    for path in paths:
        parts = path.split(".")
        if len(parts) > MAX_DEPTH:
            raise invalid(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
        _expand(store, obj, parts, path)
    return obj


def _expand(store: Store, node, parts: list[str], path: str) -> None:
    if isinstance(node, list):
        for item in node:
            _expand(store, item, parts, path)
        return
    if not isinstance(node, dict):
        return
    field, rest = parts[0], parts[1:]
    if field not in node:
        raise invalid(f"This property cannot be expanded ({path}).", param="expand")
    value = node[field]
    if isinstance(value, str):
        found = lookup(store, value)
        if found is None:
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        node[field] = value = found
    if rest:
        _expand(store, value, rest, path)
