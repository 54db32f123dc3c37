"""The HTTP client under the SDK (gateway/http_client.py): the environment read once per
client, not on every request; proxies kept; a ~/.netrc never replaces the Stripe key."""

import pytest
import stripe

from usagebill.gateway.client import connect
from usagebill.gateway.http_client import client_class, proxies_for, stripe_urls
from usagebill.sandbox import serve

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


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


def test_a_stripe_client_s_sessions_do_not_read_the_environment_per_request(clean_env, tmp_path):
    clean_env.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    conn = connect(ledger_path=tmp_path / "l.db", api_key="sk_test_" + "x" * 24)
    http = conn.client._requestor._client
    assert isinstance(http, client_class()) and isinstance(http, stripe.RequestsClient)
    session = http._new_session()
    assert session.trust_env is False
    assert session.proxies["https://meter-events.stripe.com"] == "http://proxy.example:3128"
    # where requests looks for a request's proxy: the per-host key
    from requests.utils import select_proxy

    assert select_proxy("https://api.stripe.com/v1/customers", session.proxies) == "http://proxy.example:3128"


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
