"""Helpers shared by the resource modules: metadata rules, lookups, list filters."""

from __future__ import annotations

from ..errors import StripeError, invalid
from ..routing import Request

MAX_METADATA_KEYS = 50
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500


def check_metadata(metadata: dict) -> dict:
    if len(metadata) > MAX_METADATA_KEYS:
        raise invalid(f"Metadata can have at most {MAX_METADATA_KEYS} keys.", param="metadata")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise invalid(f"Metadata keys can be at most {MAX_METADATA_KEY} characters long.", param=f"metadata[{key}]")
        if len(value) > MAX_METADATA_VALUE:
            raise invalid(
                f"Metadata values can have up to {MAX_METADATA_VALUE} characters, but you passed in a value that is "
                f"{len(value)} characters.",
                param=f"metadata[{key}]",
            )
    return metadata


def new_metadata(value) -> dict:
    """Metadata on create: empty values are simply not set."""
    if not value:
        return {}
    return check_metadata({k: v for k, v in value.items() if v != ""})


def merge_metadata(current: dict, update) -> dict:
    """Stripe's update rule: keys are merged, an empty value unsets a key, and an empty
    ``metadata`` unsets them all."""
    if update == "":
        return {}
    merged = dict(current or {})
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return check_metadata(merged)


def require(req: Request, object_type: str, id: str, kind: str | None = None) -> dict:
    """An object named in the URL, or Stripe's 404."""
    return req.store.find(object_type, id, kind=kind)


def reference(req: Request, object_type: str, id: str, param: str, kind: str | None = None) -> dict:
    """An object named in a parameter: unknown ids are a 400 naming the parameter."""
    return req.store.find(object_type, id, kind=kind, param=param)


def exclusive(params: dict, *names: str) -> None:
    given = [n for n in names if n in params]
    if len(given) > 1:
        raise StripeError(
            400, f"You may only specify one of these parameters: {', '.join(given)}.",
            code="parameters_exclusive", param=given[-1],
        )


def created_filter(objects: list[dict], created, field: str = "created") -> list[dict]:
    """``created=<ts>`` or ``created[gt|gte|lt|lte]=<ts>`` (on ``field``: invoice items say ``date``)."""
    if created is None:
        return objects
    if isinstance(created, int):
        return [o for o in objects if o[field] == created]
    ops = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for op, bound in created.items():
        objects = [o for o in objects if ops[op](o[field], bound)]
    return objects
