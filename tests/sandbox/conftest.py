import pytest
import stripe

from usagebill.sandbox import Sandbox, SandboxHTTPClient


@pytest.fixture
def sandbox():
    sb = Sandbox(faults=None)
    yield sb
    sb.close()


@pytest.fixture
def stripe_client(sandbox):
    return stripe.StripeClient("sk_test_sandbox", http_client=SandboxHTTPClient(sandbox), max_network_retries=0)


@pytest.fixture(autouse=True)
def _no_env_faults(monkeypatch):
    # a developer's exported fault settings must not leak into unrelated tests
    monkeypatch.delenv("USAGEBILL_SANDBOX_FAULTS", raising=False)
    monkeypatch.delenv("USAGEBILL_SANDBOX_VISIBILITY_DELAY", raising=False)
