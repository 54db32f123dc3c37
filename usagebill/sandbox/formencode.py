"""Decoding of Stripe's v1 form encoding: ``a[b][c]=v``, indexed arrays ``x[0]=v``, and
``x[]=v`` (what curl users and old clients send, e.g. ``expand[]=customer``).

Values stay strings here; the validator coerces them with the params TypedDict's types
(Stripe's forms carry ``"true"``, ``"12"``)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from .errors import invalid

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_APPEND = object()  # marks an ``x[]`` segment


def decode(text: str) -> dict:
    """Form/query text to a nested dict. Dicts whose keys are all indexes become lists."""
    root: dict = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        m = _KEY.match(raw_key)
        if not m:
            raise invalid(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts: list = [m.group(1)] + [
            _APPEND if seg == "" else seg for seg in re.findall(r"\[([^\[\]]*)\]", m.group(2))
        ]
        _assign(root, parts, value, raw_key)
    return _listify(root)


def _assign(node: dict, parts: list, value: str, raw_key: str) -> None:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part is _APPEND:
            # x[]=a&x[]=b: give each occurrence the next free index
            part = str(sum(1 for k in node if k.isdigit()))
            if not last:
                raise invalid(f"Invalid array parameter: {raw_key}", param=raw_key)
        if last:
            if isinstance(node.get(part), dict):
                raise invalid(f"Invalid hash: {raw_key} mixes a value and a hash", param=raw_key)
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            # "metadata=" (unset all) followed by metadata[k]=v: the later hash wins, as Stripe
            child = node[part] = {}
        node = child


def _listify(value):
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [_listify(value[k]) for k in sorted(value, key=int)]
        return {k: _listify(v) for k, v in value.items()}
    return value
