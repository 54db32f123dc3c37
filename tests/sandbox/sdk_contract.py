"""Contract check: a sandbox response carries every field the stripe SDK's resource class
declares, with the declared nullability and object name, and no includable field (one Stripe
returns only when asked for with ``expand[]``) unless it was asked for. Nested objects are
checked too: inner classes (``invoice.status_transitions``), embedded objects and lists."""

from __future__ import annotations

import sys
import typing
from typing import Any, ClassVar, Union

import usagebill.sandbox.billing  # noqa: F401  (the resource modules register their includable fields)
import usagebill.sandbox.resources  # noqa: F401
from usagebill.sandbox.expand import INCLUDABLE, sdk_class

_NONE = type(None)


def _hints(cls: type) -> dict:
    namespace: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = sys.modules.get(klass.__module__)
        if module is not None:
            namespace.update(vars(module))
    return typing.get_type_hints(cls, globalns=namespace, localns=dict(vars(cls)), include_extras=False)


def _fields(cls: type) -> dict[str, Any]:
    raw = {}
    for klass in reversed(cls.__mro__):
        raw.update(getattr(klass, "__annotations__", {}))
    try:
        hints = _hints(cls)
    except NameError:  # a name only imported under TYPE_CHECKING: fall back to the raw strings
        hints = raw
    out = {}
    for name, tp in hints.items():
        if name.startswith("_"):
            continue
        if typing.get_origin(tp) is ClassVar or tp is ClassVar or (isinstance(tp, str) and tp.startswith("ClassVar")):
            continue
        out[name] = tp
    return out


def _optional(tp: Any) -> bool:
    if isinstance(tp, str):
        return "Optional[" in tp or "None" in tp
    return typing.get_origin(tp) is Union and _NONE in typing.get_args(tp) or (
        hasattr(tp, "__args__") and type(tp).__name__ == "UnionType" and _NONE in tp.__args__
    )


def includable(cls: type) -> set[str]:
    return set(INCLUDABLE.get(getattr(cls, "OBJECT_NAME", None) or "", {}))


def assert_sdk_shape(obj: dict, cls: type, *, included: tuple[str, ...] = (), path: str = "",
                     inner: bool = False) -> None:
    """``obj`` (a plain dict, or a StripeObject) has every annotated field of ``cls`` (except
    ``deleted`` on live objects and includable fields not in ``included``); fields not typed
    Optional are not None; includable fields are absent unless included; ``object`` equals
    ``cls.OBJECT_NAME``. Then the same, recursively, for nested objects; for inner classes
    (``inner``) without the missing-field check: the SDK cannot tell which of their fields
    Stripe may omit (``invoice.issuer.account`` is absent for ``type=self``)."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    where = f"{cls.__name__}{' at ' + path if path else ''}"
    fields = _fields(cls)
    # `deleted` only appears on deleted objects ("Always true for a deleted object")
    if not data.get("deleted"):
        fields.pop("deleted", None)
    hidden = includable(cls) - set(included)
    present = sorted(hidden & set(data))
    assert not present, f"{where}: includable fields present without expand: {present}"
    missing = [] if inner else sorted(set(fields) - set(data) - hidden)
    assert not missing, f"{where}: missing fields {missing}"
    nulls = sorted(k for k, tp in fields.items() if k in data and data[k] is None and not _optional(tp))
    assert not nulls, f"{where}: non-Optional fields are None: {nulls}"
    name = getattr(cls, "OBJECT_NAME", None)
    if name is not None:
        assert data.get("object") == name, f"{where}: object is {data.get('object')!r}, expected {name!r}"
    inner_types = getattr(cls, "_inner_class_types", {})
    for key, value in data.items():
        _check_nested(value, inner_types.get(key), f"{path}.{key}" if path else key)


def _check_nested(value: Any, inner: type | None, path: str) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_nested(item, inner, f"{path}[{i}]")
        return
    if not isinstance(value, dict):
        return
    cls = sdk_class(value.get("object")) if value.get("object") not in (None, "list") else None
    if cls is not None:
        assert_sdk_shape(value, cls, path=path)
    elif value.get("object") == "list":
        _check_nested(value.get("data", []), None, f"{path}.data")
    elif inner is not None and not _is_map(inner):
        assert_sdk_shape(value, inner, path=path, inner=True)


def _is_map(cls: type) -> bool:
    return cls.__name__ == "UntypedStripeObject"
