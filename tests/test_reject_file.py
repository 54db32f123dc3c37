"""`import --reject-file` never destroys a file: not the ledger, not the config, not through
a link; it is private to its owner and safe to open in a spreadsheet or a terminal."""

import os
import stat
from datetime import datetime, timezone

import pytest

from usagebill import Billing, ValidationError

NOW = int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp())
T1 = "2026-02-27T10:00:00Z"


@pytest.fixture
def b(config_path):
    billing = Billing.open(config_path, clock=lambda: NOW)
    billing.customers.add("alice")
    billing.subscriptions.start("alice", "Pro", anchor=NOW - 20 * 86400)
    yield billing
    billing.close()


def usage(tmp_path, rows="alice,api_calls,1,{T1},k1\n"):
    p = tmp_path / "u.csv"
    p.write_text("user_id,key,amount,timestamp,id\n" + rows.format(T1=T1))
    return p


@pytest.mark.sqlite_only(reason="recognises the SQLite ledger file by its header")
def test_the_ledger_is_never_the_reject_file(b, tmp_path):
    before = b.ledger.path
    with pytest.raises(ValidationError, match="SQLite database"):
        b.usage.import_rows(usage(tmp_path, "carol,api_calls,1,{T1},k9\n"), reject_file=before)
    assert b.customers.get("alice").user_id == "alice"  # the ledger is intact
    assert open(before, "rb").read(16) == b"SQLite format 3\x00"


def test_the_config_is_never_replaced_even_when_nothing_is_rejected(b, tmp_path, config_path):
    text = config_path.read_text()
    with pytest.raises(ValidationError, match="not a reject file"):
        b.usage.import_rows(usage(tmp_path), reject_file=config_path)
    assert config_path.read_text() == text
    assert b.usage.events("alice") == []  # refused before anything was imported


def test_links_are_never_followed(b, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "rej.csv"
    link.symlink_to(victim)
    with pytest.raises(ValidationError, match="symbolic link"):
        b.usage.import_rows(usage(tmp_path), reject_file=link)
    link.unlink()
    (tmp_path / "rej.csv.partial").symlink_to(victim)
    with pytest.raises(ValidationError, match="not a regular file"):
        b.usage.import_rows(usage(tmp_path, "carol,api_calls,1,{T1},k9\n"), reject_file=link)
    assert victim.read_text() == "precious\n"


def test_it_is_private_and_an_earlier_reject_file_is_replaced(b, tmp_path):
    rej = tmp_path / "rej.csv"
    rej.write_text("user_id,key,amount\nold,api_calls,1\n")
    r = b.usage.import_rows(usage(tmp_path, "carol,api_calls,1,{T1},k9\n"), reject_file=rej)
    assert r.rejected == 1
    assert stat.S_IMODE(os.stat(rej).st_mode) == 0o600
    assert rej.read_text() == f"user_id,key,amount,timestamp,id\ncarol,api_calls,1,{T1},k9\n"
    # a partial left by a killed import is replaced, not appended to
    (tmp_path / "rej.csv.partial").write_text("junk")
    b.usage.import_rows(usage(tmp_path, "carol,api_calls,2,{T1},k8\n"), reject_file=rej)
    assert "junk" not in rej.read_text()


def test_formulas_and_terminal_escapes_are_neutralised(b, tmp_path):
    rows = ('=HYPERLINK("http://x"),api_calls,1,{T1},k1\n'
            "alice,api_calls,-3,{T1},k2\n"
            "@SUM(A1),api_calls,1,{T1},k3\n"
            "ev\x1b[2Jil,api_calls,1,{T1},k4\n"
            "carol,api_calls,1,{T1},k5\n")
    rej = tmp_path / "rej.csv"
    r = b.usage.import_rows(usage(tmp_path, rows), reject_file=rej)
    assert r.rejected == 5
    lines = rej.read_text().splitlines()[1:]
    assert lines[0].startswith("\"'=HYPERLINK(\"\"http://x\"\")\"") or lines[0].startswith("'=HYPERLINK")
    assert lines[1] == f"alice,api_calls,'-3,{T1},k2"
    assert lines[2].startswith("'@SUM(A1)")
    assert "\x1b" not in rej.read_text() and lines[3].startswith("ev\\x1b[2Jil")
    assert lines[4] == f"carol,api_calls,1,{T1},k5"  # a harmless row stays byte for byte


@pytest.mark.sqlite_only(reason="recognises the SQLite ledger file by its header")
def test_cli_refuses_the_ledger_as_reject_file(runner, tmp_path):
    assert runner("customers", "add", "alice").exit_code == 0
    ledger = tmp_path / ".usagebill" / "ledger.db"
    src = tmp_path / "u.csv"
    src.write_text("user_id,key,amount\nalice,api_calls,1\n")
    r = runner("import", str(src), "--reject-file", str(ledger))
    assert r.exit_code == 1 and "SQLite database" in r.stderr
    assert runner("customers", "list", "--json").stdout.count("alice") >= 1


def test_an_amount_past_pythons_int_limit_is_that_rows_problem(b, tmp_path):
    rows = "alice,api_calls," + "9" * 5000 + ",{T1},k1\nalice,api_calls,2,{T1},k2\n"
    rej = tmp_path / "rej.csv"
    r = b.usage.import_rows(usage(tmp_path, rows), reject_file=rej)
    assert (r.imported, r.rejected) == (1, 1)
    assert "5,000 digits" in r.errors[0].reason
    again = b.usage.import_rows(usage(tmp_path, rows))
    assert (again.imported, again.duplicates, again.rejected) == (0, 1, 1)
