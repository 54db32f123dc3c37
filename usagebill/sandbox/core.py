"""The sandbox's one entry point: ``Sandbox.handle(method, path, query, headers, body)``.

Every transport (the in-process stripe HTTP client, the loopback server) calls it; it does
what Stripe's edge does before and after a handler: fault injection, authentication,
decoding, validation against the SDK's params types, idempotency keys, the request's
transaction, expansion, and Stripe-shaped errors."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Callable
from urllib.parse import unquote

from . import auth, compat, expand, idempotency, validation
from .errors import StripeError
from .faults import DroppedConnection, FaultConfig, FaultInjector
from .formencode import decode
from .routing import Request, router
from .store import Store

VISIBILITY_ENV_VAR = "USAGEBILL_SANDBOX_VISIBILITY_DELAY"

# The v2 meter event stream is authenticated by meter event session tokens, not API keys.
SESSION_AUTHENTICATED = {"/v2/billing/meter_event_stream"}


def _load_routes() -> None:
    compat.check_sdk()
    from . import billing, resources  # noqa: F401  (register their routes; a broken import must fail loudly)


class Sandbox:
    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        faults: FaultConfig | None = None,
        visibility_delay: float | None = None,
        clock: Callable[[], float] | None = None,
    ):
        _load_routes()
        self.store = Store(path)
        self.path = self.store.path
        self.faults = FaultInjector(faults if faults is not None else FaultConfig.from_env())
        if visibility_delay is None:
            visibility_delay = float(os.environ.get(VISIBILITY_ENV_VAR) or 0)
        self.visibility_delay = visibility_delay
        self._clock = clock
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()
        self._peek = None
        if self.path is not None:
            self._peek = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        from .resources.meter_event_log import set_visibility_delay

        with self.store.transaction():
            set_visibility_delay(self.store, visibility_delay)
            idempotency.prune(self.store, self.now())

    def now(self) -> int:
        return int(self._clock() if self._clock is not None else time.time())

    def close(self) -> None:
        if self._peek is not None:
            self._peek.close()
        self.store.close()

    # -- the request cycle ---------------------------------------------------------------
    def handle(self, method: str, path: str, query: str | bytes | None, headers: dict,
               body: str | bytes | None) -> tuple[int, dict, bytes]:
        """One HTTP request in, one response out. Raises ``DroppedConnection`` when fault
        injection drops the connection (the transport must then fail like a network error)."""
        method = method.upper()
        if "?" in path:
            path, _, extra = path.partition("?")
            query = (_text(query) + "&" + extra) if query else extra
        headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        request_id = "req_" + secrets.token_hex(7)
        out_headers = {"Request-Id": request_id, "Content-Type": "application/json"}
        replayed = False
        idem_key = headers.get("idempotency-key") if method == "POST" else None
        if idem_key:
            out_headers["Idempotency-Key"] = idem_key
        try:
            drop_after = self.faults.before()
            status, payload, replayed = self._run(method, path, _text(query), headers, _text(body), request_id, idem_key)
        except StripeError as e:
            status, payload, drop_after = e.status, e.body(), False
            if e.should_retry is not None:
                out_headers["Stripe-Should-Retry"] = "true" if e.should_retry else "false"
        if replayed:
            out_headers["Idempotent-Replayed"] = "true"
        if drop_after:
            raise DroppedConnection(applied=True)
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return status, out_headers, raw

    def _run(self, method, path, query, headers, body, request_id, idem_key):
        store = self.store
        now = self.now()
        route, path_args = router.match(method, path)
        v2 = path.startswith("/v2/")
        if path in SESSION_AUTHENTICATED:
            with store.transaction():
                key = auth.session_token(store, headers, now)
        else:
            key = auth.api_key(headers)
        params = _decode(query, body, v2, headers)
        raw_params = params
        if route.params:
            params = validation.validate(route.params, params, form=not v2)
        expand_paths = params.pop("expand", None) or []

        call = (method, path, params, headers, now, key, request_id, route, path_args, expand_paths)
        if not idem_key:
            return self._apply(*call, None, None)
        fp = idempotency.fingerprint(method, path, raw_params)
        with self._in_flight_guard(idem_key, fp, now):
            with store.transaction():
                saved = idempotency.claim(store, idem_key, fp, now)
            if saved is not None:
                return saved["status"], saved["body"].encode(), True
            return self._apply(*call, idem_key, fp)

    @contextmanager
    def _in_flight_guard(self, idem_key: str, fp: str, now: int):
        """A duplicate of a request still running gets Stripe's 409 at once, instead of
        queueing behind the store's lock and replaying. Threads of this process are seen
        here; other processes' claims through a read connection that never waits for the
        writer (WAL)."""
        with self._in_flight_lock:
            if idem_key in self._in_flight:
                raise idempotency.in_flight_error(idem_key)
            self._in_flight.add(idem_key)
        try:
            if self._peek is not None:
                with self._in_flight_lock:
                    row = self._peek.execute(
                        "SELECT value FROM kv WHERE ns = ? AND key = ?", (idempotency.NS, idem_key)
                    ).fetchone()
                if row is not None:
                    idempotency.refuse_if_in_flight(json.loads(row[0]), idem_key, fp, now)
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(idem_key)

    def _apply(self, method, path, params, headers, now, key, request_id, route, path_args, expand_paths,
               idem_key, fp):
        """Hooks, handler and expansion in one transaction, with the idempotent result."""
        store = self.store
        req = Request(method=method, path=path, params=params, headers=headers, store=store,
                      now=now, api_key=key, request_id=request_id)
        try:
            with store.transaction():
                for hook in router.hooks:
                    hook(req)
                result = route.handler(req, **{k: unquote(v) for k, v in path_args.items()})
                status, obj = result if isinstance(result, tuple) else (200, result)
                if isinstance(obj, dict):  # also drops includable fields nobody asked for
                    obj = expand.apply(store, obj, expand_paths, now)
                raw = json.dumps(obj).encode()
                if idem_key:
                    idempotency.save(store, idem_key, fp, now, status, raw)
            return status, raw, False
        except StripeError as e:
            if idem_key:
                with store.transaction():
                    if e.status >= 500:
                        idempotency.release(store, idem_key)
                    else:  # Stripe replays 4xx answers too: the request was invalid, not lost
                        idempotency.save(store, idem_key, fp, now, e.status, json.dumps(e.body()).encode())
            raise
        except Exception as e:
            if idem_key:
                with store.transaction():
                    idempotency.release(store, idem_key)
            raise StripeError(500, f"Sandbox internal error: {type(e).__name__}: {e}", type="api_error",
                              should_retry=False) from e


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value


def _decode(query: str, body: str, v2: bool, headers: dict) -> dict:
    params = decode(query) if query else {}
    if not body:
        return params
    if v2 or headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            raise StripeError(400, "Invalid JSON body.", code="invalid_json") from None
        if not isinstance(data, dict):
            raise StripeError(400, "The request body must be a JSON object.", code="invalid_json")
        params.update(data)
    else:
        params.update(decode(body))
    return params
