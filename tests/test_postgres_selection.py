"""Choosing a PostgreSQL ledger: --db / USAGEBILL_DB / [ledger] url, the password rule, the
redaction of URLs in messages, the missing-extra error, and the SQL translation. None of
these need a server."""

import sys

import pytest

from usagebill.ledger.postgres import check_url, lock_key, redact, translate


def test_placeholders_become_psycopgs_and_quoted_text_is_left_alone():
    assert translate("SELECT * FROM t WHERE a = ? AND b = ?") == "SELECT * FROM t WHERE a = %s AND b = %s"
    assert translate("SELECT :a, :b_2 FROM t") == "SELECT %(a)s, %(b_2)s FROM t"
    assert translate("SELECT '?', ':x', 'it''s ?', \"?\" FROM t WHERE x LIKE 'a%' AND y = ?") == (
        "SELECT '?', ':x', 'it''s ?', \"?\" FROM t WHERE x LIKE 'a%%' AND y = %s")
    assert translate("SELECT x::bigint") == "SELECT x::bigint"


def test_redaction_hides_passwords_and_keeps_the_rest():
    assert redact("postgresql://bob:s3cret@db.example.com:5432/billing") == "postgresql://bob:***@db.example.com:5432/billing"
    assert redact("postgresql://db/billing?password=s3cret&sslmode=require") == (
        "postgresql://db/billing?password=***&sslmode=require")
    assert redact("postgresql:///billing?host=/run/postgresql") == "postgresql:///billing?host=/run/postgresql"


@pytest.mark.parametrize("url", ["postgresql://bob:s3cret@db/billing", "postgres://db/billing?password=s3cret"])
def test_a_url_with_a_password_is_refused_without_showing_it(url):
    from usagebill.errors import LedgerError

    with pytest.raises(LedgerError) as e:
        check_url(url)
    assert "s3cret" not in str(e.value) and "PGPASSWORD" in str(e.value) and "***" in str(e.value)


def test_lock_keys_are_stable_signed_64_bit():
    assert lock_key("alice") == lock_key("alice") != lock_key("bob")
    assert -2**63 <= lock_key("ünïcødé") < 2**63


def test_cli_refuses_a_password_in_db_url(runner):
    r = runner("--db", "postgresql://bob:s3cret@127.0.0.1:1/billing", "customers", "list")
    assert r.exit_code == 1 and "s3cret" not in r.output
    assert r.output.count("\n") == 1 and "PGPASSWORD" in r.output and "Traceback" not in r.output


def test_cli_names_an_unreachable_server_in_one_line(runner, monkeypatch):
    pytest.importorskip("psycopg")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    r = runner("--db", "postgresql://bob@127.0.0.1:1/billing", "customers", "list")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "postgresql://bob@127.0.0.1:1/billing: cannot connect to the ledger" in r.output
    assert r.output.count("\n") == 1


def test_missing_extra_is_one_line_naming_it(runner, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    r = runner("--db", "postgresql://bob@127.0.0.1:1/billing", "customers", "list")
    assert r.exit_code == 1 and "pip install 'usagebill[postgres]'" in r.output and "Traceback" not in r.output


def test_config_takes_a_url_and_refuses_both(tmp_path):
    from usagebill.config import load_config
    from usagebill.errors import ConfigError

    base = (tmp_path / "billing.toml")
    example = open(__file__.replace("tests/test_postgres_selection.py", "billing.toml.example")).read()
    base.write_text(example + '\n[ledger]\nurl = "postgresql://app@db/billing"\n')
    assert load_config(base).ledger_url == "postgresql://app@db/billing"
    base.write_text(example + '\n[ledger]\nurl = "postgresql://app@db/billing"\npath = "l.db"\n')
    with pytest.raises(ConfigError, match=r"billing.toml:\d+: ledger: has both path and url"):
        load_config(base)
    base.write_text(example + '\n[ledger]\nurl = "mysql://app@db/billing"\n')
    with pytest.raises(ConfigError, match=r"ledger.url: must be a PostgreSQL URL"):
        load_config(base)


def test_the_sandbox_state_of_a_url_ledger_lives_beside_the_config(tmp_path):
    from usagebill.locations import sandbox_path_for

    assert sandbox_path_for("postgresql://app@db/billing", tmp_path / "billing.toml") == (
        tmp_path / ".usagebill" / "sandbox.db")
    assert sandbox_path_for(tmp_path / "x" / "ledger.db") == tmp_path / "x" / "sandbox.db"
