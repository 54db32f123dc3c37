"""The HTTP client under the Stripe SDK, when it talks over the network (Stripe, or a sandbox
served by ``usagebill sandbox serve``): the SDK's own ``RequestsClient`` (its retries, its
error mapping, its CA bundle), with each thread's ``requests.Session`` reading the environment
once, when it is made, instead of on every request.

Why: with ``trust_env`` on (requests' default), every request walks ``os.environ`` twice for
proxy settings and looks for a ``~/.netrc``; that was a fifth of a push thread's CPU. And a
``~/.netrc`` entry for a Stripe host would replace the SDK's ``Authorization`` header with its
own credentials. So the sessions do not trust the environment; the proxies it names for the
hosts we call (``HTTPS_PROXY``, ``ALL_PROXY``..., minus ``NO_PROXY``) are read when the client
is made and given to every session as per-host settings. The CA bundle is the SDK's either way
(it passes ``verify`` itself). A proxy variable changed after the client was made is not seen:
a new connection (``usagebill`` run again, or ``Billing.use_connection``) reads it again."""

from __future__ import annotations

from functools import cache
from typing import Iterable
from urllib.parse import urlsplit


def proxies_for(urls: Iterable[str]) -> dict[str, str]:
    """The environment's proxies for these URLs' hosts, as requests' per-host keys
    (``https://api.stripe.com``: its proxy); a host ``NO_PROXY`` covers gets none."""
    from requests.utils import get_environ_proxies

    out: dict[str, str] = {}
    for url in urls:
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname:
            continue
        env = get_environ_proxies(url)  # {} when NO_PROXY covers the host
        proxy = env.get(parts.scheme) or env.get("all")
        if proxy:
            out[f"{parts.scheme}://{parts.hostname}"] = proxy
    return out


@cache
def client_class():
    """The SDK's requests-based client with sessions made once per thread, as the SDK makes
    them, but configured as above. Subclass it to change error messages."""
    import requests
    import stripe

    class SessionOnceClient(stripe.RequestsClient):
        def __init__(self, urls: Iterable[str], **kwargs):
            super().__init__(**kwargs)
            self._proxies = proxies_for(urls)

        def _new_session(self) -> "requests.Session":
            session = requests.Session()
            session.trust_env = False
            session.proxies.update(self._proxies)
            return session

        def _request_internal(self, *args, **kwargs):
            # the SDK keeps one session per thread in ``_thread_local.session`` and makes a
            # plain one when it finds none: give it ours first (if a later SDK keeps its
            # sessions elsewhere, it makes its own, which read the environment per request)
            local = getattr(self, "_thread_local", None)
            if local is not None and getattr(local, "session", None) is None:
                local.session = self._new_session()
            return super()._request_internal(*args, **kwargs)

    return SessionOnceClient


def stripe_urls(client_options: dict | None = None) -> list[str]:
    """The base URLs the client calls: the SDK's defaults, overridden by ``base_addresses``."""
    import stripe

    urls = {"api": stripe.DEFAULT_API_BASE, "meter_events": stripe.DEFAULT_METER_EVENTS_API_BASE,
            "files": stripe.DEFAULT_UPLOAD_API_BASE, "connect": stripe.DEFAULT_CONNECT_API_BASE}
    urls.update(client_options or {})
    return [u for u in urls.values() if u]
