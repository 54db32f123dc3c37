"""The one place a Stripe client is made: the sandbox (no key; the default), Stripe test mode
(``sk_test_`` / ``rk_test_``), or live mode (``sk_live_`` / ``rk_live_`` and ``live=True``)."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import NotFoundError, StripeAPIError, UsagebillError
from ..locations import sandbox_path_for
from .http_client import client_class, stripe_urls

SANDBOX_KEY = "sk_test_usagebill_sandbox"
MAX_NETWORK_RETRIES = 3


class LiveModeRefused(UsagebillError):
    pass


@dataclass
class Connection:
    client: Any  # stripe.StripeClient
    mode: str  # sandbox | test | live
    description: str  # for people: which Stripe this is (never the key)
    sandbox: Any = None  # the in-process Sandbox, when there is one

    @property
    def account(self) -> str:
        """Namespace of the ledger's config -> Stripe id mapping."""
        return self.mode

    @property
    def is_live(self) -> bool:
        return self.mode == "live"


def connect(
    *,
    ledger_path: str | os.PathLike,
    sandbox_path: str | os.PathLike | None = None,
    api_key: str | None = None,
    live: bool = False,
    sandbox_url: str | None = None,
    sandbox: Any = None,
    max_network_retries: int = MAX_NETWORK_RETRIES,
) -> Connection:
    """Pick the backend from the key. ``sandbox`` passes an existing Sandbox (tests);
    ``sandbox_url`` a sandbox served by ``usagebill sandbox serve``."""
    import stripe

    stripe.enable_telemetry = False  # no request timings sent back to Stripe
    key = (api_key or "").strip()
    if not key:
        if sandbox_url:
            bases = {"api": sandbox_url, "meter_events": sandbox_url}
            client = stripe.StripeClient(
                SANDBOX_KEY,
                base_addresses=bases,
                max_network_retries=max_network_retries,
                http_client=_local_sandbox_http_client(sandbox_url, stripe_urls(bases)),
            )
            return Connection(client, "sandbox", f"sandbox at {sandbox_url}")
        from ..sandbox import Sandbox, SandboxHTTPClient, UnsupportedSDK

        if sandbox is None:
            path = Path(sandbox_path) if sandbox_path is not None else sandbox_path_for(ledger_path)
            try:
                sandbox = Sandbox(None if str(ledger_path) == ":memory:" else path)
            except UnsupportedSDK as e:  # one clear line, not a traceback
                raise UsagebillError(str(e)) from None
            where = f"state in {path}" if str(ledger_path) != ":memory:" else "in memory"
        else:
            where = "in memory" if getattr(sandbox, "path", None) is None else f"state in {sandbox.path}"
        client = stripe.StripeClient(
            SANDBOX_KEY, http_client=SandboxHTTPClient(sandbox), max_network_retries=max_network_retries
        )
        return Connection(client, "sandbox", f"sandbox, {where}", sandbox)
    if key.startswith(("sk_test_", "rk_test_")):
        mode = "test"
    elif key.startswith(("sk_live_", "rk_live_")):
        if not live:
            raise LiveModeRefused("the Stripe key (STRIPE_API_KEY or --api-key-file) is a live key: pass --live to bill real customers")
        mode = "live"
    else:
        raise UsagebillError(
            "the Stripe key (STRIPE_API_KEY or --api-key-file) is not a secret or restricted key (sk_test_..., sk_live_..., rk_...); "
            "unset it to use the offline sandbox"
        )
    client = stripe.StripeClient(key, max_network_retries=max_network_retries,
                                 http_client=client_class()(stripe_urls()))
    return Connection(client, mode, "Stripe live mode" if mode == "live" else "Stripe test mode")


def _local_sandbox_http_client(url: str, urls: list[str]):
    """The SDK's HTTP client (``http_client``), saying which sandbox URL failed and how to
    start it, instead of "contact support@stripe.com"."""
    import stripe
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    start = f"usagebill sandbox serve --port {port}" if port else "usagebill sandbox serve"

    class LocalSandboxClient(client_class()):
        def _handle_request_error(self, e, *args):
            try:
                super()._handle_request_error(e, *args)
            except stripe.APIConnectionError as err:
                raise stripe.APIConnectionError(
                    f"cannot reach the sandbox at {url} ({type(e).__name__}); start it with: {start} "
                    "(or unset USAGEBILL_SANDBOX_URL to use the built-in one)",
                    should_retry=err.should_retry,
                ) from e

    return LocalSandboxClient(urls)


@contextmanager
def stripe_errors(action: str, typed_ids: tuple[str | None, ...] = ()) -> Iterator[None]:
    """Turn the SDK's errors into StripeAPIError (exit 4) with one clear line. ``typed_ids``:
    ids the user typed; Stripe's 404 ``resource_missing`` for one of them is the user's
    mistake (NotFoundError, exit 1), not a failure of Stripe."""
    import stripe

    try:
        yield
    except stripe.StripeError as e:
        if is_missing(e, typed_ids):
            raise NotFoundError(describe(e, action)) from e
        raise StripeAPIError(describe(e, action)) from e


def is_missing(e: Exception, ids: tuple[str | None, ...]) -> bool:
    """Stripe's "No such <object>: '<id>'" (404 resource_missing) for one of ``ids``."""
    if getattr(e, "code", None) != "resource_missing" or getattr(e, "http_status", None) != 404:
        return False
    text = getattr(e, "user_message", None) or str(e)
    return any(i and f"'{i}'" in text for i in ids)


def describe(e: Exception, action: str = "") -> str:
    import stripe

    prefix = f"{action}: " if action else ""
    if isinstance(e, stripe.AuthenticationError):
        return f"{prefix}Stripe refused the API key ({e.user_message or 'authentication failed'})"
    if isinstance(e, stripe.APIConnectionError):
        text = e.user_message or str(e)
        if text.startswith("cannot reach the sandbox"):
            return prefix + text
        network = re.search(r"\(Network error: (.*)\)\s*$", text, re.S)
        return f"{prefix}cannot reach Stripe ({network.group(1).strip() if network else text})"
    status = getattr(e, "http_status", None)
    msg = getattr(e, "user_message", None) or str(e)
    code = getattr(e, "code", None)
    return f"{prefix}Stripe said{f' {status}' if status else ''}{f' ({code})' if code else ''}: {msg}"
