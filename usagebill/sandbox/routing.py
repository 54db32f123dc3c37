"""How sandbox endpoints are declared and what a handler receives.

A resource module declares its endpoints with the shared ``router``::

    @router.route("POST", "/v1/customers", params="CustomerCreateParams")
    def create_customer(req: Request) -> dict: ...

    @router.route("GET", "/v1/customers/{id}", params="CustomerRetrieveParams")
    def retrieve_customer(req: Request, id: str) -> dict: ...

``params`` names the TypedDict in ``stripe.params`` (or ``stripe.params.billing`` etc., as a
dotted path below ``stripe.params``) that the core validates the request against before the
handler runs (required keys, Literal enums, unknown keys -> ``parameter_unknown``).
A handler returns the response object (a JSON-able dict); status 200 unless it returns
``(status, dict)``. It raises ``errors.StripeError`` for anything Stripe would refuse.

Hooks registered with ``@router.before_request`` run (inside the request's transaction)
before every handler: the billing engine uses one to catch subscriptions up with real time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .errors import StripeError, invalid

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store


@dataclass
class Request:
    method: str
    path: str
    params: dict  # decoded body (v1 form / v2 JSON) merged with the query string
    headers: dict  # lower-cased names
    store: "Store"
    now: int  # the sandbox's real "now", Unix seconds (test clocks keep their own time)
    api_key: str = ""
    request_id: str = ""
    context: dict = field(default_factory=dict)  # free space for the core and hooks


@dataclass
class Route:
    method: str
    pattern: str
    regex: re.Pattern
    handler: Callable[..., Any]
    params: str | None


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.hooks: list[Callable[[Request], None]] = []

    def route(self, method: str, pattern: str, *, params: str | None = None):
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(fn):
            self.routes.append(Route(method.upper(), pattern, regex, fn, params))
            return fn

        return register

    def before_request(self, fn: Callable[[Request], None]):
        self.hooks.append(fn)
        return fn

    def match(self, method: str, path: str) -> tuple[Route, dict]:
        path_matched = False
        for r in self.routes:
            m = r.regex.match(path)
            if m:
                path_matched = True
                if r.method == method.upper():
                    return r, m.groupdict()
        if path_matched:
            raise StripeError(405, f"Unrecognized request URL ({method.upper()}: {path}).")
        raise StripeError(
            404,
            f"Unrecognized request URL ({method.upper()}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        )


router = Router()


def list_response(req: Request, objects: list[dict], url: str) -> dict:
    """Stripe's list object over ``objects`` (newest first): ``limit`` (1..100, default 10),
    ``starting_after`` / ``ending_before`` cursors (an id in the list), ``has_more``."""
    limit = req.params.get("limit", 10)
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise invalid("Invalid integer: " + str(limit), param="limit") from None
    if not 1 <= limit <= 100:
        raise invalid(
            "This value must be greater than or equal to 1 and less than or equal to 100.", param="limit"
        )
    after, before = req.params.get("starting_after"), req.params.get("ending_before")
    if after and before:
        raise invalid("You may only specify one of these parameters: ending_before, starting_after.")
    ids = [o["id"] for o in objects]
    if after:
        if after not in ids:
            raise invalid(f"No such object: '{after}'", param="starting_after", code="resource_missing")
        rest = objects[ids.index(after) + 1 :]
        page, has_more = rest[:limit], len(rest) > limit
    elif before:
        if before not in ids:
            raise invalid(f"No such object: '{before}'", param="ending_before", code="resource_missing")
        head = objects[: ids.index(before)]
        page, has_more = head[-limit:], len(head) > limit
    else:
        page, has_more = objects[:limit], len(objects) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}
