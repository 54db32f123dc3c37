"""Request validation against the stripe SDK's own generated params TypedDicts.

The SDK ships a TypedDict per endpoint (``stripe.params.PriceCreateParams`` ...) with the
required keys, enums (``Literal``), nested objects and lists of the real API. We compile each
one once into a small tree of checkers and run requests through it: unknown keys, missing
keys, bad enums and bad scalars are refused the way Stripe refuses them, and v1 form strings
are coerced to the declared types ("true" -> True, "12" -> 12)."""

from __future__ import annotations

import importlib
import sys
import typing
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal, Union

from .errors import StripeError, invalid

try:  # typing_extensions is what the SDK uses for NotRequired
    import typing_extensions as _te
except ImportError:  # pragma: no cover
    _te = typing  # type: ignore

_WRAPPERS = {typing.Required, typing.NotRequired, _te.Required, _te.NotRequired}
_LITERALS = {Literal, _te.Literal}
_NONE = type(None)


class _Node:
    def check(self, value: Any, path: str, form: bool) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class _Str(_Node):
    def check(self, value, path, form):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise invalid(f"Invalid string: {_show(value)}", param=path)
        return str(value)


class _Int(_Node):
    def check(self, value, path, form):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip()
            if text.lstrip("-").isdigit():
                return int(text)
        raise StripeError(400, f"Invalid integer: {_show(value)}", code="parameter_invalid_integer", param=path)


class _Bool(_Node):
    def check(self, value, path, form):
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise invalid(f"Invalid boolean: {_show(value)}", param=path)


class _Decimal(_Node):
    # kept as a string: the resource stores Stripe's decimal strings, never floats
    def check(self, value, path, form):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise invalid(f"Invalid decimal: {_show(value)}", param=path)
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            d = None
        if d is None or not d.is_finite():
            raise invalid(f"Invalid decimal: {_show(value)}", param=path)
        return str(value)


class _Float(_Node):
    def check(self, value, path, form):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise invalid(f"Invalid float: {_show(value)}", param=path) from None


class _Any(_Node):
    def check(self, value, path, form):
        return value


class _Enum(_Node):
    def __init__(self, values: tuple):
        self.values = values

    def check(self, value, path, form):
        if value in self.values:
            return value
        choices = [str(v) for v in self.values]
        listed = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + ", or " + choices[-1]
        raise invalid(f"Invalid {path}: must be one of {listed}", param=path)


class _List(_Node):
    def __init__(self, item: _Node):
        self.item = item

    def check(self, value, path, form):
        if isinstance(value, dict) and not value:
            value = []
        if not isinstance(value, list):
            raise invalid("Invalid array", param=path)
        return [self.item.check(v, f"{path}[{i}]", form) for i, v in enumerate(value)]


class _Map(_Node):
    def __init__(self, item: _Node):
        self.item = item

    def check(self, value, path, form):
        if isinstance(value, list):  # form keys that happened to be all digits
            value = {str(i): v for i, v in enumerate(value)}
        if not isinstance(value, dict):
            raise invalid("Invalid object", param=path)
        return {str(k): self.item.check(v, f"{path}[{k}]", form) for k, v in value.items()}


class _Union(_Node):
    def __init__(self, options: list[_Node]):
        self.options = options

    def check(self, value, path, form):
        first: StripeError | None = None
        for option in self.options:
            try:
                return option.check(value, path, form)
            except StripeError as e:
                first = first or e
        assert first is not None
        raise first


class _Emptiable(_Node):
    """``Literal['']|X``: the empty string unsets the field (metadata, nullable fields)."""

    def __init__(self, inner: _Node):
        self.inner = inner

    def check(self, value, path, form):
        if value == "" or value is None:
            return ""
        return self.inner.check(value, path, form)


class _Object(_Node):
    def __init__(self, name: str):
        self.name = name
        self.fields: dict[str, _Node] = {}
        self.required: frozenset[str] = frozenset()

    def check(self, value, path, form):
        if not isinstance(value, dict):
            raise invalid("Invalid object", param=path or None)
        out = {}
        for key, v in value.items():
            sub = f"{path}[{key}]" if path else key
            node = self.fields.get(key)
            if node is None:
                raise StripeError(400, f"Received unknown parameter: {sub}", code="parameter_unknown", param=sub)
            if v == "" and key in self.required:
                raise _empty(sub)
            if v == "" and isinstance(node, (_Str, _Int, _Bool, _Decimal, _Enum, _Object, _List)) and form:
                # Stripe reads an empty form value as "unset", which only nullable fields allow
                raise _empty(sub)
            out[key] = node.check(v, sub, form)
        for key in sorted(self.required):
            if key not in value:
                sub = f"{path}[{key}]" if path else key
                raise StripeError(400, f"Missing required param: {sub}.", code="parameter_missing", param=sub)
        return out


