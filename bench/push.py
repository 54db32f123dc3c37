"""Delivery benchmark: N usage events in a ledger, delivered to an in-process sandbox

  (a) baseline: one v1 meter event per usage event, each marked delivered as it goes
  (b) push: the v2 meter event stream, 100 events a request
  (c) push --coalesce: one meter event per customer, feature and billing period

Prints events/s and Stripe API calls per 1,000 events for each, and the ratios against the
baseline measured in the same run. Each mode gets its own fresh ledger and sandbox with the
same events; only the delivery is timed.

    python bench/push.py [--events 10000] [--customers 10]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from usagebill import Billing  # noqa: E402
from usagebill.ledger import outbox  # noqa: E402
from usagebill.gateway.client import connect  # noqa: E402
from usagebill.gateway.delivery import push  # noqa: E402
from usagebill.gateway.sync import sync  # noqa: E402
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


def prepare(workdir: Path, events: int, customers: int, seed: int):
    """A ledger with ``events`` pending usage events of ``customers`` customers, and a
    sandbox that knows the customers and meters."""
    workdir.mkdir()
    shutil.copy(ROOT / "billing.toml.example", workdir / "billing.toml")
    billing = Billing.open(workdir / "billing.toml", workdir / "ledger.db")
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


def check(billing, conn) -> None:
    """Everything delivered, and the sandbox's totals equal the ledger's."""
    assert outbox.count_pending(billing.ledger, outbox.Scope()) == 0
    stripe = dict(conn.sandbox.store.db.execute(
        "SELECT customer, SUM(value) FROM meter_events GROUP BY customer").fetchall())
    ledger = dict(billing.ledger.all(
        "SELECT c.stripe_customer_id, SUM(e.amount) FROM usage_events e JOIN customers c USING (user_id) "
        "GROUP BY 1").__iter__())
    assert stripe == {k: v for k, v in ledger.items()}, "sandbox totals differ from the ledger's"


MODES = {
    "baseline (v1, 1 per event)": baseline,
    "push (v2 stream, 100/request)": lambda b, c: push(b, c),
    "push --coalesce": lambda b, c: push(b, c, coalesce=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, deliver) in enumerate(MODES.items()):
            billing, conn = prepare(Path(tmp) / f"mode{i}", args.events, args.customers, args.seed)
            counter = CallCounter(conn.sandbox)
            start = time.perf_counter()
            deliver(billing, conn)
            elapsed = time.perf_counter() - start
            check(billing, conn)
            results.append((name, elapsed, counter.calls))
            billing.close()
            conn.sandbox.close()
    n = args.events
    base_rate, base_calls = n / results[0][1], results[0][2]
    print(f"{n:,} events, {args.customers} customers, in-process sandbox (no faults), Python {sys.version.split()[0]}")
    print(f"{'mode':32} {'seconds':>8} {'events/s':>10} {'calls/1k ev':>12} {'speed x':>8} {'calls x':>9}")
    for name, elapsed, calls in results:
        rate = n / elapsed
        print(f"{name:32} {elapsed:8.2f} {rate:10,.0f} {calls * 1000 / n:12.1f} "
              f"{rate / base_rate:8.1f} {calls / base_calls:9.4f}")


if __name__ == "__main__":
    main()
