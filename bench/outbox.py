"""Outbox benchmark: `usagebill push` with nothing to send and `usagebill status` on big ledgers.

Each ledger is BUILT BY DIRECT SQL THROUGH THE SCHEMA (the tables and indexes the migrations
made; not through `record`, which would take hours at 10^7): N usage events over C customers,
almost all delivered (an `event_delivery` row each, the delivered total and the watermark set
as push would leave them), plus a few that are not: 50 refused (failed), and 100 of a customer
not in Stripe, recorded last and still pending (the push looks at them, and cannot send them).
The secondary indexes are dropped during the bulk insert and made again from their own DDL.

For each ledger, timed (best and worst of --repeat runs):

  push (CLI)     `usagebill push --json`, a subprocess, interpreter start-up included
  status (CLI)   `usagebill status --json`, likewise
  push (lib)     gateway.delivery.push in this process (the sandbox in memory)
  status (lib)   gateway.delivery.delivery_status
  baseline       the queries push and status ran before m010, on the same ledger: the
                 pending count, the status counts, the customers not in Stripe, the failed
                 list, has-pending and the full walk for pending events (run once at 10^7:
                 minutes)

and the ratio of each new figure to the baseline measured in the same run.

    python bench/outbox.py [--events 100000 1000000] [--customers 10000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WAITING, FAILED = 100, 50
T0 = 1_760_000_000


def build(folder: Path, events: int, customers: int) -> tuple[Path, Path]:
    from usagebill import Billing

    folder.mkdir(parents=True)
    config, db = folder / "billing.toml", folder / "ledger.db"
    shutil.copy(ROOT / "billing.toml.example", config)
    Billing.open(config, db).close()  # the schema, by the migrations
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA cache_size = -262144")
    c.execute("BEGIN")
    c.executemany("INSERT INTO customers (user_id, stripe_customer_id, created_at) VALUES (?, ?, ?)",
                  [(f"user{i:05d}", f"cus_bench{i:05d}", T0) for i in range(customers)])
    c.execute("INSERT INTO customers (user_id, created_at) VALUES ('nostripe', ?)", (T0,))
    indexes = c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_events' "
                        "AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        c.execute(f"DROP INDEX {name}")
    delivered = events - WAITING
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, source) "
        "SELECT printf('ube_%024x', i), CASE WHEN i > ? THEN 'nostripe' ELSE printf('user%05d', i % ?) END, "
        "'api_calls', 1 + i % 50, ? + i * 2, ? + i * 2, 'import' FROM n",
        (events, delivered, customers, T0, T0))
    for _, sql in indexes:
        c.execute(sql)
    c.execute("INSERT INTO event_delivery (event_id, status, attempts, updated_at) "
              "SELECT id, 'delivered', 1, recorded_at FROM usage_events WHERE seq <= ?", (delivered,))
    step = max(delivered // FAILED, 1)
    c.execute("UPDATE event_delivery SET status = 'failed', last_error = 'Stripe said 400: bench', "
              "seq = (SELECT seq FROM usage_events e WHERE e.id = event_delivery.event_id) "
              "WHERE event_id IN (SELECT id FROM usage_events WHERE seq % ? = 0 AND seq <= ?)", (step, delivered))
    c.execute("UPDATE delivery_totals SET events = (SELECT COUNT(*) FROM event_delivery WHERE status = 'delivered') "
              "WHERE status = 'delivered'")
    c.execute("UPDATE settings SET value = ? WHERE key = 'outbox_watermark'", (str(delivered + 1),))
    c.execute("COMMIT")
    c.close()
    return config, db


BASELINE = [  # what push and status ran before m010 ('queued' counted as pending, as this schema has it)
    ("pending count",
     "SELECT COUNT(*) FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
     "WHERE (d.event_id IS NULL OR d.status IN ('queued', 'sending', 'batched', 'late'))"),
    ("status counts",
     "SELECT CASE WHEN d.status IN ('delivered', 'failed', 'invoiced') THEN d.status ELSE 'pending' END AS s, COUNT(*) "
     "FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id WHERE 1 GROUP BY s"),
    ("not in Stripe",
     "SELECT e.user_id, COUNT(*) FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
     "JOIN customers c ON c.user_id = e.user_id WHERE (d.event_id IS NULL OR d.status IN ('queued', 'sending', "
     "'batched', 'late')) AND c.stripe_customer_id IS NULL GROUP BY e.user_id ORDER BY e.user_id"),
    ("failed list",
     "SELECT e.id, e.user_id, e.feature, e.amount, e.timestamp, d.last_error FROM usage_events e "
     "JOIN event_delivery d ON d.event_id = e.id WHERE d.status = 'failed' ORDER BY e.seq DESC LIMIT 100"),
    ("has pending in Stripe",
     "SELECT 1 FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id JOIN customers c ON "
     "c.user_id = e.user_id WHERE (d.event_id IS NULL OR d.status IN ('queued', 'sending', 'batched', 'late')) "
     "AND c.stripe_customer_id IS NOT NULL LIMIT 1"),
    ("pending events walk",
     "SELECT COUNT(*) FROM (SELECT e.seq FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
     "WHERE e.seq > 0 AND (d.event_id IS NULL OR d.status IN ('queued', 'sending')) ORDER BY e.seq)"),
]


def baseline(db: Path) -> dict[str, float]:
    c = sqlite3.connect(db)
    out = {}
    for name, sql in BASELINE:
        t = time.perf_counter()
        c.execute(sql).fetchall()
        out[name] = time.perf_counter() - t
    c.close()
    return out


def cli(config: Path, db: Path, *args) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "usagebill", "--config", str(config), "--db", str(db), *args, "--json"],
                       capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    elapsed = time.perf_counter() - t
    if r.returncode not in (0, 4):
        raise SystemExit(f"usagebill {' '.join(args)} failed: {r.stderr}")
    out = json.loads(r.stdout)
    if args[0] == "push":
        assert out["delivered"] == 0 and out["still_pending"] == WAITING, out
    else:
        assert (out["pending"], out["failed"]) == (WAITING, FAILED), out
    return elapsed


def library(config: Path, db: Path, repeat: int) -> tuple[list[float], list[float]]:
    from usagebill import Billing
    from usagebill.gateway.client import connect
    from usagebill.gateway.delivery import delivery_status, push
    from usagebill.sandbox import Sandbox

    billing = Billing.open(config, db)
    conn = connect(ledger_path=db, sandbox=Sandbox())
    pushes, statuses = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        r = push(billing, conn)
        pushes.append(time.perf_counter() - t)
        assert (r.delivered, r.still_pending) == (0, WAITING), r
        t = time.perf_counter()
        s = delivery_status(billing)
        statuses.append(time.perf_counter() - t)
        assert (s.pending, s.failed, s.delivered) == (WAITING, FAILED, len_delivered(billing)), s
    billing.close()
    return pushes, statuses


def len_delivered(billing) -> int:
    return billing.ledger.one("SELECT events FROM delivery_totals WHERE status = 'delivered'")[0]


def span(xs: list[float]) -> str:
    return f"{min(xs) * 1000:9.1f} ..{max(xs) * 1000:9.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the ledgers here and leave them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="usagebill-bench-outbox-"))
    print(f"{args.customers:,} customers; {WAITING} events pending (a customer not in Stripe), {FAILED} failed, "
          f"the rest delivered; Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    try:
        for n in args.events:
            t = time.perf_counter()
            config, db = build(root / f"n{n}", n, args.customers)
            print(f"\n{n:,} events: built by direct SQL in {time.perf_counter() - t:.0f} s "
                  f"({db.stat().st_size / 2**20:,.0f} MiB)")
            base = baseline(db)
            base_total = sum(base.values())
            for name, seconds in base.items():
                print(f"  baseline {name:24} {seconds * 1000:10.1f} ms")
            push_cli = [cli(config, db, "push") for _ in range(args.repeat)]
            status_cli = [cli(config, db, "status") for _ in range(args.repeat)]
            push_lib, status_lib = library(config, db, args.repeat)
            print(f"  {'baseline (all of the above)':33} {base_total * 1000:10.1f} ms")
            for name, xs in (("push (CLI, with start-up)", push_cli), ("status (CLI, with start-up)", status_cli),
                             ("push (library)", push_lib), ("status (library)", status_lib)):
                print(f"  {name:33} {span(xs)}   1/{base_total / min(xs):,.0f} of the baseline")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
