"""Delivery benchmark: N usage events in a ledger, delivered to the sandbox.

In process (the sandbox in this process; its CPU counts as the client's, so only events/s):

  (a) baseline: one v1 meter event per usage event, each marked delivered as it goes
  (b) push: the v2 meter event stream, 100 events a request
  (c) push --coalesce: one meter event per customer, feature and billing period

Through the HTTP loopback sandbox (`usagebill.sandbox.serve` in another process, so the
client's CPU is its own: time.process_time of this process, every thread included):

  (d) baseline: push as it was, one stream request at a time, each encoded by the SDK's
      service method (form-encoded for its debug log, then JSON)
  (e) push: the pool on (--concurrency requests in flight), the body encoded once as JSON
      and handed to the SDK's HTTP client

Prints events/s, Stripe API calls per 1,000 events and (HTTP) events per client CPU-second,
and the ratios against the baselines measured in the same run (a against a, d and e against d).
Each mode gets its own fresh ledger and sandbox with the same events; only the delivery is
timed. The machine is shared: --repeat runs each mode several times and prints the range.

    python bench/push.py [--events 10000] [--customers 10] [--concurrency 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from usagebill import Billing  # noqa: E402
from usagebill.gateway import meter_sender  # noqa: E402
from usagebill.gateway.client import connect  # noqa: E402
from usagebill.gateway.delivery import push  # noqa: E402
from usagebill.gateway.sync import sync  # noqa: E402
from usagebill.ledger import outbox  # noqa: E402
from usagebill.sandbox import Sandbox  # noqa: E402


class CallCounter:
    """Counts the HTTP requests the sandbox answers (what Stripe would see)."""

    def __init__(self, sandbox: Sandbox):
        self.calls = 0
        handle = sandbox.handle

        def counted(*args, **kwargs):
            self.calls += 1
            return handle(*args, **kwargs)

        sandbox.handle = counted


def prepare(workdir: Path, events: int, customers: int, seed: int, sandbox_url: str | None = None):
    """A ledger with ``events`` pending usage events of ``customers`` customers, and a
    sandbox (in process, or the one at ``sandbox_url``) that knows the customers and meters."""
    workdir.mkdir()
    shutil.copy(ROOT / "billing.toml.example", workdir / "billing.toml")
    billing = Billing.open(workdir / "billing.toml", workdir / "ledger.db")
    if sandbox_url:
        conn = connect(ledger_path=billing.db_path, sandbox_url=sandbox_url)
    else:
        conn = connect(ledger_path=billing.db_path, sandbox=Sandbox(faults=None))
    billing.use_connection(conn)
    sync(billing, conn)
    users = [f"user{i:03d}" for i in range(customers)]
    for user in users:
        cus = conn.client.v1.customers.create(params={"name": user}).id
        billing.customers.add(user, stripe_customer_id=cus)
        billing.subscriptions.start(user, "Pro")
    rng = random.Random(seed)
    with billing.ledger.transaction():
        for _ in range(events):
            billing.usage.record(rng.choice(users), "api_calls", rng.randint(1, 50), push=False)
    return billing, conn


def baseline(billing, conn) -> None:
    """The naive outbox: every pending event, one v1 request, then its own ledger write."""
    meter_events = conn.client.v1.billing.meter_events
    customers = {c.user_id: c.stripe_customer_id for c in billing.customers.list()}
    for row in list(outbox.pending_events(billing.ledger, outbox.Scope())):
        meter_events.create(params={
            "event_name": row["feature"], "identifier": row["id"], "timestamp": row["timestamp"],
            "payload": {"stripe_customer_id": customers[row["user_id"]], "value": str(row["amount"])},
        })
        outbox.mark_events(billing.ledger, [row["id"]], {})


def check(billing, stripe_db) -> None:
    """Everything delivered, and the sandbox's totals equal the ledger's."""
    assert outbox.count_pending(billing.ledger, outbox.Scope()) == 0
    stripe = dict(stripe_db.execute("SELECT customer, SUM(value) FROM meter_events GROUP BY customer").fetchall())
    ledger = dict(billing.ledger.all(
        "SELECT c.stripe_customer_id, SUM(e.amount) FROM usage_events e JOIN customers c USING (user_id) "
        "GROUP BY 1").__iter__())
    assert stripe == ledger, "sandbox totals differ from the ledger's"


class Server:
    """`usagebill.sandbox.serve` in a process of its own (its CPU is not the client's)."""

    def __init__(self, state: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from usagebill.sandbox import serve\n"
             "s = serve(sys.argv[1], port=0); print(s.url, flush=True); s.serve_forever()", str(state)],
            stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        self.url = self.proc.stdout.readline().strip()
        self.state = state

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def sdk_encoded(fn):
    """Push as before: the SDK's service method encodes each stream request (its form encoding too)."""
    def run(b, c):
        real = meter_sender._StreamPost.__init__
        meter_sender._StreamPost.__init__ = lambda self, client: setattr(self, "available", False)
        try:
            return fn(b, c)
        finally:
            meter_sender._StreamPost.__init__ = real
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight in (e)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()
    in_process = {
        "(a) baseline (v1, 1 per event)": baseline,
        "(b) push (v2 stream, 100/request)": lambda b, c: push(b, c),
        "(c) push --coalesce": lambda b, c: push(b, c, coalesce=True),
    }
    http = {
        "(d) baseline: 1 in flight, SDK encoding": sdk_encoded(lambda b, c: push(b, c, concurrency=1)),
        f"(e) push: {args.concurrency} in flight, JSON once": lambda b, c: push(b, c, concurrency=args.concurrency),
    }
    results: dict[str, list[tuple[float, float, int]]] = {}  # name -> [(seconds, cpu seconds, calls)]
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        for _ in range(args.repeat):
            if not args.skip_in_process:
                for name, deliver in in_process.items():
                    n += 1
                    billing, conn = prepare(Path(tmp) / f"m{n}", args.events, args.customers, args.seed)
                    counter = CallCounter(conn.sandbox)
                    start, cpu = time.perf_counter(), time.process_time()
                    deliver(billing, conn)
                    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
                    check(billing, conn.sandbox.store.db)
                    results.setdefault(name, []).append((elapsed, used, counter.calls))
                    billing.close()
                    conn.sandbox.close()
            for name, deliver in http.items():
                n += 1
                folder = Path(tmp) / f"m{n}"
                server = Server(Path(tmp) / f"stripe{n}.db")
                try:
                    billing, conn = prepare(folder, args.events, args.customers, args.seed, server.url)
                    start, cpu = time.perf_counter(), time.process_time()
                    r = deliver(billing, conn)
                    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
                    stripe_db = sqlite3.connect(server.state)
                    check(billing, stripe_db)
                    stripe_db.close()
                    results.setdefault(name, []).append((elapsed, used, r.requests))
                    billing.close()
                finally:
                    server.close()
    e = args.events
    print(f"{e:,} events, {args.customers} customers, Python {sys.version.split()[0]}, best .. worst of {args.repeat}")
    print(f"{'mode':42} {'events/s':>17} {'calls/1k ev':>11} {'ev/CPU-s':>17} {'speed x':>11} {'ev/CPU x':>11}")
    for group, base_name in ((in_process, "(a) baseline (v1, 1 per event)"), (http, next(iter(http)))):
        if base_name not in results:
            continue
        base_rate = e / min(x[0] for x in results[base_name])
        base_eff = e / min(x[1] for x in results[base_name])
        for name in group:
            runs = results[name]
            rates = [e / x[0] for x in runs]
            effs = [e / x[1] for x in runs]
            calls = runs[0][2]
            eff = f"{min(effs):7,.0f}..{max(effs):7,.0f}" if group is http else f"{'-':>17}"
            effx = f"{max(effs) / base_eff:5.2f}" if group is http else "-"
            print(f"{name:42} {min(rates):7,.0f}..{max(rates):7,.0f} {calls * 1000 / e:11.1f} {eff} "
                  f"{min(rates) / base_rate:5.1f}..{max(rates) / base_rate:4.1f} {effx:>11}")


if __name__ == "__main__":
    main()
