"""Contract check: a sandbox response carries every field the stripe SDK's resource class
declares, with the declared nullability and object name."""

from __future__ import annotations

import sys
import typing
from typing import Any, ClassVar, Union

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


def assert_sdk_shape(obj: dict, cls: type) -> None:
    """``obj`` (a plain dict, or a StripeObject) has every annotated field of ``cls`` (except
    ``deleted`` on live objects); fields not typed Optional are not None; ``object`` equals
    ``cls.OBJECT_NAME``."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    fields = _fields(cls)
    # `deleted` only appears on deleted objects ("Always true for a deleted object")
    if not data.get("deleted"):
        fields.pop("deleted", None)
    missing = sorted(set(fields) - set(data))
    assert not missing, f"{cls.__name__}: missing fields {missing}"
    nulls = sorted(k for k, tp in fields.items() if data[k] is None and not _optional(tp))
    assert not nulls, f"{cls.__name__}: non-Optional fields are None: {nulls}"
    name = getattr(cls, "OBJECT_NAME", None)
    if name is not None:
        assert data.get("object") == name, f"{cls.__name__}: object is {data.get('object')!r}, expected {name!r}"
