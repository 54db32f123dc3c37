"""Import benchmark: N usage rows in a CSV (10,000 customers, 3 usage features), then

  (1) baseline: Python's csv module + sqlite3 executemany into a table with a unique
      identifier and a (customer, feature, time) index, one transaction, same PRAGMAs as the
      ledger (WAL, synchronous=NORMAL), SQLite's default page cache
  (2) `usagebill import FILE --no-push --json` into a fresh ledger (the real CLI, a subprocess)
  (3) the same import again: every row is a duplicate

Each step runs in its own subprocess, timed from start to exit (interpreter start-up
included for all three), with its peak resident memory from wait4(). The customers are
added and subscribed first, outside the timing. Prints rows/s, the ratios import/baseline and
reimport/baseline, and peak memory. Targets: import <= 1.5x the baseline time, re-import
<= 1.0x, peak memory < 200 MB at 1,000,000 rows.

    python bench/import.py [--rows 1000000] [--customers 10000] [--no-ids] [--keep DIR]

(1b) repeats the baseline with the page cache the import gives its ledger (64 MiB), for a
like-for-like comparison of the SQLite side.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FEATURES = ("api_calls", "ai_tokens", "storage_mb")
CONFIG = """
[[plans]]
name = "Bench"
prices = [{ amount = 1000, currency = "usd", interval = "month" }]

[plans.features.api_calls]
display_name = "API Calls"
price_per_credit = 10
track_usage = true

[plans.features.ai_tokens]
display_name = "AI Tokens"
price_per_credit = 0.5
track_usage = true

[plans.features.storage_mb]
display_name = "Storage"
price_per_credit = 1
track_usage = true
"""

BASELINE = r"""
import csv, sqlite3, sys
path, db_path, cache = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = sqlite3.connect(db_path, isolation_level=None)
db.execute("PRAGMA journal_mode = WAL")
db.execute("PRAGMA synchronous = NORMAL")
if cache:
    db.execute(f"PRAGMA cache_size = -{cache}")
db.execute("CREATE TABLE events (id TEXT NOT NULL UNIQUE, customer TEXT NOT NULL, feature TEXT NOT NULL, "
           "amount INTEGER NOT NULL, timestamp TEXT NOT NULL)")
db.execute("CREATE INDEX events_by_time ON events (customer, feature, timestamp)")
with open(path, newline="", encoding="utf-8") as f:
    reader = csv.reader(f)
    header = next(reader)
    cols = [header.index(c) for c in ("user_id", "key", "amount", "timestamp")]
    has_id = "id" in header
    i_id = header.index("id") if has_id else None
    rows = ((r[i_id] if has_id else str(n), r[cols[0]], r[cols[1]], r[cols[2]], r[cols[3]])
            for n, r in enumerate(reader))
    db.execute("BEGIN")
    db.executemany("INSERT INTO events (id, customer, feature, amount, timestamp) VALUES (?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
print(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
"""


def generate(path: Path, rows: int, customers: int, ids: bool, now: int) -> None:
    rnd = random.Random(42)
    users = [f"cust-{i:05d}" for i in range(customers)]
    span = 28 * 86400
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("user_id,key,amount,timestamp" + (",id" if ids else "") + "\n")
        chunk = []
        for n in range(rows):
            ts = now - span + (n * span) // rows - rnd.randrange(3600)  # roughly in time order, like an export
            stamp = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            line = f"{rnd.choice(users)},{rnd.choice(FEATURES)},{rnd.randrange(1, 5000)},{stamp}"
            chunk.append(line + (f",evt-{n:010d}\n" if ids else "\n"))
            if len(chunk) == 10_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))


def setup_ledger(dir: Path, customers: int, now: int) -> tuple[Path, Path]:
    from usagebill import Billing

    config = dir / "billing.toml"
    config.write_text(CONFIG)
    db = dir / "ledger.db"
    with Billing.open(config, db) as b:
        anchor = now - 30 * 86400
        for i in range(customers):
            user = f"cust-{i:05d}"
            b.customers.add(user)
            b.subscriptions.start(user, "Bench", anchor=anchor)
    return config, db


def timed(cmd: list[str]) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 reaps the child and gives its own rusage (RUSAGE_CHILDREN would mix the steps)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])}... failed ({p.returncode}): {err.decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, out.decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--no-ids", action="store_true", help="no id column: keys derived from the rows' content")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = ap.parse_args()

    dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="usagebill-bench-"))
    dir.mkdir(parents=True, exist_ok=True)
    try:
        now = int(time.time())
        csv_path = dir / "usage.csv"
        t0 = time.perf_counter()
        generate(csv_path, args.rows, args.customers, not args.no_ids, now)
        config, db = setup_ledger(dir, args.customers, now)
        print(f"setup: {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB), {args.customers:,} customers "
              f"subscribed, ids: {'no' if args.no_ids else 'yes'} ({time.perf_counter() - t0:.0f} s, not timed)", flush=True)
        base_script = dir / "baseline.py"
        base_script.write_text(BASELINE)
        py = sys.executable

        results = {}
        for name, cache in (("baseline", 0), ("baseline-64MiB", 64 * 1024)):
            base_db = dir / f"{name}.db"
            for p in (base_db, Path(f"{base_db}-wal"), Path(f"{base_db}-shm")):
                p.unlink(missing_ok=True)
            results[name] = timed([py, str(base_script), str(csv_path), str(base_db), str(cache)])
            assert int(results[name][2]) == args.rows
        cli = [py, "-m", "usagebill", "--config", str(config), "--db", str(db), "import", str(csv_path),
               "--no-push", "--json"]
        env_note = "the real CLI (python -m usagebill import --no-push --json), a subprocess"
        results["import"] = timed(cli)
        results["reimport"] = timed(cli)

        import json

        first, second = json.loads(results["import"][2]), json.loads(results["reimport"][2])
        assert first["imported"] == args.rows and first["rejected"] == 0, first
        assert second["imported"] == 0 and second["duplicates"] == args.rows, second

        base = results["baseline"][0]
        print(f"(2) and (3): {env_note}\n")
        print(f"{'step':<34}{'seconds':>9}{'rows/s':>12}{'x baseline':>12}{'peak MB':>10}")
        labels = {
            "baseline": "(1) baseline: csv + executemany",
            "baseline-64MiB": "(1b) baseline, 64 MiB page cache",
            "import": "(2) usagebill import --no-push",
            "reimport": "(3) import again (all duplicates)",
        }
        for key, label in labels.items():
            seconds, mb, _ = results[key]
            print(f"{label:<34}{seconds:>9.2f}{args.rows / seconds:>12,.0f}{seconds / base:>11.2f}x{mb:>10.0f}")
        print(f"\nimport/baseline = {results['import'][0] / base:.2f} (target <= 1.5), "
              f"reimport/baseline = {results['reimport'][0] / base:.2f} (target <= 1.0), "
              f"peak memory of the imports = {max(results['import'][1], results['reimport'][1]):.0f} MB (target < 200)")
    finally:
        if not args.keep:
            shutil.rmtree(dir, ignore_errors=True)


if __name__ == "__main__":
    main()
