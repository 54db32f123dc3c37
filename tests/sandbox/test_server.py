"""The loopback server over a real socket, and several sandboxes sharing one state file."""

import subprocess
import sys
import textwrap
import threading
import urllib.request

import pytest
import stripe

from usagebill.sandbox import FaultConfig, Sandbox, SandboxHTTPClient, serve
from usagebill.sandbox.resources.meters import aggregate


def sdk(url, key="sk_test_socket", retries=0):
    return stripe.StripeClient(key, base_addresses={"api": url, "meter_events": url}, max_network_retries=retries)


def test_sdk_over_a_real_socket_v1_and_v2(tmp_path):
    server = serve(tmp_path / "state.db", port=0)
    try:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        client = sdk(server.url)
        meter = client.v1.billing.meters.create(
            {"display_name": "a", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}})
        cus = client.v1.customers.create({"email": "s@x.io", "metadata": {"a": "b"}})
        assert client.v1.customers.retrieve(cus.id).metadata["a"] == "b"
        token = client.v2.billing.meter_event_session.create().authentication_token
        client.v2.billing.meter_event_stream.create(
            {"events": [{"event_name": "api_calls", "payload": {"stripe_customer_id": cus.id, "value": "9"}}]},
            {"api_key": token})
        with pytest.raises(stripe.InvalidRequestError) as e:
            client.v1.customers.retrieve("cus_missing")
        assert e.value.http_status == 404 and e.value.request_id.startswith("req_")
        with pytest.raises(stripe.AuthenticationError):
            sdk(server.url, key="sk_live_123456789012").v1.customers.list()
        assert aggregate(server.sandbox.store, meter.to_dict(), cus.id, 0, 2**40, server.sandbox.now()) == 9
    finally:
        server.shutdown()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/v1/customers", timeout=1)


def test_serve_forever_blocks_until_shutdown():
    server = serve(port=0)
    waiter = threading.Thread(target=server.serve_forever)
    waiter.start()
    assert waiter.is_alive()
    server.shutdown()
    waiter.join(5)
    assert not waiter.is_alive()


def test_non_loopback_hosts_are_refused():
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError):
            serve(host=host)


def test_dropped_connections_over_http_are_retried_by_the_sdk(tmp_path, monkeypatch):
    monkeypatch.setattr(stripe.HTTPClient, "_sleep_time_seconds", lambda self, n: 0.01)  # keep the backoff short
    server = serve(tmp_path / "s.db", faults=FaultConfig(rate_drop=0.4, seed=11))
    try:
        client = sdk(server.url, retries=8)
        created = [client.v1.customers.create({"name": f"c{i}"}, {"idempotency_key": f"k{i}"}) for i in range(10)]
        assert len({c.id for c in created}) == 10
        server.sandbox.faults = type(server.sandbox.faults)(FaultConfig())
        assert len(client.v1.customers.list({"limit": 100}).data) == 10  # no duplicates from retries
    finally:
        server.shutdown()


def test_two_sandboxes_on_one_file_from_threads(tmp_path):
    path = tmp_path / "shared.db"
    first, second = Sandbox(path), Sandbox(path)
    clients = [stripe.StripeClient("sk_test_x", http_client=SandboxHTTPClient(sb)) for sb in (first, second)]
    clients[0].v1.billing.meters.create(
        {"display_name": "a", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}})
    cus = clients[1].v1.customers.create({})

    def work(client, tag):
        for i in range(40):
            client.v1.billing.meter_events.create(
                {"event_name": "api_calls", "identifier": f"{tag}-{i}",
                 "payload": {"stripe_customer_id": cus.id, "value": "1"}})
            client.v1.products.create({"id": f"{tag}-{i}", "name": tag})

    threads = [threading.Thread(target=work, args=(c, t)) for c, t in zip(clients, ("a", "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    meter = clients[1].v1.billing.meters.list().data[0]
    assert aggregate(first.store, meter.to_dict(), cus.id, 0, 2**40, first.now()) == 80
    assert len(list(clients[0].v1.products.list({"limit": 100}).auto_paging_iter())) == 80
    first.close()
    second.close()


_WORKER = textwrap.dedent("""
    import sys, stripe
    from usagebill.sandbox import Sandbox, SandboxHTTPClient
    path, tag, customer = sys.argv[1:4]
    client = stripe.StripeClient("sk_test_x", http_client=SandboxHTTPClient(Sandbox(path)))
    token = client.v2.billing.meter_event_session.create().authentication_token
    for batch in range(5):
        events = [{"event_name": "api_calls", "identifier": f"{tag}-{batch}-{i}",
                   "payload": {"stripe_customer_id": customer, "value": "2"}} for i in range(50)]
        client.v2.billing.meter_event_stream.create({"events": events}, {"api_key": token})
        client.v1.customers.update(customer, {"metadata": {tag: str(batch)}})
""")


def test_processes_sharing_one_state_file(tmp_path):
    path = tmp_path / "procs.db"
    sb = Sandbox(path)
    client = stripe.StripeClient("sk_test_x", http_client=SandboxHTTPClient(sb))
    meter = client.v1.billing.meters.create(
        {"display_name": "a", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}})
    cus = client.v1.customers.create({})
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), tag, cus.id]) for tag in ("p", "q", "r")]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    assert aggregate(sb.store, meter.to_dict(), cus.id, 0, 2**40, sb.now()) == 3 * 5 * 50 * 2
    assert client.v1.customers.retrieve(cus.id).metadata.to_dict() == {"p": "4", "q": "4", "r": "4"}
    sb.close()


def test_ctrl_c_in_serve_forever_stops_the_serving_loop(tmp_path):
    """`usagebill sandbox serve` waits in serve_forever until Ctrl-C. On Python 3.11 a Ctrl-C
    that interrupts Thread.join() marks the running thread as stopped: shutdown then skipped
    stopping the loop, closed the socket under it, and the process could hang at exit (seen
    in CI). The loop must really have ended."""
    import os
    import signal

    server = serve(tmp_path / "s.db", port=0)
    # Ctrl-C as at a terminal, whatever this process inherited (a shell's background job
    # ignores SIGINT); and never a hang: the second timer stops the server if it is not heard
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    rescue = threading.Timer(15, server.shutdown)
    timer.start()
    rescue.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            server.serve_forever()
    finally:
        timer.cancel()
        rescue.cancel()
        signal.signal(signal.SIGINT, previous)
        server.shutdown()
    assert server._BaseServer__is_shut_down.is_set()  # socketserver's own "serve_forever has returned"
    server._thread.join(5)
    assert server._stopped.is_set()
