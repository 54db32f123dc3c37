"""The HTTP client under the SDK (gateway/http_client.py): the environment read once per
client, not on every request; proxies kept, with their credentials; TLS against the SDK's CA
bundle, hostnames checked; connections kept alive, and opened again when the server closed them;
network errors as the SDK's, retried when worth it; a ~/.netrc never replaces the Stripe key."""

import base64
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import stripe

from usagebill.gateway.client import connect, describe
from usagebill.gateway.http_client import client_class, proxies_for, stripe_urls
from usagebill.sandbox import serve

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
TLS = Path(__file__).parent / "data" / "tls"  # a self-signed certificate for localhost (not 127.0.0.1), to 2126


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    return monkeypatch


def test_the_environment_s_proxies_per_host_and_no_proxy_respected(clean_env):
    clean_env.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    clean_env.setenv("NO_PROXY", "files.stripe.com")
    got = proxies_for(stripe_urls())
    assert got == {"https://api.stripe.com": "http://proxy.example:3128",
                   "https://meter-events.stripe.com": "http://proxy.example:3128",
                   "https://connect.stripe.com": "http://proxy.example:3128"}
    clean_env.delenv("HTTPS_PROXY")
    clean_env.setenv("ALL_PROXY", "socks5://p:1080")
    assert proxies_for(["https://api.stripe.com", "not a url"]) == {"https://api.stripe.com": "socks5://p:1080"}
    clean_env.delenv("ALL_PROXY")
    assert proxies_for(stripe_urls()) == {}


