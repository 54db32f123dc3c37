import pytest
import stripe

from usagebill.sandbox import Sandbox, SandboxHTTPClient, serve


@pytest.fixture
def sandbox():
    sb = Sandbox(faults=None)
    yield sb
    sb.close()


@pytest.fixture
def stripe_client(sandbox):
    return stripe.StripeClient("sk_test_sandbox", http_client=SandboxHTTPClient(sandbox), max_network_retries=0)


@pytest.fixture(params=["in_process", "loopback"])
def both_transports(request, tmp_path):
    """A client of a fresh sandbox, once in process and once over the loopback HTTP server."""
    if request.param == "in_process":
        sb = Sandbox(faults=None)
        yield stripe.StripeClient("sk_test_sandbox", http_client=SandboxHTTPClient(sb), max_network_retries=0)
        sb.close()
    else:
        server = serve(tmp_path / "state.db", port=0)
        yield stripe.StripeClient("sk_test_sandbox", base_addresses={"api": server.url, "meter_events": server.url},
                                  max_network_retries=0)
        server.shutdown()


@pytest.fixture(autouse=True)
def _no_env_faults(monkeypatch):
    # a developer's exported fault settings must not leak into unrelated tests
    monkeypatch.delenv("USAGEBILL_SANDBOX_FAULTS", raising=False)
    monkeypatch.delenv("USAGEBILL_SANDBOX_VISIBILITY_DELAY", raising=False)
