"""Switching a new SQLite file to WAL while other processes open it: SQLite answers
"database is locked" at once there (its busy timeout does not apply), so use_wal tries again
within its patience; other errors, and a lock that outlasts the patience, are raised."""

import sqlite3

import pytest

from usagebill.sqlite_wal import use_wal


class Flaky:
    def __init__(self, failures: int, message: str = "database is locked"):
        self.failures, self.message, self.calls = failures, message, 0

    def execute(self, sql):
        assert sql == "PRAGMA journal_mode = WAL"
        self.calls += 1
        if self.calls <= self.failures:
            raise sqlite3.OperationalError(self.message)


def test_a_lock_met_while_others_open_the_file_is_waited_out():
    conn = Flaky(3)
    use_wal(conn)
    assert conn.calls == 4


def test_other_errors_are_not_retried():
    conn = Flaky(1, "disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        use_wal(conn)
    assert conn.calls == 1


def test_a_lock_that_outlasts_the_patience_is_raised():
    conn = Flaky(10**9)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(conn, patience=0.05)
    assert conn.calls > 1


def test_a_real_file_ends_in_wal(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    use_wal(conn)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
