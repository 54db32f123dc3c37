"""Raw calls to Sandbox.handle, for what the SDK hides (headers, status codes, replays)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from stripe._encode import _api_encode


def form(params: dict) -> str:
    return urlencode(list(_api_encode(params)))


def call(sb, method: str, path: str, params: dict | None = None, *, key: str | None = "sk_test_raw",
         headers: dict | None = None, v2: bool = False):
    h = {} if key is None else {"Authorization": f"Bearer {key}"}
    h.update(headers or {})
    params = params or {}
    if method == "GET":
        status, rh, body = sb.handle(method, path, form(params), h, b"")
    elif v2:
        h["Content-Type"] = "application/json"
        status, rh, body = sb.handle(method, path, "", h, json.dumps(params).encode())
    else:
        h["Content-Type"] = "application/x-www-form-urlencoded"
        status, rh, body = sb.handle(method, path, "", h, form(params).encode())
    return status, rh, json.loads(body)
