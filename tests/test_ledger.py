import os
import sqlite3
import stat

import pytest

from usagebill import LedgerError
from usagebill.ledger import open_ledger


@pytest.mark.sqlite_only(reason="the file's mode and SQLite's WAL")
def test_created_private_with_wal(tmp_path):
    path = tmp_path / "deep" / "ledger.db"
    ledger = open_ledger(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ledger.one("PRAGMA journal_mode")[0] == "wal"
    assert ledger.one("PRAGMA busy_timeout")[0] == 30000
    names = [r["name"] for r in ledger.all("SELECT name FROM _migrations")]
    from usagebill.ledger.migrations import MIGRATIONS

    assert names == [fn.__name__ for fn in MIGRATIONS] and names[0] == "m001_initial"


def test_reopening_does_not_migrate_again(tmp_path):
    open_ledger(tmp_path / "l.db").close()
    ledger = open_ledger(tmp_path / "l.db")
    from usagebill.ledger.migrations import MIGRATIONS

    assert ledger.one("SELECT COUNT(*) FROM _migrations")[0] == len(MIGRATIONS)


def test_a_ledger_from_a_newer_usagebill_is_refused(tmp_path):
    ledger = open_ledger(tmp_path / "l.db")
    ledger.conn.execute("INSERT INTO _migrations VALUES ('m999_future', 0)")
    ledger.close()
    with pytest.raises(LedgerError, match="newer usagebill.*m999_future"):
        open_ledger(tmp_path / "l.db")


@pytest.mark.sqlite_only(reason="a file that is not SQLite")
def test_not_a_database(tmp_path):
    (tmp_path / "l.db").write_text("hello, this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a usable usagebill ledger"):
        open_ledger(tmp_path / "l.db")


@pytest.mark.sqlite_only(reason="raw sqlite3 on the ledger's connection (PostgreSQL's triggers: tests/test_schema_parity.py)")
def test_usage_events_are_immutable(billing):
    billing.customers.add("u")
    billing.subscriptions.start("u", "Pro")
    e = billing.usage.record("u", "api_calls", 3)
    conn = billing.ledger.conn
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("UPDATE usage_events SET amount = 1 WHERE id = ?", (e.id,))
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("DELETE FROM usage_events WHERE id = ?", (e.id,))
    assert conn.execute("SELECT amount FROM usage_events").fetchone()[0] == 3


@pytest.mark.sqlite_only(reason="raw sqlite3 on the ledger's connection (PostgreSQL's triggers: tests/test_schema_parity.py)")
def test_balance_ledgers_are_immutable(billing):
    billing.customers.add("u")
    billing.subscriptions.start("u", "Pro")
    for table in ("credit_ledger",):
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            billing.ledger.conn.execute(f"UPDATE {table} SET delta = 0")


def test_failed_transaction_leaves_nothing(billing):
    billing.customers.add("u")
    with pytest.raises(RuntimeError):
        with billing.ledger.transaction() as conn:
            conn.execute("INSERT INTO customers (user_id, created_at) VALUES ('v', 0)")
            raise RuntimeError("boom")
    assert [c.user_id for c in billing.customers.list()] == ["u"]


CORE = ("usage", "credits", "wallet", "balances", "renewals", "context", "customers", "subscriptions",
        "idempotency", "importer", "rules", "billing")


@pytest.mark.parametrize("module", CORE)
def test_the_core_holds_no_sql(module):
    """Every SQL statement of the core lives in usagebill/ledger/ (one package to change for
    another storage engine); the core modules call its functions."""
    import importlib
    import inspect
    import re

    source = inspect.getsource(importlib.import_module(f"usagebill.{module}"))
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    # SQL inside string literals: a keyword followed by the shape of a statement
    sql = re.findall(r"[\"'](?:SELECT .+ FROM|INSERT (?:OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|PRAGMA \w+|BEGIN|COMMIT)",
                     code)
    assert sql == [], f"usagebill/{module}.py holds SQL: {sql}"
    assert ".conn." not in code and "ledger.one(" not in code and "ledger.all(" not in code


@pytest.mark.sqlite_only(reason="replays SQLite's own migration history through the raw connection")
def test_m003_keeps_credits_held_before_it_as_granted_credits(tmp_path, monkeypatch):
    """A ledger made before included and granted credits were apart: what a customer held
    becomes a grant without expiry, so the next reset takes nothing away."""
    from usagebill.ledger import migrations

    path = tmp_path / "old.db"
    old = [fn for fn in migrations.MIGRATIONS if fn.__name__ in ("m001_initial", "m002_stripe")]
    monkeypatch.setattr(migrations, "MIGRATIONS", old)
    ledger = open_ledger(path)
    ledger.conn.executemany(
        "INSERT INTO credit_ledger (user_id, feature, delta, balance_after, reason, created_at) VALUES (?, ?, ?, ?, ?, 0)",
        [("a", "api_calls", 100, 100, "plan_grant"), ("a", "api_calls", 50, 150, "grant"),
         ("a", "api_calls", -30, 120, "consume"), ("b", "api_calls", 5, 5, "grant"), ("b", "api_calls", -5, 0, "consume")],
    )
    ledger.close()
    monkeypatch.undo()
    ledger = open_ledger(path)
    assert [tuple(r) for r in ledger.all("SELECT user_id, feature, remaining, expires_at, reason FROM credit_grants")] == [
        ("a", "api_calls", 120, None, "before_m003")]
    assert ledger.one("SELECT 1 FROM _migrations WHERE name = 'm003_included_and_granted'") is not None
