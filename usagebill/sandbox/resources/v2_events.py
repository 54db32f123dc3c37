"""v2 core events: ``GET /v2/core/events`` (newest first, filtered by ``types``,
``object_id`` and ``created``; v2 pagination with ``page`` tokens and ``next_page_url``) and
``GET /v2/core/events/{id}``. The sandbox publishes the meter error reports (meter_errors.py)."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

from ..errors import StripeError, invalid
from ..routing import Request, router
from .meter_errors import EVENT
from .meter_events import parse_iso

MAX_TYPES = 20
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


@router.route("GET", "/v2/core/events/{id}", params="v2.core.EventRetrieveParams")
def retrieve_event(req: Request, id: str) -> dict:
    event = req.store.get(EVENT, id)
    if event is None:
        raise StripeError(404, f"No such event: '{id}'", type="invalid_request_error", code="resource_missing")
    return event


def _in_window(event: dict, created: dict) -> bool:
    t = parse_iso(event["created"], "created")
    checks = {"gt": lambda b: t > b, "gte": lambda b: t >= b, "lt": lambda b: t < b, "lte": lambda b: t <= b}
    return all(checks[op](parse_iso(bound, f"created[{op}]")) for op, bound in created.items())


@router.route("GET", "/v2/core/events", params="v2.core.EventListParams")
def list_events(req: Request) -> dict:
    # a page token carries the list's query: next_page_url followed as it is (without the
    # parameters again) gives the next page of the same list; parameters sent with it win,
    # as in the SDK's paging, which sends them again merged into the URL's query
    token = _read_token(req.params.get("page"))
    p = {**token, **{k: v for k, v in req.params.items() if k != "page"}}
    types = p.get("types") or []
    if isinstance(types, str):
        types = [types]
    if len(types) > MAX_TYPES:
        raise invalid(f"types can hold at most {MAX_TYPES} event names.", param="types")
    limit = int(p.get("limit") or DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"limit must be between 1 and {MAX_LIMIT}.", param="limit")
    events = req.store.all(EVENT)
    if types:
        events = [e for e in events if e["type"] in types]
    if p.get("object_id"):
        events = [e for e in events if (e.get("related_object") or {}).get("id") == p["object_id"]]
    if p.get("created"):
        events = [e for e in events if _in_window(e, p["created"])]
    offset = int(token.get("offset", 0))
    page = events[offset : offset + limit]
    next_url = None
    if offset + limit < len(events):
        query = {k: p[k] for k in ("types", "object_id", "created") if p.get(k)}
        next_url = "/v2/core/events?" + urlencode({"page": _token({**query, "limit": limit, "offset": offset + limit})})
    return {"data": page, "next_page_url": next_url, "previous_page_url": None}


def _token(query: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(query, sort_keys=True).encode()).decode().rstrip("=")


def _read_token(page: str | None) -> dict:
    """The query a page token carries ({} without one)."""
    if not page:
        return {}
    try:
        query = json.loads(base64.urlsafe_b64decode(page + "=" * (-len(page) % 4)))
    except (ValueError, TypeError):
        query = None
    if isinstance(query, dict) and all(isinstance(query.get(k, default), kind) for k, kind, default in _TOKEN_FIELDS) \
            and query["offset"] >= 0 and set(query) <= {k for k, _, _ in _TOKEN_FIELDS}:
        return query
    raise invalid(f"Invalid page token: {page}", param="page")


# what a page token may hold, as _token writes it: (key, type, value when absent)
_TOKEN_FIELDS = (("offset", int, None), ("limit", int, DEFAULT_LIMIT), ("types", list, []),
                 ("object_id", str, ""), ("created", dict, {}))
