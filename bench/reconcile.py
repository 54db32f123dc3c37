"""Reconcile benchmark: `reconcile` over every customer, before and after, on one ledger.

The ledger is BUILT PARTLY BY DIRECT SQL THROUGH THE SCHEMA. Through the library, on the
built-in sandbox (its state file beside the ledger): `sync`, C customers on test clocks (3 per
clock, Stripe's maximum) from 2026-01-01, each subscribed to a 3-feature plan. Then N usage
events are INSERTed straight into the ledger's `usage_events` and `event_delivery` (as
delivered) and, with the same identifiers, into the sandbox's own `meter_events` table (what
`push` would have put there), bypassing `record` and `push` (hours at 10^6): half in January,
then every clock is advanced to Feb 11 (January's renewal invoices are finalized, billing
that usage), then the other half in February. So each customer has a closed period (its
invoice final) and an open one, and Stripe matches the ledger: reconcile exits 0.

Then each run is a subprocess with PYTHONPATH set to a checkout (`--before DIR`, default
/work/main, and this one), alternating, that opens the ledger and times the library call
`reconcile(billing, conn)` (not the interpreter's start-up) and counts the HTTP requests the
sandbox answers. It prints seconds (min / median / max over --repeat runs) and the after /
before ratio of the medians.

    python bench/reconcile.py --customers 3000 --events 100000 --keep /tmp/rb-1e5
    python bench/reconcile.py --reuse /tmp/rb-1e5 [--repeat 3] [--before /work/main] [--workers N] [--no-sandbox-indexes]
    cp -a /tmp/rb-1e5 /tmp/rb-1e6 && python bench/reconcile.py --reuse /tmp/rb-1e6 --add-february 900000
    python bench/reconcile.py --reuse DIR --latency 50 [--rate 20]   # as over a network (and test mode's pace)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from common import CONFIG, FEATURES  # noqa: E402

JAN_1, FEB_1 = 1767225600, 1769904000
DAY = 86400
PER_CLOCK = 3
BATCH = 200_000


def _insert(billing, sandbox_db, rows) -> None:
    """Direct SQL (see the module's doc): ledger events delivered, and the sandbox's meter events."""
    now = int(time.time())
    with billing.ledger.transaction() as db:
        db.executemany(
            "INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, idempotency_key, source) "
            "VALUES (?, ?, ?, ?, ?, ?, NULL, 'import')", [(r[0], r[1], r[3], r[4], r[5], now) for r in rows])
        db.executemany("INSERT INTO event_delivery (event_id, status, attempts, updated_at, first_sent_at) "
                       "VALUES (?, 'delivered', 1, ?, ?)", [(r[0], now - 3600, now - 3600) for r in rows])
    sandbox_db.executemany(
        "INSERT INTO meter_events (identifier, event_name, customer, value, timestamp, received, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(r[0], r[3], r[2], r[4], r[5], now - 3600, json.dumps({"stripe_customer_id": r[2], "value": str(r[4])}))
         for r in rows])
    sandbox_db.commit()


def _events(billing, sandbox_db, users: list[tuple[str, str]], n: int, lo: int, hi: int, rng, start: int) -> None:
    t0 = time.perf_counter()
    done = 0
    while done < n:
        rows = []
        for _ in range(min(BATCH, n - done)):
            uid, cus = users[rng.randrange(len(users))]
            seq = start + done
            rows.append((f"ube_bench{seq:024x}", uid, cus, FEATURES[seq % 3], rng.randint(1, 100), rng.randrange(lo, hi)))
            done += 1
        _insert(billing, sandbox_db, rows)
        print(f"\r  {done:,} events ({done / (time.perf_counter() - t0):,.0f}/s)", end="", flush=True)
    print(flush=True)


def build(folder: Path, customers: int, events: int) -> None:
    import sqlite3

    sys.path.insert(0, str(ROOT))
    from usagebill import Billing
    from usagebill.gateway.accounts import add_customer, subscribe
    from usagebill.gateway.clocks import advance_clock, create_clock
    from usagebill.gateway.sync import sync

    (folder / "billing.toml").write_text(CONFIG, encoding="utf-8")
    billing = Billing.open(folder / "billing.toml")
    conn = billing.connection
    sync(billing, conn)
    sandbox_indexes(folder)
    t0 = time.perf_counter()
    users, clocks = [], []
    for i in range(customers):
        if i % PER_CLOCK == 0:
            clocks.append(create_clock(billing, conn, at=JAN_1).id)
        uid = f"cust-{i:06d}"
        users.append((uid, add_customer(billing, conn, uid, test_clock=clocks[-1]).stripe_customer_id))
        subscribe(billing, conn, uid, "Bench", "month")
        if i % 100 == 99:
            print(f"\r  {i + 1:,} customers ({(i + 1) / (time.perf_counter() - t0):,.0f}/s)", end="", flush=True)
    print(f"\ncustomers on {len(clocks):,} test clocks, subscribed (library, sandbox): {customers:,} in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    sandbox_db = sqlite3.connect(folder / ".usagebill" / "sandbox.db", timeout=60)
    rng = random.Random(13)
    t0 = time.perf_counter()
    _events(billing, sandbox_db, users, events // 2, JAN_1, FEB_1, rng, 0)
    print(f"January usage (direct SQL): {events // 2:,} events in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    for n, clock in enumerate(clocks, 1):
        advance_clock(billing, conn, clock, "2026-02-11T00:00:00Z")
        if n % 50 == 0:
            print(f"\r  {n:,} clocks advanced", end="", flush=True)
    print(f"\nclocks advanced to Feb 11 (library, sandbox): {len(clocks):,} in {time.perf_counter() - t0:.1f} s",
          flush=True)
    t0 = time.perf_counter()
    _events(billing, sandbox_db, users, events - events // 2, FEB_1, FEB_1 + 10 * DAY, rng, events // 2)
    print(f"February usage (direct SQL): {events - events // 2:,} events in {time.perf_counter() - t0:.1f} s",
          flush=True)
    sandbox_db.close()
    billing.ledger.conn.execute("ANALYZE")
    billing.close()


# The sandbox finds an invoice's lines, a subscription's invoices, a customer's invoice items
# and a clock's customers by scanning every object of the type with json_extract: O(objects)
# a request, which at thousands of customers is most of any command's time (building this
# ledger without them: 7 s per clock advance; with them 1.6 s). The bench adds these indexes
# to its own sandbox file by direct SQL (the sandbox's code is unchanged; SQLite uses an
# expression index when a query's expression is the same).
SANDBOX_INDEXED = ("$.customer", "$.invoice", "$.test_clock", "$.subscription",
                   "$.parent.subscription_details.subscription")


def sandbox_indexes(folder: Path, wanted: bool = True) -> None:
    import sqlite3

    db = sqlite3.connect(folder / ".usagebill" / "sandbox.db", timeout=60)
    for i, path in enumerate(SANDBOX_INDEXED):
        if wanted:
            db.execute(f"CREATE INDEX IF NOT EXISTS bench_objects_{i} ON objects (object, json_extract(data, '{path}'))")
        else:
            db.execute(f"DROP INDEX IF EXISTS bench_objects_{i}")
    db.commit()
    db.close()


def add_february(folder: Path, n: int) -> None:
    import sqlite3

    sys.path.insert(0, str(ROOT))
    from usagebill import Billing

    billing = Billing.open(folder / "billing.toml")
    users = [(r[0], r[1]) for r in billing.ledger.all("SELECT user_id, stripe_customer_id FROM customers ORDER BY user_id")]
    (start,) = billing.ledger.one("SELECT COUNT(*) FROM usage_events")
    sandbox_db = sqlite3.connect(folder / ".usagebill" / "sandbox.db", timeout=60)
    t0 = time.perf_counter()
    _events(billing, sandbox_db, users, n, FEB_1, FEB_1 + 10 * DAY, random.Random(start), start)
    print(f"February usage added (direct SQL): {n:,} events in {time.perf_counter() - t0:.1f} s", flush=True)
    sandbox_db.close()
    billing.ledger.conn.execute("ANALYZE")
    billing.close()


DRIVER = r"""
import inspect, json, sys, time
from usagebill import Billing
from usagebill.gateway.reconcile import reconcile

billing = Billing.open(sys.argv[1])
conn = billing.connection
calls, inside = 0, 0.0
if conn.sandbox is not None:
    handle = conn.sandbox.handle
    latency = float(sys.argv[3]) / 1000

    def counted(*a, **k):
        global calls, inside
        calls += 1
        if latency:
            time.sleep(latency)  # a network's round trip (outside the sandbox's lock)
        t = time.perf_counter()
        try:
            return handle(*a, **k)
        finally:
            inside += time.perf_counter() - t
    conn.sandbox.handle = counted
kwargs = json.loads(sys.argv[2])
known = inspect.signature(reconcile).parameters
t0 = time.perf_counter()
r = reconcile(billing, conn, **{k: v for k, v in kwargs.items() if k in known})
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "calls": calls, "sandbox": inside, "lines": len(r.lines),
                  "differences": len(r.differences), "at_risk": len(r.at_risk)}))
