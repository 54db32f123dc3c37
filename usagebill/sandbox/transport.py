"""``SandboxHTTPClient``: a stripe SDK HTTP client that answers from an in-process Sandbox.

    client = stripe.StripeClient("sk_test_x", http_client=SandboxHTTPClient(sandbox))

It plugs in below the SDK's own retry loop, so ``max_network_retries``, idempotency keys
and Stripe-Should-Retry behave as against Stripe. A dropped connection (fault injection)
surfaces as ``stripe.APIConnectionError`` with ``should_retry=True``, as a timeout does."""

from __future__ import annotations

import io
from typing import Any, Mapping
from urllib.parse import urlsplit

import stripe

from .core import Sandbox
from .faults import DroppedConnection


class _Headers(dict):
    """Case-insensitive response headers: the SDK reads both "Request-Id" and "request-id"."""

    def __init__(self, items: Mapping[str, str]):
        super().__init__((k.lower(), v) for k, v in items.items())

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def __contains__(self, key):
        return super().__contains__(key.lower())

    def get(self, key, default=None):
        return super().get(key.lower(), default)


class SandboxHTTPClient(stripe.HTTPClient):
    name = "usagebill-sandbox"

    def __init__(self, sandbox: Sandbox, *, backoff: bool = False, **kwargs: Any):
        """``backoff=False`` skips the SDK's sleeps between retries: there is no remote
        service to spare, and tests and offline runs stay fast. The retries still happen."""
        super().__init__(**kwargs)
        self.sandbox = sandbox
        self.backoff = backoff

    def _sleep_time_seconds(self, num_retries: int) -> float:
        return super()._sleep_time_seconds(num_retries) if self.backoff else 0.0

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None,
                *, _usage: Any = None):
        return self._call(method, url, headers, post_data)

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None,
                       *, _usage: Any = None):
        body, status, rheaders = self._call(method, url, headers, post_data)
        return io.BytesIO(body), status, rheaders

    def _call(self, method, url, headers, post_data):
        parts = urlsplit(url)
        try:
            status, rheaders, body = self.sandbox.handle(
                method, parts.path, parts.query, dict(headers or {}), post_data
            )
        except DroppedConnection as e:
            raise stripe.APIConnectionError(
                f"Unexpected error communicating with Stripe (sandbox: {e}).", should_retry=True
            ) from None
        return body, status, _Headers(rheaders)

    def close(self) -> None:
        pass

    async def request_async(self, *args, **kwargs):
        raise NotImplementedError("SandboxHTTPClient is synchronous; use the sandbox server for async clients")

    async def request_stream_async(self, *args, **kwargs):
        raise NotImplementedError("SandboxHTTPClient is synchronous; use the sandbox server for async clients")
