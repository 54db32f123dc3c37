"""Push at Stripe's speed, from several places at once: several stream requests in flight in
one push, several push processes on one ledger (each identifier sent by one of them, each
event once), a 429 slowing the whole pool, the stream body encoded once as JSON and sent
through the SDK's own HTTP client, and ``push --rate``."""

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import stripe

from usagebill import Billing
from usagebill.gateway import meter_sender
from usagebill.gateway.client import connect
from usagebill.gateway.delivery import check_rate, default_concurrency, push, push_rate
from usagebill.gateway.meter_sender import MeterEvent, MeterEventSender, RateLimiter, RetryPolicy, stream_params
from usagebill.ledger import outbox
from usagebill.sandbox import FaultConfig, Sandbox, SandboxServer
from usagebill.sandbox.faults import FaultInjector

from tests.gateway.metering import DAY, customer, ledger_totals, meter_rows, now, setup_stripe, stripe_totals
from tests.test_cli_stripe import J

ROOT = Path(__file__).resolve().parents[2]
STREAM = "/v2/billing/meter_event_stream"


class Tagged:
    """One sandbox behind a server per worker: which worker sent which identifiers (every
    request received, whether the sandbox then applied it, faulted or dropped it)."""

    def __init__(self, sandbox: Sandbox, tag, seen: list, delay: float = 0.0):
        self.sandbox, self.tag, self.seen, self.delay = sandbox, tag, seen, delay
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def handle(self, method, path, query, headers, body):
        text = body.decode() if isinstance(body, bytes) else (body or "")
        if path == STREAM and text:
            self.seen.extend((self.tag, e["identifier"]) for e in json.loads(text)["events"])
        elif path == "/v1/billing/meter_events" and text:
            self.seen.append((self.tag, parse_qs(text)["identifier"][0]))
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay and path == STREAM:
                time.sleep(self.delay)
            return self.sandbox.handle(method, path, query, headers, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self):
        pass


def record_fast(billing, user_id, n, feature="api_calls", at=None):
    with billing.ledger.transaction():
        for i in range(n):
            billing.usage.record(user_id, feature, i % 7 + 1, at=at, push=False)


def four_workers(billing, config_path, db: str, per_feature: int) -> dict:
    """Three customers with ``per_feature`` events of each of two features; four ``usagebill
    push`` processes at once on the ledger ``db``, each through a sandbox server of its own
    over one sandbox (failing now and then). Checks that each event is in Stripe once, that
    each identifier was sent by one worker, and that nothing is left; returns identifier ->
    the workers that sent it."""
    sandbox = Sandbox()  # in memory, shared by the four servers of this process
    conn = connect(ledger_path=":memory:", sandbox=sandbox)
    setup_stripe(billing, conn)
    t = now()
    for user in ("a", "b", "c"):
        customer(billing, conn, user, "Team", anchor=t - 10 * DAY)
        record_fast(billing, user, per_feature, at=t - 2 * DAY)
        record_fast(billing, user, per_feature, "ai_tokens", at=t - DAY)
    total = 6 * per_feature
    sandbox.faults = FaultInjector(FaultConfig(rate_5xx=0.05, rate_429=0.05, rate_drop=0.05, seed=11))
    seen: list = []
    servers = [SandboxServer(Tagged(sandbox, i, seen, delay=0.02), "127.0.0.1", 0).start() for i in range(4)]
    try:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "usagebill", "--config", str(config_path), "--db", db, "push", "--json"],
            env={**os.environ, "PYTHONPATH": str(ROOT), "USAGEBILL_SANDBOX_URL": s.url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for s in servers]
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for s in servers:
            s.shutdown()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()
    sandbox.faults = FaultInjector(FaultConfig())
    assert outbox.count_pending(billing.ledger, outbox.Scope()) == 0
    assert sum(json.loads(out)["delivered"] for out, _ in results) == total  # each counted by the worker that sent it
    rows = meter_rows(sandbox)
    assert len(rows) == len({i for i, *_ in rows}) == total  # each event once in Stripe
    assert stripe_totals(rows) == ledger_totals(billing)
    senders = defaultdict(set)
    for worker, identifier in seen:
        senders[identifier].add(worker)
    assert len(senders) == total and all(len(w) == 1 for w in senders.values())  # each sent by one worker
    assert max(s.sandbox.most_in_flight for s in servers) >= 2  # several requests in flight in one push
    return senders


@pytest.mark.sqlite_only(reason="the workers open the SQLite file by path (on PostgreSQL: test_outbox_postgres.py)")
def test_four_push_workers_at_once_deliver_each_event_once_sent_by_one_worker(tmp_path, config_path):
    db = tmp_path / "ledger.db"
    billing = Billing.open(config_path, db)
    senders = four_workers(billing, config_path, str(db), 1500)
    assert len({w for ws in senders.values() for w in ws}) >= 2  # and they did work side by side
    billing.close()


def test_one_push_keeps_several_stream_requests_in_flight(billing, conn):
    setup_stripe(billing, conn)
    customer(billing, conn, "alice")
    record_fast(billing, "alice", 1000)
    seen: list = []
    tagged = Tagged(conn.sandbox, 0, seen, delay=0.02)
    conn.client._requestor._client.sandbox = tagged  # the in-process transport, through the tagged one
    r = push(billing, conn, concurrency=4)
    assert (r.delivered, r.still_pending) == (1000, 0)
    assert tagged.most_in_flight == 4
    assert len(seen) == 1000


