"""Import benchmark: N usage rows in a CSV (10,000 customers, 3 usage features), then

  (1) baseline: Python's csv module + sqlite3 executemany into a table with a unique
      identifier and a (customer, feature, time) index, one transaction, same PRAGMAs as the
      ledger (WAL, synchronous=NORMAL), SQLite's default page cache
  (2) `usagebill import FILE --no-push --json` into a fresh ledger (the real CLI, a subprocess)
  (3) the same import again: every row is a duplicate

Each step runs in its own subprocess, timed from start to exit (interpreter start-up
included for all three), with its CPU time (user + system) and peak resident memory from
wait4(). The customers are added and subscribed once, outside the timing; each repeat imports
into a fresh copy of that ledger. Each repeat measures its own baseline, and the ratios are
taken within a repeat (the machine may be shared: compare ratios, not seconds); the summary
gives each ratio's range over the repeats, for wall time and for CPU time. Targets (issue 13):
import <= 1.2x the baseline with ids, <= 1.4x without ids (keys derived from the content),
re-import <= 0.8x, peak memory < 200 MB at 1,000,000 rows.

    python bench/import.py [--rows 1000000] [--customers 10000] [--no-ids] [--repeat 3] [--keep DIR]
                           [--db postgresql://postgres@/postgres?host=/tmp/sock | --db auto]

(1b) repeats the baseline with the page cache the import gives its ledger (64 MiB), for a
like-for-like comparison of the SQLite side. (1c) is the floor for the ledger's schema: the
importer's own database calls (``events.insert_imported``: the events with their four indexes
and their usage totals, the same batches, transactions and page cache) fed by the plainest
Python, csv and an integer parse of the times, into a copy of the same ledger (without ids, keys
of the derived keys' length and spread, not hashed from the rows): import/floor is what checking
the rows costs, floor/baseline what the ledger's schema costs.

``--db URL`` (a PostgreSQL server, reached as a user who may CREATE DATABASE; ``auto``: a
throwaway server started with tests/pgserver.py) adds (4) and (5): the same import and
re-import into a fresh database on it (a copy of one set up like the SQLite ledger), and the
ratios PG/SQLite of (4)/(2) and (5)/(3). Target (issue 11): within 2x, both. The CPU time
shown for (4) and (5) is the CLI's only, not the server's.
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
from common import CONFIG, FEATURES  # noqa: E402
sys.path.insert(0, str(ROOT))


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


# (1c) the floor for the ledger's schema: the importer's own database calls
# (events.insert_imported: the rows, their four indexes and their usage totals, in batches of
# 20,000 rows and transactions of 200,000, the same 64 MiB page cache), fed by the plainest
# Python (csv + an integer parse of the times): no checks, no look-ups, no rejects
FLOOR = r"""
import calendar, csv, sys, time, uuid
from itertools import islice
sys.path.insert(0, sys.argv[3])
from usagebill.ledger.db import open_ledger
from usagebill.ledger import events
from usagebill.importer.writing import BATCH_ROWS, COMMIT_ROWS
from usagebill.importer import _LEDGER_CACHE_KIB
path, db_path = sys.argv[1], sys.argv[2]
ledger = open_ledger(db_path)
prefix, now = "ube_" + uuid.uuid4().hex[:20], int(time.time())
days = {}
def ts(text):  # the generated times' one form, YYYY-MM-DDTHH:MM:SSZ: the day parsed once
    day = days.get(text[:10])
    if day is None:
        day = days[text[:10]] = calendar.timegm(time.strptime(text[:10], "%Y-%m-%d"))
    return day + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
with open(path, newline="", encoding="utf-8") as f, ledger.bulk(_LEDGER_CACHE_KIB):
    reader = csv.reader(f)
    header = next(reader)
    u, k, a, t = (header.index(c) for c in ("user_id", "key", "amount", "timestamp"))
    i_id = header.index("id") if "id" in header else None
    # without ids, keys as long as the derived ones and in no order (an odd multiplier permutes
    # the numbers below 2**128), without hashing the rows: the index stores what the importer's would
    rows = ((f"{prefix}{n:012x}", r[u], r[k], int(r[a]), ts(r[t]), now,
             r[i_id] if i_id is not None else f"import:{n * 0x9E3779B97F4A7C15F39CC0605CEDC835 % (1 << 128):032x}:0")
            for n, r in enumerate(reader, 1))
    written = COMMIT_ROWS
    while written >= COMMIT_ROWS:
        with ledger.transaction():  # one per COMMIT_ROWS rows, as the importer's
            written = 0
            while written < COMMIT_ROWS and (batch := list(islice(rows, BATCH_ROWS))):
                batch.sort(key=lambda row: row[1])  # as the importer writes them
                events.insert_imported(ledger, batch)
                written += len(batch)
