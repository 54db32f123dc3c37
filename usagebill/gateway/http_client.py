"""The HTTP client under the Stripe SDK, when it talks over the network (Stripe, or a sandbox
served by ``usagebill sandbox serve``): a ``stripe.HTTPClient`` (the SDK's documented place
for one: ``StripeClient(http_client=...)``) on urllib3, the library requests is built on.

The SDK keeps everything that makes a request a Stripe request: its headers, the API key,
idempotency keys, its retries (``request_with_retries``: network errors, Stripe-Should-Retry,
409 and 5xx, back-off) and its mapping of error responses to exceptions. This module only
moves the bytes.

Why not the SDK's ``RequestsClient``. requests spends about 1.5 ms of CPU per request on work
these calls do not need: it merges session settings, handles cookies and hooks, and builds its
own request and response objects on top of urllib3's. At 100 meter events a request, that
was half the CPU of a push's sending threads (``bench/push.py``). And with ``trust_env`` on
(its default), a ``~/.netrc`` entry for a Stripe host replaced the SDK's Authorization header.

What is kept from requests' behaviour:
- connections per thread and host, kept alive, as the SDK's per-thread sessions had them;
- the environment's proxies (``HTTPS_PROXY``, ``ALL_PROXY``..., minus ``NO_PROXY``), read once,
  when the client is made, for the hosts it calls. Credentials in a proxy's URL are sent as
  Proxy-Authorization. A proxy variable changed later is not seen: a new connection (``usagebill``
  run again, or ``Billing.use_connection``) reads it again;
- TLS verified against the SDK's CA bundle (``stripe.ca_bundle_path``), hostnames checked;
- requests' timeouts under the SDK (80 s to connect, 80 s between reads) and no retries of its
  own (the SDK retries);
- errors as the SDK's ``APIConnectionError``: timeouts, refused and dropped connections may be
  retried (``should_retry``), a certificate that does not verify or a bad proxy URL may not.

A request to a host without a proxy (the common case) goes on a plain ``http.client``
connection of this thread, kept alive, with urllib3's test for a connection the server closed
while it was idle (and, when it closes one just as a request goes out, a GET or a request with
an idempotency key is sent once more on a new connection). urllib3's pool and response layers
on top of ``http.client`` cost another 0.5 ms of CPU a request (1.4 ms against 0.9 ms for a
100-event stream request), a quarter of a push's sending threads. Proxied hosts and streamed
responses go through urllib3, which knows proxies (HTTP, HTTPS tunnels, SOCKS)."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

TIMEOUT = 80.0  # seconds, to connect and between reads: the SDK's RequestsClient default


def proxies_for(urls: Iterable[str]) -> dict[str, str]:
    """The environment's proxies for these URLs' hosts (``https://api.stripe.com``: its proxy),
    read as requests reads them (it comes with the SDK); a host ``NO_PROXY`` covers gets none."""
    from requests.utils import get_environ_proxies

    out: dict[str, str] = {}
    for url in urls:
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname:
            continue
        env = get_environ_proxies(url)  # {} when NO_PROXY covers the host
        proxy = env.get(parts.scheme) or env.get("all")
        if proxy:
            out[_host_key(url)] = proxy
    return out


def _host_key(url: str) -> str:
    return _key_of(urlsplit(url))


def _key_of(parts) -> str:
    """A host's key in the proxies found: ``https://api.stripe.com``."""
    return f"{parts.scheme}://{parts.hostname}"


def _proxy_manager(proxy: str, pool_kw: dict) -> Any:
    """A urllib3 manager that goes through ``proxy`` (its URL's credentials as a header)."""
    import urllib3

    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    headers = None
    if parts.username is not None:
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = urllib3.make_headers(proxy_basic_auth=auth)
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    url = f"{parts.scheme}://{netloc}"
    if parts.scheme.startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError:  # PySocks is not installed, as requests would say
            raise ValueError(f"the proxy {url} is a SOCKS proxy: install PySocks to use it") from None
        return SOCKSProxyManager(proxy if parts.username is not None else url, **pool_kw)
    return urllib3.ProxyManager(url, proxy_headers=headers, **pool_kw)


@cache
def client_class():
    """The class (made on first use: ``stripe`` and urllib3 are imported only when a client
    is). Subclass it to change error messages (``_handle_request_error``)."""
    import http.client
    import ssl
    import textwrap

    import stripe
    import urllib3
    from urllib3 import exceptions as u3
    from urllib3._collections import HTTPHeaderDict
    from urllib3.util.wait import wait_for_read

    class NetworkClient(stripe.HTTPClient):
        name = "urllib3"

        def __init__(self, urls: Iterable[str], *, timeout: float = TIMEOUT, verify_ssl_certs: bool = True):
            super().__init__(verify_ssl_certs=verify_ssl_certs)
            self._proxies = proxies_for(urls)
            self._seconds = timeout
            self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
            self._local = threading.local()
            self._tls_context: ssl.SSLContext | None = None

        def _tls(self) -> ssl.SSLContext:
            """TLS for direct connections: certificates checked against the SDK's CA bundle and
            hostnames checked (urllib3's settings for its pools, below, are the same)."""
            if self._tls_context is None:
                if self._verify_ssl_certs:
                    context = ssl.create_default_context(cafile=stripe.ca_bundle_path)
                else:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._tls_context = context
            return self._tls_context

        def _connection(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
            """This thread's connection to the host, kept alive; one the server closed while it
            was idle is closed here and opened again by the request."""
            connections = getattr(self._local, "connections", None)
            if connections is None:
                connections = self._local.connections = {}
            conn = connections.get((scheme, host, port))
            if conn is None:
                if scheme == "https":
                    conn = http.client.HTTPSConnection(host, port, timeout=self._seconds, context=self._tls())
                elif scheme == "http":
                    conn = http.client.HTTPConnection(host, port, timeout=self._seconds)
                else:
                    raise ValueError(f"cannot call {scheme}://{host}: only http and https URLs")
                connections[(scheme, host, port)] = conn
            elif conn.sock is not None and wait_for_read(conn.sock, timeout=0.0):
                conn.close()  # readable while idle: the server closed it (or broke the protocol)
            return conn

        def _direct(self, method: str, parts, headers, post_data):
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            if isinstance(post_data, str):
                post_data = post_data.encode("utf-8")  # http.client would encode a str as Latin-1
            # a GET, or a request with an idempotency key (the SDK gives every POST one)
            repeatable = method.lower() == "get" or any(k.lower() == "idempotency-key" for k in headers)
            for attempt in (1, 2):
                conn, reused = None, False
                try:
                    conn = self._connection(parts.scheme, parts.hostname, parts.port)
                    reused = conn.sock is not None
                    conn.request(method.upper(), path, body=post_data, headers=headers)
                    response = conn.getresponse()
                    return response.read(), response.status, HTTPHeaderDict(response.getheaders())
                except Exception as e:
                    if conn is not None:
                        conn.close()  # half a request on it: never reused
                    if attempt == 1 and reused and repeatable and isinstance(
                            e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
                        # a kept-alive connection the server closed as this request went out
                        # (RemoteDisconnected is a reset): once more on a new connection, as
                        # the standard library's xmlrpc client does; a new connection that
                        # fails so is an error (the SDK's to retry)
                        continue
                    self._handle_request_error(e)

        def _manager(self, url: str):
            """This thread's connection manager for ``url``'s host (direct, or its proxy's)."""
            managers = getattr(self._local, "managers", None)
            if managers is None:
                managers = self._local.managers = {}
            proxy = self._proxies.get(_host_key(url))
            manager = managers.get(proxy)
            if manager is None:
                if self._verify_ssl_certs:
                    tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": stripe.ca_bundle_path}
                else:
                    tls = {"cert_reqs": "CERT_NONE"}
                pool_kw = {"num_pools": 4, "maxsize": 2, "retries": False, "timeout": self._timeout, **tls}
                manager = _proxy_manager(proxy, pool_kw) if proxy else urllib3.PoolManager(**pool_kw)
                managers[proxy] = manager
            return manager

        def request(self, method, url, headers, post_data=None):
            return self._request_internal(method, url, headers, post_data, is_streaming=False)

        def request_stream(self, method, url, headers, post_data=None):
            return self._request_internal(method, url, headers, post_data, is_streaming=True)

        def _request_internal(self, method, url, headers, post_data, is_streaming: bool):
            parts = urlsplit(url)
            if not is_streaming and _key_of(parts) not in self._proxies:
                return self._direct(method, parts, headers, post_data)
            try:
                response = self._manager(url).urlopen(
                    method.upper(), url, body=post_data, headers=headers, redirect=False,
                    retries=False, timeout=self._timeout, preload_content=not is_streaming)
                # streaming: the response itself, readable, as RequestsClient gives requests' ``raw``
                content = response if is_streaming else response.data
            except Exception as e:
                self._handle_request_error(e)
            return content, response.status, response.headers

        def _handle_request_error(self, e: Exception):
            """The SDK's APIConnectionError for ``e``: retried by the SDK when another attempt
            may get through (a timeout, a refused or dropped connection), not otherwise."""
            if isinstance(e, (u3.SSLError, ssl.SSLError)):
                msg, retry = "Could not verify Stripe's TLS certificate: is the network intercepting it?", False
            elif isinstance(e, (u3.TimeoutError, u3.ProtocolError, u3.ProxyError, u3.NewConnectionError,
                                http.client.HTTPException, OSError)):
                # OSError: refused, reset, timed out, a name that does not resolve, no route;
                # HTTPException: the connection dropped or garbled mid-answer
                msg, retry = "Unexpected error communicating with Stripe.", True
            elif isinstance(e, u3.HTTPError):
                msg, retry = "Unexpected error communicating with Stripe.", False
            else:
                msg, retry = "Unexpected error communicating with Stripe: probably a configuration issue locally.", False
            detail = f"{type(e).__name__}: {e}" if str(e) else f"{type(e).__name__} (no message)"
            raise stripe.APIConnectionError(textwrap.fill(msg) + f"\n\n(Network error: {detail})",
                                            should_retry=retry) from e

        def close(self):
            """Close this thread's connections (the SDK closes per thread, as its sessions were)."""
            for manager in (getattr(self._local, "managers", None) or {}).values():
                manager.clear()
            for conn in (getattr(self._local, "connections", None) or {}).values():
                conn.close()
            self._local.managers, self._local.connections = {}, {}

    return NetworkClient


def stripe_urls(client_options: dict | None = None) -> list[str]:
    """The base URLs the client calls: the SDK's defaults, overridden by ``base_addresses``."""
    import stripe

    urls = {"api": stripe.DEFAULT_API_BASE, "meter_events": stripe.DEFAULT_METER_EVENTS_API_BASE,
            "files": stripe.DEFAULT_UPLOAD_API_BASE, "connect": stripe.DEFAULT_CONNECT_API_BASE}
    urls.update(client_options or {})
    return [u for u in urls.values() if u]
