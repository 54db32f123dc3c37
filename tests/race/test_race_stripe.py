"""The Stripe side under processes racing on one ledger and one sandbox (served over HTTP
from this process, which counts every meter event identifier it receives): concurrent
``customers add`` and ``subscribe``; four ``push`` workers at once; four ``usagebill push``
processes killed at random moments. Stripe's totals must equal the ledger's, nothing may stay
pending, and each identifier is sent by one worker."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.gateway.metering import DAY, customer, ledger_totals, meter_rows, now, record_many, setup_stripe, stripe_totals
from tests.race import workers
from usagebill import Billing

pytestmark = pytest.mark.own_backend

ROOT = Path(__file__).resolve().parents[2]


class Received:
    """Wraps the served sandbox's ``handle``: counts the identifiers of every meter event
    request it receives, before the sandbox de-duplicates them."""

    def __init__(self, sandbox):
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        original = sandbox.handle

        def handle(method, path, query, headers, body):
            ids = workers.identifiers_in(method, path, body)
            with self._lock:
                self.counts.update(ids)
            return original(method, path, query, headers, body)

        sandbox.handle = handle


@pytest.fixture
def sandbox(tmp_path):
    from usagebill.sandbox import serve

    server = serve(tmp_path / "sandbox.db")
    server.received = Received(server.sandbox)
    yield server
    server.shutdown()


@pytest.fixture
def billing_on(config_path, target, sandbox):
    """This process's Billing on the shared ledger, delivering to the served sandbox."""
    from usagebill.gateway.client import connect

    b = Billing.open(config_path, target)
    conn = connect(ledger_path=target, sandbox_url=sandbox.url)
    b.use_connection(conn)
    setup_stripe(b, conn)
    yield b, conn
    b.close()


def test_eight_processes_adding_and_subscribing_one_customer_make_one_of_each(race, config_path, target, sandbox,
                                                                            billing_on):
    b, conn = billing_on
    for round in range(3):
        user = f"alice{round}"
        same = race.run([(workers.add_and_subscribe, (str(config_path), target, 8, sandbox.url, user, "Pro",
                                                      round * 8 + i)) for i in range(8)])
        customers = {r["stripe_customer"] for r in same}
        in_stripe = [c.id for c in conn.client.v1.customers.list(params={"limit": 100}).auto_paging_iter()
                     if c.metadata.to_dict().get("usagebill_user_id") == user]
        assert len(customers) == 1 and in_stripe == list(customers), (same, in_stripe)
        cus = in_stripe[0]
        assert b.customers.get(user).stripe_customer_id == cus
        active = [s.id for s in conn.client.v1.subscriptions.list(params={"customer": cus, "limit": 100}).data
                  if s.status == "active"]
        assert active == [b.subscriptions.active(user).stripe_subscription_id], f"round {round}: {active}"
        assert {r["stripe_subscription"] for r in same} == set(active), same
        assert b.ledger.one("SELECT COUNT(*) FROM subscriptions WHERE user_id = ?", (user,))[0] == 1


def test_eight_processes_adding_and_subscribing_eight_customers(race, config_path, target, sandbox, billing_on):
    b, conn = billing_on
    users = [f"user{i}" for i in range(8)]
    plans = ["Pro", "Team", "Pay As You Go", "Pro", "Team", "Pay As You Go", "Pro", "Team"]
    each = race.run([(workers.add_and_subscribe, (str(config_path), target, 8, sandbox.url, u, p, i))
                     for i, (u, p) in enumerate(zip(users, plans))])
    assert [r["plan"] for r in each] == plans
    assert len({r["stripe_customer"] for r in each}) == 8 and len({r["stripe_subscription"] for r in each}) == 8
    assert sorted(c.user_id for c in b.customers.list()) == users
    for user, r in zip(users, each):
        assert b.customers.get(user).stripe_customer_id == r["stripe_customer"]
        assert b.subscriptions.active(user).stripe_subscription_id == r["stripe_subscription"]
    stripe_subs = conn.client.v1.subscriptions.list(params={"limit": 100}).auto_paging_iter()
    assert sorted(s.id for s in stripe_subs if s.status == "active") == sorted(r["stripe_subscription"] for r in each)


def pending_count(ledger) -> int:
    return ledger.one(
        "SELECT COUNT(*) FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
        "WHERE d.event_id IS NULL OR d.status NOT IN ('delivered', 'failed')"
    )[0]


def event_ids(ledger) -> set[str]:
    return {r[0] for r in ledger.all("SELECT id FROM usage_events")}