print(ledger.one("SELECT COUNT(*) FROM usage_events WHERE source = 'import'")[0])
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


def setup_pg(server_url: str, dir: Path, customers: int, now: int) -> tuple[Path, Path, str]:
    """A template database set up as ``setup_ledger``'s (its own config folder and sandbox
    state): (config, sandbox state, the template's name)."""
    from tests import pgserver

    pg_dir = dir / "pg"
    pg_dir.mkdir(exist_ok=True)
    sandbox = pg_dir / "sandbox.db"
    url = pgserver.create_database(server_url, "bench_template")
    from usagebill import Billing

    config = pg_dir / "billing.toml"
    config.write_text(CONFIG)
    with Billing.open(config, url, sandbox_db=sandbox) as b:
        anchor = now - 30 * 86400
        for i in range(customers):
            user = f"cust-{i:05d}"
            b.customers.add(user)
            b.subscriptions.start(user, "Bench", anchor=anchor)
    return config, sandbox, pgserver.database_of(url)


def timed(cmd: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak MB, stdout) of a subprocess."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 reaps the child and gives its own rusage (RUSAGE_CHILDREN would mix the steps)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])}... failed ({p.returncode}): {err.decode()[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.decode()


LABELS = {
    "baseline": "(1) baseline: csv + executemany",
    "baseline-64MiB": "(1b) baseline, 64 MiB page cache",
    "floor": "(1c) the ledger's schema: DB floor",
    "import": "(2) usagebill import --no-push",
    "reimport": "(3) import again (all duplicates)",
}
PG_LABELS = {
    "pg-import": "(4) the same into PostgreSQL",
    "pg-reimport": "(5) again on PostgreSQL",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--no-ids", action="store_true", help="no id column: keys derived from the rows' content")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the four steps (default 3)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    ap.add_argument("--db", metavar="URL", help="also import into PostgreSQL: a server's URL (a user who may "
                    "CREATE DATABASE; no password in it), or 'auto' for a throwaway server (tests/pgserver.py)")
    args = ap.parse_args()
    server, server_url = None, args.db
    if args.db == "auto":
        from tests import pgserver

        server = pgserver.start_server()
        server_url = server.url

    dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="usagebill-bench-"))
    dir.mkdir(parents=True, exist_ok=True)
    try:
        now = int(time.time())
        csv_path = dir / "usage.csv"
        t0 = time.perf_counter()
        generate(csv_path, args.rows, args.customers, not args.no_ids, now)
        config, fresh = setup_ledger(dir, args.customers, now)
        print(f"setup: {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB), {args.customers:,} customers "
              f"subscribed, ids: {'no' if args.no_ids else 'yes'} ({time.perf_counter() - t0:.0f} s, not timed)", flush=True)
        labels = dict(LABELS)
        if server_url:
            from tests import pgserver

            t0 = time.perf_counter()
            pg_config, pg_sandbox, template = setup_pg(server_url, dir, args.customers, now)
            labels.update(PG_LABELS)
            print(f"setup: the same customers in a template PostgreSQL database ({time.perf_counter() - t0:.0f} s, "
                  "not timed)", flush=True)
        base_script = dir / "baseline.py"
        base_script.write_text(BASELINE)
        floor_script = dir / "floor.py"
        floor_script.write_text(FLOOR)
        py = sys.executable
        import json

        runs = []
        for rep in range(args.repeat):
            results = {}
            for name, cache in (("baseline", 0), ("baseline-64MiB", 64 * 1024)):
                base_db = dir / f"{name}.db"
                _remove(base_db)
                results[name] = timed([py, str(base_script), str(csv_path), str(base_db), str(cache)])
                assert int(results[name][3]) == args.rows
            db = dir / "ledger-run.db"
            _remove(db)
            shutil.copyfile(fresh, db)
            results["floor"] = timed([py, str(floor_script), str(csv_path), str(db), str(ROOT)])
            assert int(results["floor"][3]) == args.rows
            _remove(db)
            shutil.copyfile(fresh, db)
            cli = [py, "-m", "usagebill", "--config", str(config), "--db", str(db), "import", str(csv_path),
                   "--no-push", "--json"]
            results["import"] = timed(cli)
            results["reimport"] = timed(cli)
            first, second = json.loads(results["import"][3]), json.loads(results["reimport"][3])
            assert first["imported"] == args.rows and first["rejected"] == 0, first
            assert second["imported"] == 0 and second["duplicates"] == args.rows, second
            if server_url:
                url = pgserver.create_database(server_url, f"bench_run_{rep}", template=template)
                sandbox = dir / "pg" / "sandbox-run.db"
                _remove(sandbox)
                if pg_sandbox.exists():  # the setup may not have needed Stripe yet
                    shutil.copyfile(pg_sandbox, sandbox)
                try:
                    pg_cli = [py, "-m", "usagebill", "--config", str(pg_config), "--db", url, "--sandbox-db",
                              str(sandbox), "import", str(csv_path), "--no-push", "--json"]
                    results["pg-import"] = timed(pg_cli)
                    results["pg-reimport"] = timed(pg_cli)
                finally:
                    pgserver.drop_database(server_url, url)
                for key in ("pg-import", "pg-reimport"):  # the same counts as on SQLite
                    got, want = json.loads(results[key][3]), json.loads(results[key[3:]][3])
                    assert all(got[k] == want[k] for k in ("rows", "imported", "duplicates", "rejected")), (key, got)
            runs.append(results)
            base, base_cpu = results["baseline"][0], results["baseline"][1]
            print(f"\nrepeat {rep + 1}/{args.repeat} (load average {os.getloadavg()[0]:.1f}); "
                  "(2) and (3): the real CLI (python -m usagebill import --no-push --json), a subprocess")
            print(f"{'step':<36}{'wall s':>8}{'rows/s':>10}{'x base':>8}{'CPU s':>8}{'x base':>8}{'peak MB':>9}")
            for key, label in labels.items():
                seconds, cpu, mb, _ = results[key]
                print(f"{label:<36}{seconds:>8.2f}{args.rows / seconds:>10,.0f}{seconds / base:>7.2f}x"
                      f"{cpu:>8.2f}{cpu / base_cpu:>7.2f}x{mb:>9.0f}", flush=True)

        def span(key: str, i: int) -> str:
            ratios = [r[key][i] / r["baseline"][i] for r in runs]
            return f"{min(ratios):.2f}-{max(ratios):.2f}"

        target = 1.4 if args.no_ids else 1.2
        peak = max(max(r["import"][2], r["reimport"][2]) for r in runs)
        print(f"\nover {len(runs)} repeat(s), ranges of the ratios to the same repeat's baseline (wall time; CPU time):")
        print(f"  import/baseline   = {span('import', 0)} ({span('import', 1)} CPU)   target <= {target}")
        floors = [r["import"][0] / r["floor"][0] for r in runs]
        print(f"  floor/baseline    = {span('floor', 0)} ({span('floor', 1)} CPU)   what the ledger's schema costs")
        print(f"  import/floor      = {min(floors):.2f}-{max(floors):.2f}   what checking the rows adds")
        print(f"  reimport/baseline = {span('reimport', 0)} ({span('reimport', 1)} CPU)   target <= 0.8")
        print(f"  peak memory of the imports = {peak:.0f} MB (target < 200)")
        if server_url:
            def pg(key: str) -> str:
                ratios = [r["pg-" + key][0] / r[key][0] for r in runs]
                return f"{min(ratios):.2f}-{max(ratios):.2f}"

            pg_peak = max(max(r["pg-import"][2], r["pg-reimport"][2]) for r in runs)
            print("PostgreSQL / SQLite, wall time, same repeat (ranges):")
            print(f"  import   (4)/(2) = {pg('import')}   target <= 2")
            print(f"  reimport (5)/(3) = {pg('reimport')}   target <= 2")
            print(f"  peak memory of the PostgreSQL imports (the CLI) = {pg_peak:.0f} MB")
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(dir, ignore_errors=True)


def _remove(db: Path) -> None:
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
