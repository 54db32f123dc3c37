"""Round trips and latency of the library's per-request writes, on PostgreSQL and on SQLite.

Issue 11's budget: `credits consume` and `record` without push in at most 4 round trips
each. A round trip is one exchange with the server (a statement, or a pipeline of queued
statements sent at once: `Ledger.round_trips`). For each operation it prints the round trips
(the same every call in the steady state: the period's renewal applied) and the latency in
milliseconds (min / median / max of the per-round medians, over `--repeat` rounds of `--calls`
calls), on PostgreSQL and on SQLite (the baseline, a file in a temporary folder), with the
PostgreSQL / SQLite ratio of the medians. On a unix socket a round trip costs ~0.05 ms; over a
network 0.2-1 ms, which is what the count is about.

    python bench/roundtrips.py --db postgresql://user@host/db   # a database it may fill
    python bench/roundtrips.py --db auto                       # a throwaway server (tests/pgserver.py)
        [--calls 300] [--repeat 5]

The ledger is made through the library alone: 20 customers on the example config's Pro plan
(100 included calls, reset each period), 10^6 granted credits each, so no call runs out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CUSTOMERS = 20


def operations(b):
    """name -> a call (given its sequence number), each as an app would make it."""
    users = [f"u{i}" for i in range(CUSTOMERS)]

    def user(n):
        return users[n % CUSTOMERS]

    return {
        "credits.consume": lambda n: b.credits.consume(user(n), "api_calls", 1),
        "credits.consume (key)": lambda n: b.credits.consume(user(n), "api_calls", 1, idempotency_key=f"c{n}"),
        "usage.record push=False": lambda n: b.usage.record(user(n), "api_calls", 1, push=False),
        "usage.record push=False (key)": lambda n: b.usage.record(user(n), "api_calls", 1, idempotency_key=f"r{n}",
                                                                   push=False),
        "usage.get_summary": lambda n: b.usage.get_summary(user(n), "api_calls"),
    }


def prepare(target: str, config: Path):
    from usagebill import Billing

    b = Billing.open(config, target)
    for i in range(CUSTOMERS):
        b.customers.add(f"u{i}")
        b.subscriptions.start(f"u{i}", "Pro")
        b.credits.grant(f"u{i}", "api_calls", 1_000_000)
    return b


def measure(b, calls: int, repeat: int, offset: int) -> dict[str, tuple[int, list[float]]]:
    out = {}
    for name, op in operations(b).items():
        for n in range(CUSTOMERS):  # warm: renewals applied, statements prepared
            op(offset + n)
        b.ledger.round_trips = 0
        op(offset + CUSTOMERS)
        trips = b.ledger.round_trips
        medians = []
        for r in range(repeat):
            times = []
            for n in range(calls):
                t = time.perf_counter()
                op(offset + (r + 1) * 100_000 + n)
                times.append(time.perf_counter() - t)
            medians.append(statistics.median(times) * 1000)
        out[name] = (trips, medians)
    return out


def server_url(arg: str):
    """(url, server to stop or None)."""
    if arg != "auto":
        return arg, None
    from tests import pgserver

    server = pgserver.start_server()
    return pgserver.create_database(server.url, "roundtrips"), server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True, help="A PostgreSQL URL (no password in it), or 'auto'.")
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    url, server = server_url(args.db)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "billing.toml"
            config.write_text((ROOT / "billing.toml.example").read_text())
            results = {}
            for backend, target in (("sqlite", str(Path(tmp) / "ledger.db")), ("postgres", url)):
                b = prepare(target, config)
                try:
                    results[backend] = measure(b, args.calls, args.repeat, 0)
                finally:
                    b.close()
    finally:
        if server is not None:
            server.stop()
    print(f"{args.repeat} rounds of {args.calls} calls; ms per call: min / median / max of the rounds' medians")
    print(f"{'operation':32} {'PG trips':>8} {'PostgreSQL ms':>22} {'SQLite ms':>22} {'PG/SQLite':>9}")
    over = False
    for name, (trips, pg) in results["postgres"].items():
        _, lite = results["sqlite"][name]
        budget = name.startswith(("credits.consume", "usage.record"))
        over |= budget and trips > 4
        fmt = lambda xs: f"{min(xs):.3f} / {statistics.median(xs):.3f} / {max(xs):.3f}"  # noqa: E731
        print(f"{name:32} {trips:>8} {fmt(pg):>22} {fmt(lite):>22} {statistics.median(pg) / statistics.median(lite):>8.2f}x"
              + ("  (budget: 4)" if budget else ""))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
