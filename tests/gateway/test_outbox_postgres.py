"""The outbox on a PostgreSQL ledger: the same claims (``FOR NO KEY UPDATE SKIP LOCKED``), leases,
watermark and counts as on SQLite, and four push processes at once, each event delivered once
and each identifier sent by one of them. Skipped without psycopg or a PostgreSQL server (the
server comes from test_schema_parity's fixture)."""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

from tests.test_schema_parity import fresh_database, schema_pg_server  # noqa: E402,F401  (fixtures)

from usagebill import Billing  # noqa: E402
from usagebill.gateway.client import connect  # noqa: E402
from usagebill.gateway.delivery import delivery_status, push  # noqa: E402
from usagebill.ledger import outbox  # noqa: E402
from usagebill.sandbox import FaultConfig, Sandbox, SandboxServer  # noqa: E402
from usagebill.sandbox.faults import FaultInjector  # noqa: E402

from tests.gateway.metering import DAY, customer, ledger_totals, meter_rows, now, setup_stripe, stripe_totals  # noqa: E402
from tests.gateway.test_outbox_index import consistent  # noqa: E402
from tests.gateway.test_push_workers import Tagged, record_fast  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_billing(config_path, fresh_database, tmp_path):
    b = Billing.open(config_path, fresh_database, sandbox_db=tmp_path / "sandbox.db")
    assert b.ledger.dialect == "postgres"
    yield b
    b.close()


def test_push_status_and_the_watermark_on_postgresql(pg_billing):
    billing = pg_billing
    conn = connect(ledger_path=":memory:", sandbox=Sandbox())
    setup_stripe(billing, conn)
    customer(billing, conn, "alice")
    billing.customers.add("bob")  # not in Stripe: waits
    billing.subscriptions.start("bob", "Pro")
    record_fast(billing, "alice", 450)
    record_fast(billing, "bob", 3)
    r = push(billing, conn)
    assert (r.delivered, r.still_pending) == (450, 3)
    assert outbox.watermark(billing.ledger) == outbox.max_seq(billing.ledger) + 1
    assert delivery_status(billing).not_in_stripe == {"bob": 3}
    consistent(billing)
    r = push(billing, conn, coalesce=True)
    assert (r.delivered, r.still_pending) == (0, 3)
    record_fast(billing, "alice", 20)
    r = push(billing, conn, coalesce=True)
    assert (r.delivered, r.batches) == (20, 1)
    assert stripe_totals(meter_rows(conn.sandbox)) == {k: v for k, v in ledger_totals(billing).items() if k[0]}
    consistent(billing)


def test_four_push_workers_at_once_on_postgresql(pg_billing, config_path, fresh_database, tmp_path):
    billing = pg_billing
    sandbox = Sandbox()
    conn = connect(ledger_path=":memory:", sandbox=sandbox)
    setup_stripe(billing, conn)
    t = now()
    for user in ("a", "b", "c"):
        customer(billing, conn, user, "Team", anchor=t - 10 * DAY)
        record_fast(billing, user, 1000, at=t - 2 * DAY)
        record_fast(billing, user, 1000, "ai_tokens", at=t - DAY)
    sandbox.faults = FaultInjector(FaultConfig(rate_5xx=0.05, rate_429=0.05, rate_drop=0.05, seed=5))
    seen: list = []
    servers = [SandboxServer(Tagged(sandbox, i, seen, delay=0.02), "127.0.0.1", 0).start() for i in range(4)]
    try:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "usagebill", "--config", str(config_path), "--db", fresh_database, "push", "--json"],
            env={**os.environ, "PYTHONPATH": str(ROOT), "USAGEBILL_SANDBOX_URL": s.url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for s in servers]
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for s in servers:
            s.shutdown()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()
    assert sum(json.loads(out)["delivered"] for out, _ in results) == 6000
    sandbox.faults = FaultInjector(FaultConfig())
    assert outbox.count_pending(billing.ledger, outbox.Scope()) == 0
    rows = meter_rows(sandbox)
    assert len(rows) == len({i for i, *_ in rows}) == 6000
    assert stripe_totals(rows) == ledger_totals(billing)
    senders = defaultdict(set)
    for worker, identifier in seen:
        senders[identifier].add(worker)
    assert len(senders) == 6000 and all(len(w) == 1 for w in senders.values())
    consistent(billing)
