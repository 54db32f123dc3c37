"""Scale benchmark: the commands a cron job and an app run, on ledgers of 10^5, 10^6 and
10^7 usage events over 10,000 customers, each timed as a ratio of its 10^5 figure.

HOW THE LEDGERS ARE BUILT (direct SQL through usagebill's own schema, not through `record`):

  base   usagebill itself makes the ledger and the sandbox beside it: billing.toml, `sync`,
         then 10,000 customers added in Stripe and subscribed (the library's add_customer and
         subscribe, through the sandbox). The sandbox's clock is set DAYS days back while it
         does so, so every subscription is DAYS days into its first monthly period.
  events then, per size, a copy of the base gets N usage events INSERTed with plain SQL into
         `usage_events` (the table the migrations made, with its indexes and triggers: a
         ledger maintained by triggers stays so) and one `event_delivery` row each, marked
         delivered as `push` marks them, in transactions of 500,000 rows. Events are spread
         uniformly over the customers' period so far, in time order (seq follows time, as
         when recorded), counted in `usage_totals` as every insert path does (m011 on),
         with the outbox's delivered count and watermark moved as push moves them (m010 on), 3 features round robin, half with an idempotency key, random event
         ids like record's; one "heavy" customer (cust-000000) holds HEAVY_SHARE of them
         (10^6 at 10^7). The sandbox gets, by direct SQL into its meter_events table, one
         meter event per customer and feature holding that pair's total (Stripe keeps meter
         totals; the sandbox need not hold 10^7 rows for `reconcile` to agree).
  sandbox the bench adds three expression indexes to the sandbox's state file (SANDBOX_INDEXES):
         without them the sandbox scans every stored object per request (O(customers)),
         which Stripe does not, and which would dominate every timing that calls Stripe.

The built ledgers are cached under --cache (default /tmp/usagebill-scale, never in the repo;
10^7 events take about 4 GB there: check `df -h /tmp`, and `--clean` removes them). A cached
ledger is reused while its customers are still in that first period (a week); the current
usagebill migrates it on first open, as it would a user's ledger.

Then, interleaved (one run of every step at every size per round, so the shared machine's
noise falls on all sizes alike), --repeat rounds of:

  push                  usagebill push, nothing pending (CLI, a subprocess: start-up included)
  status                usagebill status
  summary               usagebill summary <typical> / <heavy>
  get_summary (lib)     Billing.usage.get_summary(<typical|heavy>, "api_calls"), the median
                        of 200 calls in one process (after 20 warm-up calls), in ms
  record                usagebill record <typical> api_calls 1 (delivered to the sandbox)
  record (lib)          Billing.usage.record(<typical>, "api_calls", 1, push=False): median ms
                        of 50 (then delivered, untimed, so the next push is idle again)
  charge                usagebill charge <typical> ai_tokens 3 (no credits: usage, delivered)
  top                   usagebill top (every customer's usage in its own period)
  reconcile USER        usagebill reconcile <typical>
  reconcile             usagebill reconcile (every customer)

<typical> is cust-005000 (~N/10,000 events, a subscription from the middle of the table),
<heavy> cust-000000 (HEAVY_SHARE of the events: 10^6 at 10^7, a third of them api_calls).
It prints, per step and size, min / median / max and the ratio of the medians (and of the
minimums, the least noisy) to the 10^5 figure. Target (issue 13): every ratio <= 1.5 except
reconcile over every customer (linear in customers, which stay 10,000, not in events).
A run slower than --slow seconds (20) counts its warm-up and is repeated once; one past
--timeout (900 s) is stopped, counted as 900 s ("a lower bound") and not repeated. Every run
is appended to a results-*.jsonl file in the cache as it ends.

    python bench/scale.py                                  # 10^5, 10^6, 10^7 (builds what is missing)
    python bench/scale.py --sizes 100000,1000000 --repeat 3   # a quick run: a couple of minutes once built
    python bench/scale.py --only summary,get_summary       # some steps
    python bench/scale.py --explain --sizes 100000         # what get_summary runs (EXPLAIN QUERY PLAN)
    python bench/scale.py --clean                          # remove the cached ledgers
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from common import CONFIG_WITH_CREDITS as CONFIG, FEATURES  # noqa: E402
sys.path.insert(0, str(ROOT))

CACHE = Path("/tmp/usagebill-scale")
CUSTOMERS = 10_000
DAYS = 20  # how far into their first monthly period the customers are
HEAVY_SHARE = 0.1
HEAVY = "cust-000000"
BATCH = 500_000
MAX_AGE_DAYS = 7  # a cached ledger older than this is rebuilt (its period would end)


# The sandbox finds a customer's objects, a subscription's invoices and the subscriptions due
# by scanning JSON rows: O(objects) per request, so at 10,000 customers each request took
# ~50 ms and subscribing them all hours. Stripe does not scale so; these expression indexes
# (direct SQL into the sandbox's state file, bench only) make those look-ups indexed.
SANDBOX_INDEXES = [
    "CREATE INDEX IF NOT EXISTS bench_objects_by_customer ON objects (object, json_extract(data, '$.customer'))",
    "CREATE INDEX IF NOT EXISTS bench_invoices_by_subscription "
    "ON objects (object, json_extract(data, '$.parent.subscription_details.subscription'))",
    "CREATE INDEX IF NOT EXISTS bench_kv_due ON kv (ns, CAST(value AS INTEGER))",
]


def say(msg: str, end: str = "\n") -> None:
    print(msg, end=end, flush=True)


def db_of(folder: Path) -> Path:
    return folder / ".usagebill" / "ledger.db"


def meta_of(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "scale.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if time.time() - meta["built_at"] < MAX_AGE_DAYS * 86400 else None


# -- building -----------------------------------------------------------------------------

def build_base(folder: Path, customers: int) -> dict:
    """billing.toml, sync, customers added and subscribed: all by usagebill, on a sandbox whose
    clock runs DAYS days behind."""
    from usagebill import Billing
    from usagebill.gateway.accounts import add_customer, subscribe
    from usagebill.gateway.client import connect
    from usagebill.gateway.sync import sync
    from usagebill.sandbox import Sandbox

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "billing.toml").write_text(CONFIG, encoding="utf-8")
    shift = DAYS * 86400
    billing = Billing.open(folder / "billing.toml")
    sandbox = Sandbox(db_of(folder).parent / "sandbox.db", faults=None, clock=lambda: time.time() - shift)
    for sql in SANDBOX_INDEXES:
        sandbox.store.db.execute(sql)
    conn = connect(ledger_path=billing.db_path, sandbox=sandbox)
    billing.use_connection(conn)
    sync(billing, conn)
    t0 = time.perf_counter()
    for i in range(customers):
        uid = f"cust-{i:06d}"
        add_customer(billing, conn, uid)
        subscribe(billing, conn, uid, "Bench")
        if i % 500 == 499:
            say(f"\r  base: {i + 1:,} customers added and subscribed on the sandbox "
                f"({(i + 1) / (time.perf_counter() - t0):,.0f}/s)", end="")
    say("")
    anchors = [s.anchor for s in (billing.subscriptions.get(f"cust-{i:06d}") for i in range(customers))]
    billing.close()
    sandbox.close()
    meta = {"customers": customers, "first_anchor": min(anchors), "last_anchor": max(anchors),
            "built_at": time.time(), "seconds": round(time.perf_counter() - t0, 1)}
    (folder / "scale.json").write_text(json.dumps(meta))
    return meta


def build_events(folder: Path, base: Path, events: int) -> dict:
    """A copy of the base with ``events`` usage events, delivered (see the module's doc)."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, folder)
    meta = json.loads((base / "scale.json").read_text())
    ids = [f"cust-{i:06d}" for i in range(meta["customers"])]
    conn = sqlite3.connect(db_of(folder), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # a benchmark's build: a crash means a rebuild
    conn.execute("PRAGMA cache_size = -2000000")  # 2 GB: the index pages stay in memory
    stripe_ids = dict(conn.execute("SELECT user_id, stripe_customer_id FROM customers"))
    # since m011 every insert adds its events to usage_totals in its transaction: so does this
    has_totals = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'usage_totals'").fetchone() is not None
    lo = meta["last_anchor"] + 1  # every subscription has begun
    hi = lo + DAYS * 86400 - 3600  # an hour before the sandbox's now at the base's end
    rng = random.Random(13)
    totals: dict[tuple[str, str], int] = {}
    t0 = time.perf_counter()
    seq = 0
    last_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM usage_events").fetchone()[0]
    while seq < events:
        n = min(BATCH, events - seq)
        # this batch's slice of time, so that seq follows time as when events are recorded
        a = lo + (hi - lo) * seq // events
        b = lo + (hi - lo) * (seq + n) // events
        stamps = sorted(rng.randrange(a, max(b, a + 1)) for _ in range(n))
        rows, deliveries = [], []
        for j, ts in enumerate(stamps):
            k = seq + j
            uid = ids[0] if rng.random() < HEAVY_SHARE else ids[rng.randrange(1, len(ids))]
            feature = FEATURES[k % 3]
            amount = rng.randint(1, 100)
            eid = f"ube_{rng.getrandbits(128):032x}"
            key = f"bench-{k}" if k % 2 else None
            recorded = ts + rng.randint(0, 5)
            rows.append((eid, uid, feature, amount, ts, recorded, key, "record"))
            deliveries.append((eid, recorded + 1, recorded + 2))
            totals[uid, feature] = totals.get((uid, feature), 0) + amount
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, idempotency_key, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO event_delivery (event_id, status, attempts, first_sent_at, updated_at) "
            "VALUES (?, 'delivered', 1, ?, ?)", deliveries)
        if has_totals:
            for span in (3600, 86400):
                conn.execute(
                    "INSERT INTO usage_totals (user_id, feature, span, since, units, events) "
                    f"SELECT user_id, feature, {span}, timestamp - timestamp % {span}, SUM(amount), COUNT(*) "
                    f"FROM usage_events WHERE seq > ? GROUP BY user_id, feature, timestamp - timestamp % {span} "
                    "ON CONFLICT (user_id, feature, span, since) DO UPDATE SET "
                    "units = usage_totals.units + excluded.units, events = usage_totals.events + excluded.events",
                    (last_seq,))
            last_seq = conn.execute("SELECT MAX(seq) FROM usage_events").fetchone()[0]
        conn.execute("COMMIT")
        seq += n
        say(f"\r  {folder.name}: {seq:,} events by direct SQL ({seq / (time.perf_counter() - t0):,.0f}/s)", end="")
    say("")
    # since m010 the outbox keeps the delivered count and a watermark below which every event
    # has a delivery row (push and status read those, not the history): as push would leave them
    with conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'delivery_totals'").fetchone():
            conn.execute("INSERT INTO delivery_totals (status, events) VALUES ('delivered', ?) "
                         "ON CONFLICT (status) DO UPDATE SET events = delivery_totals.events + excluded.events", (events,))
        conn.execute("UPDATE settings SET value = (SELECT CAST(MAX(seq) + 1 AS TEXT) FROM usage_events) "
                     "WHERE key = 'outbox_watermark'")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    # Stripe's side: one meter event per customer and feature with its total (direct SQL)
    sandbox = sqlite3.connect(db_of(folder).parent / "sandbox.db", isolation_level=None)
    now = int(time.time())
    with sandbox:
        sandbox.executemany(
            "INSERT INTO meter_events (identifier, event_name, customer, value, timestamp, received, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(f"bench-{uid}-{f}", f, stripe_ids[uid], v, lo, now,
              json.dumps({"stripe_customer_id": stripe_ids[uid], "value": str(v)})) for (uid, f), v in totals.items()])
    sandbox.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sandbox.close()
    meta.update(events=events, seconds_events=round(time.perf_counter() - t0, 1))
    heavy = sqlite3.connect(db_of(folder)).execute(
        "SELECT COUNT(*) FROM usage_events WHERE user_id = ?", (HEAVY,)).fetchone()[0]
    meta["heavy_events"] = heavy
    (folder / "scale.json").write_text(json.dumps(meta))
    return meta


