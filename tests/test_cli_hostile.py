"""Hostile command lines: undecodable bytes, escape sequences, huge ids, help-looking ids.
Every refusal is one line on stderr, escaped, of a sane length, exit 1 or 2, no traceback."""

import os
import subprocess
import sys

import pytest


def one_error_line(r):
    lines = [x for x in r.stderr.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_non_utf8_argument_is_a_usage_error_not_a_traceback(tmp_path, config_path):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    args = [sys.executable, "-m", "usagebill", "--config", str(config_path), "record", b"al\xffice", "api_calls", "1"]
    p = subprocess.run(args, capture_output=True, env=env, cwd=tmp_path, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert "Traceback" not in err and "argument 4" in err and "not valid UTF-8" in err
    assert "al\\udcffice" in err


@pytest.mark.parametrize("bad", ["ali\x1b[31mce", "a\u202eecila", "bob\u200b", "x\ny"])
def test_escape_sequences_in_ids_are_never_echoed_raw(runner, bad):
    r = runner("credits", "balance", bad, "api_calls")
    assert r.exit_code in (1, 2)
    line = one_error_line(r)
    assert "\x1b" not in r.stderr and "\u202e" not in r.stderr and "\u200b" not in r.stderr
    assert "\n" not in line


def test_a_huge_id_is_cut_in_messages(runner):
    r = runner("credits", "balance", "a" * 1_000_000, "api_calls")
    assert r.exit_code == 1
    line = one_error_line(r)
    assert len(line) < 1000 and "characters cut" in line


def test_unknown_command_with_escapes_is_escaped(runner):
    r = runner("re\x1b]0;pwned\x07cord")
    assert r.exit_code == 2 and "\x1b" not in r.stderr and "\x07" not in r.stderr


def test_an_id_that_looks_like_an_option_goes_after_double_dash(runner):
    assert runner("customers", "add", "--", "--help").exit_code == 0
    r = runner("customers", "list", "--json")
    assert '"--help"' in r.stdout


@pytest.mark.sqlite_only(reason="a corrupted SQLite file")
def test_ledger_errors_are_one_line(runner, tmp_path):
    db = tmp_path / "broken.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84 + os.urandom(4000))
    r = runner("--db", str(db), "customers", "list")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    one_error_line(r)


@pytest.mark.parametrize("args", [
    ("record", "alice", "api_calls", "9" * 5000),
    ("credits", "grant", "alice", "api_calls", "9" * 5000),
    ("wallet", "top-up", "alice", "-" + "9" * 5000),
])
def test_numbers_past_pythons_int_limit_are_one_line(runner, args):
    r = runner(*args)
    assert r.exit_code == 1
    line = one_error_line(r)
    assert "5,000 digits" in line and len(line) < 200