def check_exactly_once(b, conn, sandbox) -> None:
    assert pending_count(b.ledger) == 0
    rows = meter_rows(Path(sandbox.sandbox.path))
    assert max(Counter(identifier for identifier, *_ in rows).values()) == 1
    assert stripe_totals(rows) == ledger_totals(b)
    from usagebill.gateway.reconcile import reconcile

    assert reconcile(b, conn).differences == []


def push_to_the_end(b, conn, budget: float = 120.0) -> None:
    """Push until nothing is pending (a crashed worker's claims may need their lease to
    expire first)."""
    from usagebill.gateway.delivery import push

    deadline = time.monotonic() + budget
    while push(b, conn).still_pending and time.monotonic() < deadline:
        time.sleep(1)


def test_four_push_workers_at_once_send_each_event_once(race, config_path, target, sandbox, billing_on):
    b, conn = billing_on
    t = now()
    for user in ("a", "b", "c"):
        customer(b, conn, user, "Team", anchor=t - 33 * DAY)
    with b.ledger.transaction():
        for user in ("a", "b", "c"):
            record_many(b, user, 300, at=t - 20 * DAY, amount=lambda i: i % 7 + 1)
            record_many(b, user, 300, "ai_tokens", at=t - DAY, amount=lambda i: i % 5 + 1)
    results = race.run([(workers.push_worker, (str(config_path), target, 4, sandbox.url))] * 4)
    assert all(r["error"] is None and r["failed"] == 0 for r in results), results
    push_to_the_end(b, conn)
    received = sandbox.received.counts
    assert set(received) == event_ids(b.ledger)
    twice = [i for i, n in received.items() if n > 1]
    assert twice == [], f"{len(twice)} identifiers sent more than once, e.g. {twice[:3]}"
    assert sum(r["delivered"] + r["already_delivered"] for r in results) <= 1800
    check_exactly_once(b, conn, sandbox)


def test_push_workers_killed_at_random_moments_still_deliver_each_event_once(config_path, target, sandbox,
                                                                             billing_on, backend, request):
    """Runs of four ``usagebill push`` processes at once, on a sandbox failing often, some of
    them killed at random moments, new usage arriving between runs; then push to the end."""
    from usagebill.ledger import open_ledger
    from usagebill.sandbox.faults import FaultConfig, FaultInjector

    b, conn = billing_on
    t = now()
    for user in ("a", "b", "c"):
        customer(b, conn, user, "Team", anchor=t - 33 * DAY)
    rng = random.Random(20241)
    watcher = open_ledger(target)  # reads progress as another process would

    def progress() -> int:
        return watcher.one("SELECT COUNT(*) * 1000000 + COALESCE(SUM(attempts), 0) FROM event_delivery")[0]

    env = {**os.environ, "PYTHONPATH": str(ROOT), "USAGEBILL_SANDBOX_URL": sandbox.url}
    env.pop("USAGEBILL_SANDBOX_FAULTS", None)
    args = [sys.executable, "-m", "usagebill", "--config", str(config_path), "--db", target, "push"]
    killed = 0
    for run in range(4):
        with b.ledger.transaction():
            for user in ("a", "b", "c"):
                record_many(b, user, rng.randint(80, 160), at=t - 20 * DAY, amount=lambda i: i % 7 + 1)
                record_many(b, user, rng.randint(80, 160), "ai_tokens", at=t - DAY, amount=lambda i: i % 5 + 1)
        sandbox.sandbox.faults = FaultInjector(FaultConfig.parse(f"5xx=0.2,429=0.2,drop=0.2,seed={run}"))
        before = progress()
        procs = [subprocess.Popen(args + (["--coalesce"] if (run + i) % 3 == 0 else []), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(4)]
        deadline = time.monotonic() + 20
        while progress() == before and time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.01)
        for p in rng.sample(procs, rng.randint(1, 3)):  # some of them, at random moments
            time.sleep(rng.uniform(0.0, 0.15))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                killed += 1
        for p in procs:
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                pytest.fail("a push ran for more than two minutes")
            if p.returncode not in (0, -signal.SIGKILL, 4):  # 4: Stripe kept failing, left for later
                pytest.fail(f"push exited {p.returncode}: {p.stderr.read().decode()[-2000:]}")
            p.stderr.close()
    assert killed >= 3, f"only {killed} kills hit a running push"
    sandbox.sandbox.faults = FaultInjector(FaultConfig())  # Stripe healthy again
    push_to_the_end(b, conn)
    watcher.close()
    check_exactly_once(b, conn, sandbox)