def ledger_for(cache: Path, events: int, customers: int, rebuild: bool) -> Path:
    base = cache / f"base-{customers}"
    if rebuild or meta_of(base) is None:
        say(f"building the base ledger in {base} (usagebill itself, on the sandbox)")
        build_base(base, customers)
    folder = cache / f"events-{events}-{customers}"
    meta = meta_of(folder)
    if rebuild or meta is None or meta.get("events") != events or meta["built_at"] != meta_of(base)["built_at"]:
        say(f"building {events:,} events in {folder} (direct SQL through the schema)")
        build_events(folder, base, events)
    return folder


# -- timing -------------------------------------------------------------------------------

LIBRARY = r"""
import json, statistics, sys, time
from usagebill import Billing
what, user, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
billing = Billing.open("billing.toml")
if what == "summary":
    call = lambda: billing.usage.get_summary(user, "api_calls")
else:
    call = lambda: billing.usage.record(user, "api_calls", 1, push=False)
for _ in range(min(20, n)):
    event = call()
    if what == "record":
        billing.deliver(event.id, True)
times, made = [], []
for _ in range(n):
    t = time.perf_counter()
    made.append(call())
    times.append(time.perf_counter() - t)
if what == "record":  # not timed: deliver what was recorded (as record does), so push stays idle
    for event in made:
        billing.deliver(event.id, True)
print(json.dumps(statistics.median(times) * 1000))
"""