def _empty(path: str) -> StripeError:
    return StripeError(
        400,
        f"You passed an empty string for '{path}'. We assume empty values are an attempt to unset a "
        f"parameter; however '{path}' cannot be unset. You should remove '{path}' from your request "
        "or supply a non-empty value.",
        code="parameter_invalid_empty",
        param=path,
    )


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


# Keys of the SDK's RequestOptions (api_key, idempotency_key...), which v1 params classes
# inherit: they are client options, never sent as parameters.
def _request_option_keys() -> frozenset[str]:
    from stripe._request_options import RequestOptions

    return frozenset(RequestOptions.__annotations__)


def _hints(cls: type) -> dict:
    import stripe._request_options as ro

    namespace = dict(vars(ro))
    try:
        from stripe._stripe_context import StripeContext

        namespace["StripeContext"] = StripeContext
    except ImportError:  # pragma: no cover - older SDKs
        pass
    namespace.update(vars(sys.modules[cls.__module__]))
    return typing.get_type_hints(cls, globalns=namespace, include_extras=True)


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _compile(tp: Any, seen: dict[type, _Object]) -> _Node:
    origin = typing.get_origin(tp)
    if origin in _WRAPPERS:
        return _compile(typing.get_args(tp)[0], seen)
    if origin is typing.Annotated:
        return _compile(typing.get_args(tp)[0], seen)
    if _is_typeddict(tp):
        if tp in seen:
            return seen[tp]
        node = seen[tp] = _Object(tp.__name__)
        skip = _request_option_keys()
        node.fields = {k: _compile(v, seen) for k, v in _hints(tp).items() if k not in skip}
        node.required = frozenset(k for k in tp.__required_keys__ if k not in skip)
        return node
    if origin in _LITERALS:
        return _Enum(typing.get_args(tp))
    if origin is Union or (sys.version_info >= (3, 10) and origin is __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not _NONE]
        literals = [v for a in args if typing.get_origin(a) in _LITERALS for v in typing.get_args(a)]
        others = [a for a in args if typing.get_origin(a) not in _LITERALS]
        emptiable = "" in literals
        literals = [v for v in literals if v != ""]
        # Literal[...]|str is the SDK's forward-compatible enum: the API still checks the values
        others = [a for a in others if not (literals and a is str)]
        nodes = ([_Enum(tuple(literals))] if literals else []) + [_compile(a, seen) for a in others]
        if not nodes:
            nodes = [_Str()]
        node = nodes[0] if len(nodes) == 1 else _Union(nodes)
        return _Emptiable(node) if emptiable else node
    if origin in (list, typing.List, tuple):
        args = typing.get_args(tp)
        return _List(_compile(args[0], seen) if args else _Any())
    if origin in (dict, typing.Dict) or origin is typing.Mapping or _is_untyped_object(origin):
        args = typing.get_args(tp)
        return _Map(_compile(args[-1], seen) if args else _Any())
    if tp is str:
        return _Str()
    if tp is bool:
        return _Bool()
    if tp is int:
        return _Int()
    if tp is float:
        return _Float()
    if tp is Decimal:
        return _Decimal()
    if _is_untyped_object(tp):
        return _Map(_Any())
    return _Any()


def _is_untyped_object(tp: Any) -> bool:
    return isinstance(tp, type) and tp.__name__ == "UntypedStripeObject"


@lru_cache(maxsize=None)
def schema(name: str) -> _Object:
    """The compiled checker for a params class named below ``stripe.params``, e.g.
    ``"PriceCreateParams"`` or ``"billing.MeterCreateParams"`` or ``"v2.billing.MeterEventStreamCreateParams"``."""
    module_path, _, cls_name = ("stripe.params." + name).rpartition(".")
    cls = getattr(importlib.import_module(module_path), cls_name)
    node = _compile(cls, {})
    assert isinstance(node, _Object), name
    # `expand` is accepted on every endpoint, as Stripe does
    node.fields.setdefault("expand", _List(_Str()))
    if name.startswith("v2.") and name.endswith("ListParams"):
        node.fields.setdefault("page", _Str())  # v2 lists page with the token of next_page_url
    return node


def validate(name: str, params: dict, *, form: bool) -> dict:
    """Check and coerce ``params`` against the named TypedDict. Raises StripeError (400)."""
    return schema(name).check(params, "", form)