def test_a_429_pauses_every_thread_of_the_push():
    class Conn:
        client = None

    slept: list = []
    sender = MeterEventSender(Conn(), rate=None, policy=RetryPolicy(rounds=3, base_delay=1.0), sleep=slept.append)
    calls = []

    def busy():
        calls.append(1)
        if len(calls) == 1:
            raise stripe.RateLimitError("Too many requests", http_status=429)
        return "ok"

    assert sender.call("meter event stream", busy) == "ok"
    assert sender.rate.paused_until > 0  # everyone waits now, not only this thread
    clock = [sender.rate.clock()]
    limiter = sender.rate
    limiter.clock = lambda: clock[0]
    limiter.sleep = slept.append
    limiter.paused_until = clock[0] + 2.0
    limiter.wait()  # another thread's next request
    assert slept[-1] == pytest.approx(2.0)


def test_the_rate_limiter_is_shared_by_threads():
    clock, slept, lock = [0.0], [], threading.Lock()

    def sleep(s):
        with lock:
            slept.append(round(s, 6))

    limiter = RateLimiter(10, clock=lambda: clock[0], sleep=sleep)
    threads = [threading.Thread(target=limiter.wait) for _ in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(slept) == [0.1, 0.2, 0.3, 0.4]  # evenly spaced across threads, not each its own


def test_the_stream_body_is_what_the_sdk_would_send_without_its_form_encoding(billing, conn, monkeypatch):
    """The prepared request equals the SDK's own (URL, headers, JSON body), and no stream
    request is form-encoded on the way (the SDK did it for its debug log and threw it away)."""
    setup_stripe(billing, conn)
    cus = customer(billing, conn, "alice")
    events = [MeterEvent(f"ube_{i}", "api_calls", cus, i + 1, now()) for i in range(3)]
    captured = []
    http = conn.client._requestor._client
    real = http.request_with_retries

    def capture(method, url, headers, post_data=None, max_network_retries=None, *, _usage=None):
        captured.append((method, url, dict(headers), json.loads(post_data) if post_data else None))
        return real(method, url, headers, post_data, max_network_retries, _usage=_usage)

    monkeypatch.setattr(http, "request_with_retries", capture)
    sender = MeterEventSender(conn, rate=None, policy=RetryPolicy(rounds=1, base_delay=0))
    token = sender._session_token()
    conn.client.v2.billing.meter_event_stream.create(params=stream_params(events), options={"api_key": token})
    sender.stream(events)
    (sdk, ours) = [c for c in captured if c[1].endswith(STREAM)]
    assert ours[:2] == sdk[:2] and ours[3] == sdk[3]
    differ = {k for k in set(sdk[2]) | set(ours[2]) if sdk[2].get(k) != ours[2].get(k)}
    assert differ == {"Idempotency-Key"}  # a new one per request, as the SDK makes
    encoded = []
    real_encode = stripe._api_requestor._api_encode

    def counting(data):
        encoded.append(dict(data))
        return real_encode(data)

    monkeypatch.setattr(stripe._api_requestor, "_api_encode", counting)
    record_fast(billing, "alice", 250)
    assert push(billing, conn).delivered == 250
    assert not [d for d in encoded if "events" in d]  # three stream requests, none form-encoded


def test_the_sdk_service_method_is_used_when_its_internals_are_not_there(billing, conn, monkeypatch):
    setup_stripe(billing, conn)
    customer(billing, conn, "alice")
    record_fast(billing, "alice", 120)
    monkeypatch.setattr(meter_sender._StreamPost, "__init__", lambda self, client: setattr(self, "available", False))
    assert push(billing, conn).delivered == 120
    assert stripe_totals(meter_rows(conn.sandbox)) == ledger_totals(billing)


def test_rates_come_from_stripes_documented_limits():
    class C:
        def __init__(self, mode):
            self.mode, self.sandbox = mode, None

    assert push_rate(C("sandbox")) is None
    assert push_rate(C("test")) == 20.0  # test mode: meter events count toward the basic 25/s
    assert push_rate(C("live")) == 100.0  # live: the stream's 10,000 events/s, 100 a request
    assert default_concurrency(C("live"), 100.0) == 25
    assert default_concurrency(C("test"), 20.0) == 5
    assert default_concurrency(C("sandbox"), None) == 4
    assert check_rate("12.5") == 12.5
    for bad in ("0", "-3", "nan", "inf", "fast", None):
        with pytest.raises(Exception, match="positive number of requests per second"):
            check_rate(bad)


def test_push_rate_option(runner):
    assert runner("sync").exit_code == 0
    J(runner("customers", "add", "alice", "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    for i in range(3):
        J(runner("record", "alice", "api_calls", "2", "--no-push", "--json"))
    for bad in ("0", "-1", "nan", "inf", "lots"):
        r = runner("push", "--rate", bad)
        assert r.exit_code == 2, r.output
        (line,) = [x for x in r.stderr.strip().splitlines() if x.startswith("Error")]
        assert "positive number of requests per second" in line and "Traceback" not in r.stderr
    pushed = J(runner("push", "--rate", "50", "--json"))
    assert (pushed["delivered"], pushed["still_pending"], pushed["dropped"], pushed["unattributed_drops"]) == (3, 0, 0, 0)


def test_push_json_counts_what_stripe_dropped(runner, config_path):
    assert runner("sync").exit_code == 0
    J(runner("customers", "add", "alice", "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    b = Billing.open(config_path)
    b.customers.add("bob", stripe_customer_id="cus_nobody")  # Stripe drops its events after accepting them
    b.subscriptions.start("bob", "Pro")
    for user in ("alice", "bob", "bob"):
        b.usage.record(user, "api_calls", 2, push=False)
    b.close()
    r = runner("push", "--json")
    assert r.exit_code == 4
    pushed = json.loads(r.stdout)
    assert (pushed["delivered"], pushed["failed"], pushed["dropped"], pushed["unattributed_drops"]) == (1, 2, 2, 0)