EXPLAIN = r"""
import sqlite3, sys
from usagebill import Billing
billing = Billing.open("billing.toml")
conn = billing.ledger.conn  # SQLite only: the statements get_summary runs, and their plans
billing.usage.get_summary(sys.argv[1], "api_calls")  # renewals and the like done before tracing
seen = []
conn.set_trace_callback(seen.append)
billing.usage.get_summary(sys.argv[1], "api_calls")
conn.set_trace_callback(None)
for sql in seen:
    print("  " + " ".join(sql.split())[:160] + ("..." if len(sql) > 160 else ""))
    for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
        print("      " + row[3])
"""


def explain(folder: Path, user: str) -> None:
    out = subprocess.run([sys.executable, "-c", EXPLAIN, user], capture_output=True, text=True,
                         env=env_for(folder), cwd=folder)
    say(out.stdout + out.stderr[-500:])


def env_for(folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "USAGEBILL_CONFIG": str(folder / "billing.toml")}
    for k in ("STRIPE_API_KEY", "USAGEBILL_SANDBOX_URL", "USAGEBILL_DB", "USAGEBILL_FORCE_TTY"):
        env.pop(k, None)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "usagebill", *args]


def lib(what: str, user: str, n: int) -> list[str]:
    return [sys.executable, "-c", LIBRARY, what, user, str(n)]


