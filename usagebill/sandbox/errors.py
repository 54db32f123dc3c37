"""Stripe-shaped errors. A handler raises StripeError; the core turns it into Stripe's
status code and ``{"error": {...}}`` body."""

from __future__ import annotations


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        should_retry: bool | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.should_retry = should_retry
        self.extra = extra or {}

    def body(self) -> dict:
        err: dict = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
        if self.param:
            err["param"] = self.param
        err.update(self.extra)
        return {"error": err}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 invalid_request_error."""
    return StripeError(400, message, param=param, code=code)


def missing(kind: str, id: str, *, param: str = "id") -> StripeError:
    """Stripe's answer to an unknown object id: "No such customer: 'cus_123'", 404 for the id
    in the URL (``param="id"``), 400 naming the parameter for an id inside the request
    (``items[0][price]``, ``customer``)."""
    return StripeError(404 if param == "id" else 400, f"No such {kind}: '{id}'", code="resource_missing", param=param)
