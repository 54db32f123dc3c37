"""``expand[]``: replace an id in a response with the object it names, and include the fields
Stripe only returns when asked for (``customer.sources``, ``price.tiers`` ...).

Paths may be dotted (``data.customer`` on lists, ``latest_invoice.lines``); each step that
holds an id is expanded on the way, as Stripe does, up to four levels. Which fields are
expandable is read from the SDK's resource classes (``ExpandableField`` annotations); a path
to anything else is refused as Stripe refuses it. Includable fields are registered by the
resource modules (``register_includable``) and removed from every response that did not ask
for them (``apply`` runs on every response)."""

from __future__ import annotations

import importlib
import json
import typing
from functools import lru_cache
from typing import Any, Callable

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

# object type -> field -> builder(store, obj) of the value Stripe returns when it is requested
INCLUDABLE: dict[str, dict[str, Callable[[Store, dict], Any]]] = {}
# object type -> current(store, obj, now): an expanded object as a retrieve would return it
# (a draft invoice's metered lines are computed live)
CURRENT: dict[str, Callable[[Store, dict, int], dict]] = {}


def register_prefix(prefix: str, object_type: str) -> None:
    PREFIXES[prefix] = object_type


def register_includable(object_type: str, field: str, build: Callable[[Store, dict], Any]) -> None:
    INCLUDABLE.setdefault(object_type, {})[field] = build


def register_current(object_type: str, current: Callable[[Store, dict, int], dict]) -> None:
    CURRENT[object_type] = current


def lookup(store: Store, id: str) -> dict | None:
    for prefix, object_type in PREFIXES.items():
        if id.startswith(prefix):
            found = store.get(object_type, id)
            if found is not None:
                return found
    row = store.db.execute("SELECT data FROM objects WHERE id = ?", (id,)).fetchone()
    return None if row is None else json.loads(row[0])


def apply(store: Store, obj: dict, paths: list[str], now: int = 0) -> dict:
    """Expand and include what ``paths`` ask for, then drop every includable field not asked for."""
    kept: set[tuple[int, str]] = set()
    for path in paths:
        parts = path.split(".")
        if len(parts) > MAX_DEPTH:
            raise invalid(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
        _expand(store, obj, parts, path, None, kept, now)
    _strip(obj, kept)
    return obj


def _refuse(path: str):
    return invalid(f"This property cannot be expanded ({path}).", param="expand")


def _expand(store: Store, node, parts: list[str], path: str, cls: type | None, kept: set, now: int) -> None:
    if isinstance(node, list):
        for item in node:
            _expand(store, item, parts, path, cls, kept, now)
        return
    if not isinstance(node, dict):
        return  # a null on the way: nothing to expand, as on Stripe
    cls = sdk_class(node.get("object")) or cls
    field, rest = parts[0], parts[1:]
    if node.get("object") == "list" and field == "data":
        if not rest:
            raise _refuse(path)
        _expand(store, node["data"], rest, path, None, kept, now)
        return
    build = INCLUDABLE.get(node.get("object") or "", {}).get(field)
    if build is not None:
        if (id(node), field) not in kept:
            node[field] = build(store, node)
            kept.add((id(node), field))
    elif field in node and expandable(cls, field, node[field]):
        node[field] = _resolve(store, node[field], path, now)
    elif not (field in node and rest and isinstance(node[field], (dict, list))):
        raise _refuse(path)
    if rest:
        _expand(store, node[field], rest, path, _inner_class(cls, field), kept, now)


def _resolve(store: Store, value, path: str, now: int):
    if isinstance(value, list):
        return [_resolve(store, v, path, now) for v in value]
    if not isinstance(value, str):
        return value  # already an object, or null
    found = lookup(store, value)
    if found is None:
        raise _refuse(path)
    current = CURRENT.get(found.get("object") or "")
    return current(store, found, now) if current else found


def _strip(node, kept: set) -> None:
    if isinstance(node, list):
        for item in node:
            _strip(item, kept)
    elif isinstance(node, dict):
        for field in INCLUDABLE.get(node.get("object") or "", ()):
            if field in node and (id(node), field) not in kept:
                del node[field]
        for value in node.values():
            if isinstance(value, (dict, list)):
                _strip(value, kept)


# -- what the SDK says is expandable --------------------------------------------------------
@lru_cache(maxsize=None)
def sdk_class(object_name: str | None) -> type | None:
    """The SDK's resource class for an ``object`` value ("customer", "v2.core.event"...)."""
    if not object_name:
        return None
    from stripe._object_classes import OBJECT_CLASSES, V2_OBJECT_CLASSES

    entry = (V2_OBJECT_CLASSES if object_name.startswith("v2.") else OBJECT_CLASSES).get(object_name)
    if entry is None:
        return None
    module, name = entry
    return getattr(importlib.import_module(module), name)


def _annotation(cls: type | None, field: str):
    for klass in (cls.__mro__ if cls is not None else ()):
        ann = vars(klass).get("__annotations__", {})
        if field in ann:
            return ann[field]
    return None


def expandable(cls: type | None, field: str, value=None) -> bool:
    """``ExpandableField[...]`` in the SDK: ``Union[str, <object>]`` (or a list of them). Without
    a known class, a string that names a stored object is taken as expandable."""
    tp = _annotation(cls, field)
    if tp is None:
        return cls is None and isinstance(value, str)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and typing.get_origin(args[0]) in (list, typing.List):
        args = [a for a in typing.get_args(typing.get_args(args[0])[0]) if a is not type(None)]
    return str in args and any(isinstance(a, (typing.ForwardRef, type)) and a is not str for a in args)


def _inner_class(cls: type | None, field: str) -> type | None:
    if cls is None:
        return None
    return getattr(cls, "_inner_class_types", {}).get(field)
