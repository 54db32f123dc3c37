"""`usagebill doctor`: a sound ledger passes; a corrupted one (pages overwritten, a balance
edited behind the triggers, delivery states that contradict each other, a mapped Stripe
object gone) is named in one line per problem, exit 1. Commands on a corrupted ledger say so
in one line, never with a traceback."""

import json
import os
import sqlite3

import pytest

from tests.test_cli_stripe import J



@pytest.fixture
def busy(runner, tmp_path):
    """A ledger that has seen every kind of write."""
    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))["id"]
    for user, plan in (("alice", ["Pro"]), ("tess", ["Team", "--interval", "month"])):
        J(runner("customers", "add", user, "--test-clock", clock, "--json"))
        J(runner("subscribe", user, *plan, "--json"))
    J(runner("record", "alice", "api_calls", "40", "--json"))
    J(runner("credits", "consume", "alice", "api_calls", "30", "--json"))
    J(runner("credits", "grant", "alice", "api_calls", "5", "--json"))
    J(runner("wallet", "top-up", "tess", "1000", "--json"))
    for _ in range(3):
        runner("charge", "tess", "ai_tokens", "3", "--no-push")
    runner("charge", "tess", "exports", "12")
    for n in (3, 4):
        J(runner("record", "alice", "api_calls", str(n), "--no-push", "--json"))
    assert J(runner("push", "--coalesce", "--json"))["batches"] == 1
    J(runner("testclock", "advance", clock, "--to", "+1month2h", "--json"))
    J(runner("credits", "balance", "alice", "api_calls", "--json"))  # the renewal
    return tmp_path / ".usagebill" / "ledger.db"


def raw(db):
    conn = sqlite3.connect(db)
    conn.isolation_level = None
    return conn


def test_a_sound_ledger_passes(runner, busy):
    r = runner("doctor", "--json")
    assert r.exit_code == 0, r.output
    assert J(r) == {"ok": True, "findings": []}
    r = runner("doctor")
    assert r.exit_code == 0 and "is sound, and Stripe has what it points at" in r.stderr


@pytest.mark.sqlite_only(reason="edits the SQLite file behind the ledger's back")
def test_a_balance_edited_behind_the_triggers_is_found(runner, busy):
    conn = raw(busy)
    conn.execute("DROP TRIGGER credit_ledger_no_update")
    (row_id,) = conn.execute("SELECT MAX(id) FROM credit_ledger WHERE user_id = 'alice'").fetchone()
    conn.execute("UPDATE credit_ledger SET balance_after = balance_after + 1000 WHERE id = ?", (row_id,))
    conn.close()
    r = runner("doctor", "--offline", "--json")
    assert r.exit_code == 1
    findings = json.loads(r.stdout)["findings"]
    assert any(f"credit_ledger row {row_id} (alice, api_calls)" in f for f in findings), findings
    assert any("credits of alice (api_calls)" in f for f in findings), findings


@pytest.mark.sqlite_only(reason="edits the SQLite file behind the ledger's back")
def test_delivered_usage_shown_as_pending_is_found(runner, busy):
    conn = raw(busy)
    (event_id,) = conn.execute("SELECT event_id FROM event_delivery WHERE batch_id IS NOT NULL LIMIT 1").fetchone()
    conn.execute("UPDATE event_delivery SET status = 'batched' WHERE event_id = ?", (event_id,))
    conn.close()
    r = runner("doctor", "--offline")
    assert r.exit_code == 1
    assert f"pending or failed inside a batch Stripe confirmed: {event_id}" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: 1 problem(s) found")


@pytest.mark.sqlite_only(reason="reads the SQLite file with sqlite3")


def test_usage_written_behind_the_totals_is_found(runner, busy, config_path):
    from usagebill import Billing

    billing = Billing.open(config_path)  # the ledger's own connection: SQLite or PostgreSQL
    (t,) = billing.ledger.one("SELECT MAX(timestamp) FROM usage_events WHERE user_id = 'alice'")
    with billing.ledger.transaction():  # an insert that forgets usage_totals
        billing.ledger.execute("INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, source) "
                               "VALUES ('ube_behind', 'alice', 'api_calls', 9, ?, ?, 'record')", (t, t))
    billing.close()
    r = runner("doctor", "--offline", "--json")
    assert r.exit_code == 1
    findings = json.loads(r.stdout)["findings"]
    assert sum(f.startswith("usage totals of alice (api_calls), the ") for f in findings) == 2, findings  # hour, day
    assert any(f"the day from {t - t % 86400}: " in f and "but its events are" in f for f in findings), findings


def test_a_mapped_price_archived_in_stripe_is_found(runner, busy):
    from usagebill.gateway.client import connect
    from usagebill.ledger.db import open_ledger

    ledger = open_ledger(str(busy))  # the backend of this pass
    (price_id,) = ledger.one("SELECT stripe_id FROM stripe_objects WHERE key LIKE 'price:plan:pro:%'")
    ledger.close()

    c = connect(ledger_path=busy)
    c.client.v1.prices.update(price_id, params={"active": False})
    r = runner("doctor")
    assert r.exit_code == 1 and f"points at {price_id}, which is archived in Stripe" in r.stderr


@pytest.mark.sqlite_only(reason="overwrites the SQLite file's pages")
def test_overwritten_pages_are_one_clear_line(runner, busy):
    assert runner("status").exit_code == 0  # checkpoint: the WAL into the main file
    conn = raw(busy)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = os.path.getsize(busy)
    with open(busy, "r+b") as f:  # keep the header page, scribble over the middle
        f.seek(4096 * 2)
        f.write(os.urandom(min(size - 4096 * 2, 4096 * 4)))
    for args in (("doctor", "--offline"), ("customers", "list"), ("status",), ("credits", "balance", "alice", "api_calls")):
        r = runner(*args)
        assert r.exit_code != 0 or args[0] == "customers", (args, r.output)
        assert "Traceback" not in r.output
        if r.exit_code:
            assert len([x for x in r.stderr.splitlines() if x.startswith("Error:")]) == 1, (args, r.stderr)
    assert runner("doctor", "--offline").exit_code == 1
