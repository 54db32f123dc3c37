"""Fixtures for the Stripe side: a Billing on the example config, delivering through a
connection to an in-memory sandbox whose HTTP client counts the requests it sees."""

import pytest


class Counting:
    """Wraps the sandbox HTTP client's ``handle`` and records (method, path) of each request."""

    def __init__(self, sandbox):
        self.calls: list[tuple[str, str]] = []
        original = sandbox.handle

        def handle(method, path, query, headers, body):
            self.calls.append((method.upper(), path))
            return original(method, path, query, headers, body)

        sandbox.handle = handle

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in ("POST", "DELETE")]

    def reset(self) -> None:
        self.calls.clear()


@pytest.fixture
def conn(billing):
    from usagebill.gateway.client import connect
    from usagebill.sandbox import Sandbox

    conn = connect(ledger_path=billing.db_path, sandbox=Sandbox())
    billing.use_connection(conn)  # what the library delivers through (record, charge, import)
    return conn


@pytest.fixture
def requests_seen(conn):
    return Counting(conn.sandbox)