def test_a_stripe_client_s_proxies_and_tls_are_settled_when_it_is_made(clean_env, tmp_path):
    import urllib3

    clean_env.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    clean_env.setenv("NO_PROXY", "files.stripe.com")
    conn = connect(ledger_path=tmp_path / "l.db", api_key="sk_test_" + "x" * 24)
    http = conn.client._requestor._client
    assert isinstance(http, client_class()) and isinstance(http, stripe.HTTPClient)
    clean_env.delenv("HTTPS_PROXY")  # read when the client was made, not per request
    via = http._manager("https://meter-events.stripe.com/v2/billing/meter_event_stream")
    assert isinstance(via, urllib3.ProxyManager) and via.proxy.host == "proxy.example" and via.proxy.port == 3128
    direct = http._manager("https://files.stripe.com/v1/files")
    assert not isinstance(direct, urllib3.ProxyManager)
    for manager in (via, direct):  # TLS checked against the SDK's CA bundle
        assert manager.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
        assert manager.connection_pool_kw["ca_certs"] == stripe.ca_bundle_path
    assert http._manager("https://api.stripe.com/v1/customers") is via  # one per proxy and thread


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with an empty Stripe list; records what it was sent."""

    protocol_version = "HTTP/1.1"
    seen: list = []
    answers: list = []  # (status, headers) to give first, then 200; "drop": close without answering
    bodies: list = []
    hang_up = False  # close the connection after each answer, without saying so (an idle timeout)

    def do_POST(self):
        self.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.do_GET()

    def do_GET(self):
        self.seen.append((self.requestline, {k.lower(): v for k, v in self.headers.items()}, self.client_address[1]))
        if self.answers and self.answers[0] == "drop":
            self.answers.pop(0)
            self.close_connection = True
            return
        if self.hang_up:
            self.close_connection = True
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        body = json.dumps({"object": "list", "data": [], "has_more": False, "url": "/v1/customers"}).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Request-Id": "req_1", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(tls: bool = False):
    _Recorder.seen, _Recorder.answers, _Recorder.bodies, _Recorder.hang_up = [], [], [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS / "server.pem", TLS / "server.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen, server.answers, server.bodies = _Recorder.seen, _Recorder.answers, _Recorder.bodies
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def recorder():
    server = _serve()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def tls_recorder():
    server = _serve(tls=True)
    yield server
    server.shutdown()
    server.server_close()


def test_requests_keep_one_connection_alive_and_send_the_sdk_s_headers(clean_env, tmp_path, recorder):
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    conn = connect(ledger_path=tmp_path / "l.db", sandbox_url=url, max_network_retries=0)
    for _ in range(5):
        conn.client.v1.customers.list()
    lines = {line for line, _, _ in recorder.seen}
    assert lines == {"GET /v1/customers HTTP/1.1"}
    assert len({port for _, _, port in recorder.seen}) == 1  # one connection, kept alive
    headers = recorder.seen[0][1]
    assert headers["authorization"] == "Bearer sk_test_usagebill_sandbox"
    assert headers["user-agent"].startswith("Stripe/v1 PythonBindings/")


def test_a_connection_the_server_closed_while_idle_is_opened_again(clean_env, recorder):
    _Recorder.hang_up = True  # closes after each answer without "Connection: close"
    http = client_class()([])
    url = f"http://127.0.0.1:{recorder.server_address[1]}/v1/customers"
    for _ in range(3):
        content, status, headers = http.request("get", url, {})
        assert status == 200 and headers["request-id"] == "req_1"  # headers ignore case, as the SDK expects
    assert len({port for _, _, port in recorder.seen}) == 3  # a new connection each time, no error
    http.close()


def test_a_kept_alive_connection_closed_as_a_request_goes_out_is_tried_once_more_on_a_new_one(clean_env, recorder):
    url = f"http://127.0.0.1:{recorder.server_address[1]}/v1/customers"
    http = client_class()([])
    recorder.answers[:] = [(200, {}), "drop"]  # the second request, on the kept connection, gets no answer
    assert http.request("get", url, {})[1] == 200
    assert http.request("get", url, {})[1] == 200
    assert len(recorder.seen) == 3 and len({port for _, _, port in recorder.seen}) == 2
    recorder.answers[:] = ["drop"]  # a POST without an idempotency key is not sent twice
    with pytest.raises(stripe.APIConnectionError):
        http.request("post", url, {}, "a=1")
    assert http.request("get", url, {})[1] == 200
    recorder.answers[:] = ["drop"]  # with one (the SDK gives every POST one), it is
    assert http.request("post", url, {"Idempotency-Key": "k1"}, "a=1")[1] == 200
    assert len(recorder.seen) == 7
    http.close()


def test_a_connection_dropped_mid_answer_is_a_retried_connection_error(clean_env, tmp_path, recorder):
    recorder.answers[:] = ["drop"]
    http = client_class()([])
    url = f"http://127.0.0.1:{recorder.server_address[1]}/v1/customers"
    with pytest.raises(stripe.APIConnectionError) as dropped:
        http.request("post", url, {}, "a=1")
    assert dropped.value.should_retry is True and "RemoteDisconnected" in str(dropped.value)
    assert http.request("get", url, {})[1] == 200  # the broken connection is not reused
    recorder.answers[:] = ["drop"]
    conn = connect(ledger_path=tmp_path / "l.db", sandbox_url=f"http://127.0.0.1:{recorder.server_address[1]}",
                   max_network_retries=1)
    conn.client.v1.customers.list()  # the SDK's retry gets through
    assert len(recorder.seen) == 4


def test_a_text_body_is_sent_as_utf8(clean_env, recorder):
    http = client_class()([])
    http.request("post", f"http://127.0.0.1:{recorder.server_address[1]}/v1/x", {"Content-Type": "application/json"},
                 '{"name":"Zoë ☃"}')
    assert recorder.bodies == ['{"name":"Zoë ☃"}'.encode()]


def test_tls_is_checked_against_the_sdk_s_ca_bundle(clean_env, monkeypatch, tls_recorder):
    url = f"https://localhost:{tls_recorder.server_address[1]}/v1/customers"
    with pytest.raises(stripe.APIConnectionError) as untrusted:  # self-signed: not in the bundle
        client_class()([]).request("get", url, {})
    assert untrusted.value.should_retry is False and "TLS certificate" in str(untrusted.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)
    monkeypatch.setattr(stripe, "ca_bundle_path", str(TLS / "server.pem"))
    trusting = client_class()([])
    for _ in range(3):
        assert trusting.request("get", url, {})[1] == 200
    assert len(tls_recorder.seen) == 3 and len({port for _, _, port in tls_recorder.seen}) == 1  # kept alive
    by_address = url.replace("localhost", "127.0.0.1")
    with pytest.raises(stripe.APIConnectionError) as wrong_name:  # the certificate does not name this host
        trusting.request("get", by_address, {})
    assert wrong_name.value.should_retry is False and "127.0.0.1" in str(wrong_name.value)
    assert client_class()([], verify_ssl_certs=False).request("get", by_address, {})[1] == 200


def test_a_proxy_in_the_environment_is_used_with_its_credentials(clean_env, tmp_path, recorder):
    clean_env.setenv("HTTP_PROXY", f"http://us%40r:p%3Ass@127.0.0.1:{recorder.server_address[1]}")
    conn = connect(ledger_path=tmp_path / "l.db", sandbox_url="http://sandbox.invalid:12111", max_network_retries=0)
    conn.client.v1.customers.list()
    line, headers, _ = recorder.seen[0]
    assert line == "GET http://sandbox.invalid:12111/v1/customers HTTP/1.1"  # sent to the proxy
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"us@r:p:ss").decode()


def test_the_sdk_retries_what_stripe_says_to_retry(clean_env, tmp_path, recorder):
    recorder.answers[:] = [(503, {"Stripe-Should-Retry": "true"})]
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    conn = connect(ledger_path=tmp_path / "l.db", sandbox_url=url, max_network_retries=2)
    conn.client.v1.customers.list()
    assert len(recorder.seen) == 2


def test_network_errors_are_the_sdk_s_connection_errors_retried_only_when_worth_it(clean_env):
    import urllib3

    http = client_class()(["http://127.0.0.1:9"], timeout=2)
    with pytest.raises(stripe.APIConnectionError) as refused:
        http.request("get", "http://127.0.0.1:9/v1/customers", {})  # port 9: nobody listens
    assert refused.value.should_retry is True
    assert describe(refused.value).startswith("cannot reach Stripe (")
    with socket.socket() as silent:  # accepts, never answers: a read timeout
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        slow = client_class()([], timeout=0.3)
        with pytest.raises(stripe.APIConnectionError) as timed_out:
            slow.request("get", f"http://127.0.0.1:{port}/v1/customers", {})
        assert timed_out.value.should_retry is True and "Timeout" in str(timed_out.value)
    for error, retry in ((urllib3.exceptions.SSLError("certificate verify failed"), False),
                         (urllib3.exceptions.ProtocolError("Connection aborted."), True),
                         (urllib3.exceptions.LocationParseError("http://[x"), False),
                         (ValueError("odd"), False)):
        with pytest.raises(stripe.APIConnectionError) as e:
            http._handle_request_error(error)
        assert e.value.should_retry is retry, error
        assert "(Network error: " in str(e.value)


def test_a_streamed_response_is_readable(clean_env, recorder):
    http = client_class()([])
    content, status, headers = http.request_stream("get", f"http://127.0.0.1:{recorder.server_address[1]}/v1/x", {})
    assert status == 200 and headers["request-id"] == "req_1"  # headers ignore case, as the SDK expects
    assert json.loads(content.read())["object"] == "list"
    http.close()


def test_a_netrc_entry_for_the_host_does_not_replace_the_key(clean_env, tmp_path):
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    server = serve(tmp_path / "state.db", port=0)
    try:
        # the SDK's default client lets requests put the netrc's Basic credentials in place of
        # the Bearer key: the server answers 401
        plain = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": server.url}, max_network_retries=0)
        with pytest.raises(stripe.AuthenticationError):
            plain.v1.customers.create({"name": "a"})
        conn = connect(ledger_path=tmp_path / "l.db", sandbox_url=server.url, max_network_retries=0)
        made = conn.client.v1.customers.create({"name": "b"})
        assert conn.client.v1.customers.retrieve(made.id).name == "b"
    finally:
        server.shutdown()


def test_the_sandbox_url_client_still_says_how_to_start_the_sandbox(clean_env, tmp_path):
    server = serve(tmp_path / "state.db", port=0)
    url = server.url
    server.shutdown()
    conn = connect(ledger_path=tmp_path / "l.db", sandbox_url=url, max_network_retries=0)
    with pytest.raises(stripe.APIConnectionError, match="usagebill sandbox serve --port"):
        conn.client.v1.customers.list()
