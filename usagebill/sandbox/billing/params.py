"""Request values the core's validation leaves to the handler: required values with Stripe's
"Missing required param" error, form arrays, metadata update rules, and a loud refusal of
parameters whose billing effect the sandbox does not reproduce. (The core has already checked
names, types and enums against the SDK's TypedDicts.)"""

from __future__ import annotations

from typing import Any

from ..errors import StripeError, invalid


def required(params: dict, name: str, param: str | None = None) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise StripeError(400, f"Missing required param: {param or name}.", code="parameter_missing",
                          param=param or name)
    return value


def as_list(value: Any, param: str) -> list:
    """Form-encoded arrays may arrive as a list or as an index-keyed dict ({"0": ..., "1": ...})."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(str(k).isdigit() for k in value):
        return [value[k] for k in sorted(value, key=lambda k: int(k))]
    raise invalid("Invalid array", param=param)


def metadata(value: Any, param: str = "metadata", current: dict | None = None) -> dict:
    """Stripe's metadata update rules: "" clears all keys, a key set to "" is removed."""
    result = dict(current or {})
    if value is None:
        return result
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid("Invalid hash", param=param)
    for key, val in value.items():
        if val in ("", None):
            result.pop(key, None)
        else:
            result[str(key)] = str(val)
    return result


def refuse_unemulated(params: dict, names: tuple[str, ...]) -> None:
    """Parameters Stripe accepts but whose billing effect the sandbox does not reproduce are
    refused loudly: silently ignoring them would produce invoices Stripe would not."""
    for name in names:
        if params.get(name) not in (None, "", [], {}):
            raise invalid(
                f"The usagebill sandbox does not emulate `{name}`; remove it or test against Stripe test mode.",
                param=name,
            )