"""


def timed(code: Path, folder: Path, kwargs: dict, sandbox_url: str | None, latency_ms: float = 0) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "USAGEBILL_CONFIG": str(folder / "billing.toml")}
    env.pop("STRIPE_API_KEY", None)
    env.pop("USAGEBILL_SANDBOX_URL", None)
    if sandbox_url:
        env["USAGEBILL_SANDBOX_URL"] = sandbox_url
    out = subprocess.run([sys.executable, "-c", DRIVER, str(folder / "billing.toml"), json.dumps(kwargs),
                          str(latency_ms)],
                         capture_output=True, text=True, env=env, cwd=folder)
    if out.returncode != 0:
        sys.exit(f"reconcile with {code} failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _range(xs: list[float]) -> str:
    return f"{min(xs):7.2f} / {statistics.median(xs):7.2f} / {max(xs):7.2f} s"


def run(folder: Path, before: Path | None, repeat: int, kwargs: dict, sandbox_url: str | None,
        latency_ms: float = 0) -> None:
    results: dict[str, list[dict]] = {"before": [], "after": []}
    runs = (("after", ROOT),) if before is None else (("before", before), ("after", ROOT))
    for i in range(repeat):
        for name, code in runs:
            results[name].append(timed(code, folder, kwargs, sandbox_url, latency_ms))
            r = results[name][-1]
            print(f"  run {i + 1} {name:6s} {r['seconds']:7.2f} s  {r['calls']:,} sandbox requests "
                  f"(in the sandbox: {r['sandbox']:.2f} s, summed over threads)  {r['lines']:,} lines, "
                  f"{r['differences']:,} differences", flush=True)
    medians = {}
    for name in [n for n, _ in runs]:
        secs = [r["seconds"] for r in results[name]]
        medians[name] = statistics.median(secs)
        print(f"{name:6s} ({before if name == 'before' else ROOT}): min / median / max {_range(secs)}, "
              f"{results[name][0]['calls']:,} sandbox requests", flush=True)
    if before is not None:
        print(f"after / before (medians): {medians['after'] / medians['before']:.2f}x", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=3000)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--keep", metavar="DIR", help="Build the ledger here and keep it.")
    p.add_argument("--reuse", metavar="DIR", help="Time an existing bench ledger (built with --keep).")
    p.add_argument("--before", metavar="DIR", default="/work/main",
                   help="The checkout to compare with ('none': time this one only).")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, help="reconcile's workers (after only).")
    p.add_argument("--rate", type=float, help="reconcile's rate limit, requests/s (after only).")
    p.add_argument("--sandbox-url", help="A sandbox served by `usagebill sandbox serve` on the bench's sandbox.db.")
    p.add_argument("--sandbox-indexes", action=argparse.BooleanOptionalAction, default=None,
                   help="With --reuse: add (or drop) the bench's indexes of the sandbox's objects first.")
    p.add_argument("--latency", type=float, default=0, metavar="MS",
                   help="Add MS milliseconds to every sandbox request, as a network would (in-process sandbox).")
    p.add_argument("--add-february", type=int, metavar="N",
                   help="With --reuse: first add N more February events (delivered; direct SQL) to that ledger.")
    a = p.parse_args()
    kwargs = {k: v for k, v in (("workers", a.workers), ("rate", a.rate)) if v is not None}
    if a.reuse:
        if a.sandbox_indexes is not None:
            sandbox_indexes(Path(a.reuse), a.sandbox_indexes)
        if a.add_february:
            add_february(Path(a.reuse), a.add_february)
        run(Path(a.reuse), None if a.before == 'none' else Path(a.before), a.repeat, kwargs, a.sandbox_url, a.latency)
        return
    folder = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="usagebill-bench-reconcile-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        print(f"{a.events:,} events, {a.customers:,} customers, in {folder}", flush=True)
        build(folder, a.customers, a.events)
        run(folder, None if a.before == 'none' else Path(a.before), a.repeat, kwargs, a.sandbox_url, a.latency)
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