def steps_for(customers: int) -> list[tuple[str, list[str], str]]:
    """(name, command, unit): "s" is the subprocess's wall time; "ms" what the library snippet
    prints. The typical customer is the one in the middle (cust-005000 of 10,000)."""
    typical = f"cust-{customers // 2:06d}"
    return [
        ("push", cli("push"), "s"),
        ("status", cli("status"), "s"),
        ("summary", cli("summary", typical), "s"),
        ("summary heavy", cli("summary", HEAVY), "s"),
        ("get_summary (lib)", lib("summary", typical, 200), "ms"),
        ("get_summary heavy (lib)", lib("summary", HEAVY, 200), "ms"),
        ("record", cli("record", typical, "api_calls", "1"), "s"),
        ("record (lib, no push)", lib("record", typical, 50), "ms"),
        ("charge", cli("charge", typical, "ai_tokens", "3"), "s"),
        ("top", cli("top"), "s"),
        ("reconcile USER", cli("reconcile", typical), "s"),
        ("reconcile", cli("reconcile"), "s"),
    ]


def run_step(folder: Path, command: list[str], unit: str, timeout: float) -> tuple[float, str | None]:
    """(seconds, or the ms the library snippet prints; a problem or None). A run past
    ``timeout`` is stopped and counts as ``timeout`` seconds (a lower bound)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(folder),
                            cwd=folder)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return timeout, f"stopped after {timeout:.0f} s (counted as {timeout:.0f} s: a lower bound)"
    seconds = time.perf_counter() - t0
    problem = None
    if proc.returncode != 0:
        problem = f"exit {proc.returncode}: {(stderr.strip().splitlines() or [''])[-1][:200]}"
    if unit == "ms":
        try:
            return float(stdout.strip().splitlines()[-1]), problem
        except (ValueError, IndexError):
            return float("nan"), problem or stderr.strip()[-300:]
    return seconds, problem


OPEN = "from usagebill import Billing; Billing.open('billing.toml').close()"


def fmt(x: float, unit: str) -> str:
    return f"{x:8.3f} ms" if unit == "ms" else f"{x:8.2f} s "


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000,10000000", help="Event counts, comma-separated; the first is the base of the ratios.")
    p.add_argument("--customers", type=int, default=CUSTOMERS)
    p.add_argument("--repeat", type=int, default=5, help="Rounds (each step at each size once per round).")
    p.add_argument("--slow", type=float, default=20.0,
                   help="A run slower than this (s) counts its warm-up run and is repeated once.")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="A run is stopped after this many seconds and counted as that (a lower bound), not repeated.")
    p.add_argument("--only", help="Comma-separated step names (prefixes) to time.")
    p.add_argument("--cache", type=Path, default=CACHE, help="Where the built ledgers are kept (not the repo).")
    p.add_argument("--rebuild", action="store_true", help="Build the ledgers again.")
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--explain", action="store_true",
                   help="Print the statements one get_summary runs, with SQLite's query plans, and exit.")
    p.add_argument("--clean", action="store_true", help="Remove the cached ledgers and exit.")
    p.add_argument("--report", type=Path, metavar="RESULTS", help="Print the table of a results-*.jsonl file and exit.")
    a = p.parse_args()
    if a.report:
        runs = [json.loads(line) for line in a.report.read_text().splitlines() if line.strip()]
        times = {}
        for x in runs:
            if x["counted"]:
                times.setdefault((x["step"], x["events"]), []).append(x["value"])
        sizes = sorted({n for _, n in times})
        report([s for s in steps_for(CUSTOMERS) if any((s[0], n) in times for n in sizes)], sizes, times)
        return
    if a.clean:
        shutil.rmtree(a.cache, ignore_errors=True)
        say(f"removed {a.cache}")
        return
    if ROOT in a.cache.resolve().parents:
        sys.exit("--cache must be outside the repository")
    sizes = [int(s) for s in a.sizes.split(",")]
    folders = {n: ledger_for(a.cache, n, a.customers, a.rebuild) for n in sizes}
    for n, f in folders.items():
        m = json.loads((f / "scale.json").read_text())
        size = sum(x.stat().st_size for x in (f / ".usagebill").iterdir())
        say(f"{n:>12,} events: {m['heavy_events']:,} of them the heavy customer's, {size / 2**30:.2f} GB, in {f}")
    if a.build_only:
        return
    if a.explain:
        for n, f in folders.items():
            say(f"\nget_summary({HEAVY!r}, 'api_calls') at {n:,} events runs:")
            explain(f, HEAVY)
        return
    steps = [s for s in steps_for(a.customers) if not a.only or any(s[0].startswith(o) for o in a.only.split(","))]
    log = a.cache / f"results-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    say(f"\ntiming {len(steps)} steps x {len(sizes)} sizes x {a.repeat} rounds, interleaved "
        f"(git {git_head()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}); each run in {log}")

    def record(name: str, n: int, value: float, problem: str | None, counted: bool = True) -> None:
        with log.open("a") as f:
            f.write(json.dumps({"step": name, "events": n, "value": value, "counted": counted, "problem": problem,
                                "load": os.getloadavg()[0], "at": time.time()}) + "\n")
        if problem:
            say(f"  note: {name} at {n:,}: {problem}")

    for n in sizes:  # the first open migrates a ledger built by an older usagebill: not a timing
        seconds, problem = run_step(folders[n], [sys.executable, "-c", OPEN], "s", 3600)
        record("first open (migrations)", n, seconds, problem, counted=False)
        say(f"  first open of the {n:,}-event ledger (its migrations, if any): {seconds:.1f} s")
    times: dict[tuple[str, int], list[float]] = {}
    for name, command, unit in steps:  # warm the page cache and the first-run effects
        for n in sizes:
            value, problem = run_step(folders[n], command, unit, a.timeout)
            slow = unit == "s" and value > a.slow  # a slow run is its own warm-up: counted, repeated once
            record(name, n, value, problem, counted=slow)
            if slow:
                times[(name, n)] = [value]
    for r in range(a.repeat):
        for name, command, unit in steps:
            for n in sizes:
                got = times.setdefault((name, n), [])
                if unit == "s" and got and min(got) > a.slow and (len(got) >= 2 or min(got) >= a.timeout):
                    continue
                value, problem = run_step(folders[n], command, unit, a.timeout)
                record(name, n, value, problem)
                got.append(value)
        say(f"  round {r + 1}/{a.repeat} done (load {os.getloadavg()[0]:.1f})")
    report(steps, sizes, times)
    say(f"\nledgers cached in {a.cache} (remove: python bench/scale.py --clean)")


def report(steps, sizes, times) -> None:
    base = sizes[0]
    say(f"\n{'step':26s} {'events':>11s}  {'min':>11s} {'median':>11s} {'max':>11s}  runs  "
        f"{'ratio':>6s} {'(of mins)':>9s}")
    for name, _, unit in steps:
        b = times.get((name, base))
        for n in sizes:
            t = times.get((name, n))
            if not t or not b:
                continue
            med, bmed = statistics.median(t), statistics.median(b)
            say(f"{name:26s} {n:>11,}  {fmt(min(t), unit)} {fmt(med, unit)} {fmt(max(t), unit)}  {len(t):4d}  "
                f"{med / bmed:6.2f} {min(t) / min(b):9.2f}")


def git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
