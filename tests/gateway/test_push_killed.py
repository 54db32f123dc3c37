"""Kill ``usagebill push`` at random moments, with Stripe failing often, new usage arriving
between runs and runs alternating between coalesced and single delivery; then push to the
end: Stripe must hold every usage event exactly once. Each push keeps several requests in
flight (its default against the sandbox); the concurrent variant runs three pushes at once
and kills some of them."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from usagebill import Billing
from usagebill.gateway.client import connect
from usagebill.gateway.delivery import push
from usagebill.gateway.reconcile import reconcile
from tests.gateway.metering import DAY, customer, ledger_totals, meter_rows, now, record_many, setup_stripe, stripe_totals

ROOT = Path(__file__).resolve().parents[2]
RUNS = 10


def add_usage(billing, t, rng):
    for user in ("a", "b", "c"):
        record_many(billing, user, rng.randint(100, 250), at=t - 20 * DAY, amount=lambda i: i % 7 + 1)
        record_many(billing, user, rng.randint(100, 250), "ai_tokens", at=t - DAY, amount=lambda i: i % 5 + 1)


def progress(db: Path) -> tuple[int, int]:
    """(pending events, delivery rows written), read as another process would."""
    with sqlite3.connect(db) as c:
        pending = c.execute(
            "SELECT COUNT(*) FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
            "WHERE d.event_id IS NULL OR d.status NOT IN ('delivered', 'failed')"
        ).fetchone()[0]
        rows = c.execute("SELECT COUNT(*), COALESCE(SUM(attempts), 0) FROM event_delivery").fetchone()
    return pending, rows[0] * 1_000_000 + rows[1]


def wait_for_work(proc, db: Path, before: int, timeout: float = 10.0) -> None:
    """Until the push has written its first claim or batch (or ended)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and progress(db)[1] == before and time.monotonic() < deadline:
        time.sleep(0.01)


def world(tmp_path, config_path, rng):
    """Three customers in the sandbox (its state in a file beside the ledger, shared with the
    subprocesses) and some usage; ``more()`` adds usage and says where delivery stands."""
    db = tmp_path / "ledger.db"
    billing = Billing.open(config_path, db)
    conn = connect(ledger_path=db)
    setup_stripe(billing, conn)
    t = now()
    for user in ("a", "b", "c"):
        customer(billing, conn, user, "Team", anchor=t - 33 * DAY)
    with billing.ledger.transaction():
        for _ in range(5):
            add_usage(billing, t, rng)

    def more():
        with billing.ledger.transaction():
            add_usage(billing, t, rng)
        return progress(db)

    return db, billing, conn, more


def start(config_path, db, run, coalesce):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "USAGEBILL_SANDBOX_FAULTS": f"5xx=0.2,429=0.2,drop=0.2,seed={run}"}
    args = [sys.executable, "-m", "usagebill", "--config", str(config_path), "--db", str(db), "push"]
    return subprocess.Popen(args + (["--coalesce"] if coalesce else []), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(billing, conn, tmp_path, db):
    for _ in range(5):  # Stripe healthy again: push until nothing is left
        if push(billing, conn).still_pending == 0:
            break
    assert progress(db)[0] == 0
    rows = meter_rows(tmp_path / "sandbox.db")
    assert max(Counter(identifier for identifier, *_ in rows).values()) == 1
    assert stripe_totals(rows) == ledger_totals(billing)
    assert reconcile(billing, conn).differences == []
    billing.close()


@pytest.mark.sqlite_only(reason="raw sqlite3 and push subprocesses by path (on PostgreSQL: tests/race/test_race_stripe.py)")
def test_push_killed_at_random_moments_still_delivers_each_event_once(tmp_path, config_path):
    rng = random.Random(20240)
    db, billing, conn, more = world(tmp_path, config_path, rng)
    killed_midway = 0
    for run in range(RUNS):
        before = more()
        proc = start(config_path, db, run, coalesce=run % 2)
        wait_for_work(proc, db, before[1])
        time.sleep(rng.uniform(0.0, 0.2))  # a random moment once the push is at work
        was_running = proc.poll() is None
        if was_running:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not was_running:
            assert proc.returncode == 0, proc.stderr.read()
        after = progress(db)
        if was_running and after[1] != before[1] and after[0] > 0:
            killed_midway += 1
    assert killed_midway >= 3, f"only {killed_midway} of {RUNS} kills hit a push at work"
    finish(billing, conn, tmp_path, db)


@pytest.mark.sqlite_only(reason="raw sqlite3 and push subprocesses by path (on PostgreSQL: tests/race/test_race_stripe.py)")
def test_concurrent_pushes_killed_at_random_moments_still_deliver_each_event_once(tmp_path, config_path):
    rng = random.Random(7)
    db, billing, conn, more = world(tmp_path, config_path, rng)
    killed_midway = 0
    for run in range(4):
        before = more()
        procs = [start(config_path, db, 100 * run + i, coalesce=(run + i) % 3 == 0) for i in range(3)]
        wait_for_work(procs[0], db, before[1])
        for proc in procs:
            time.sleep(rng.uniform(0.0, 0.15))
            if rng.random() < 0.7 and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed_midway += 1
        for proc in procs:
            proc.wait()
            if proc.returncode >= 0:  # not killed: done, or Stripe failed too often (exit 4, one line)
                err = proc.stderr.read().decode()
                assert proc.returncode in (0, 4) and "Traceback" not in err, err
    assert killed_midway >= 3, f"only {killed_midway} kills"
    finish(billing, conn, tmp_path, db)
