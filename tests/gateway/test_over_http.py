"""A served sandbox reached through the network client (gateway/http_client.py, urllib3 under
the SDK): two billing periods on a test clock, usage pushed by the pool of threads, bill the
same over HTTP as in process, and reconcile agrees."""

from usagebill import Billing
from usagebill.gateway.clocks import advance_clock
from usagebill.gateway.delivery import push
from usagebill.gateway.http_client import client_class
from usagebill.gateway.reconcile import reconcile
from usagebill.sandbox.server import serve

from tests.lifecycle import invoices, lines, on_clock


def two_months(b: Billing) -> list:
    conn = b.connection
    clock = on_clock(b, "alice", "Pro")
    for _ in range(3):
        b.usage.record("alice", "api_calls", 50, push=False)
    assert push(b, conn, concurrency=4).delivered == 3
    advance_clock(b, conn, clock, "+1month2h")
    for _ in range(250):  # three stream requests, in flight together
        b.usage.record("alice", "api_calls", 2, push=False)
    r = push(b, conn, concurrency=4)
    assert (r.delivered, r.still_pending, r.requests) == (250, 0, 4)  # a meter event session, 3 streams
    advance_clock(b, conn, clock, "+1month")
    assert reconcile(b, conn).ok
    return [(inv.total, lines(inv)) for inv in invoices(b)]


def test_two_periods_bill_the_same_over_http_as_in_process(config_path, tmp_path):
    local = Billing.open(config_path, tmp_path / "local.db")
    try:
        expected = two_months(local)
    finally:
        local.close()
    with serve(tmp_path / "served.db", port=0) as server:
        remote = Billing.open(config_path, tmp_path / "remote.db", sandbox_url=server.url)
        try:
            assert isinstance(remote.connection.client._requestor._client, client_class())
            got = two_months(remote)
        finally:
            remote.close()
    assert got == expected
    # January: Pro $20 and 150 calls at $0.10; February: Pro and 250 x 2 calls
    assert expected == [(3500, [("Pro", 1, 2000), ("API Calls", 150, 1500)]),
                        (7000, [("Pro", 1, 2000), ("API Calls", 500, 5000)])]
