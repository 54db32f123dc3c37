"""SQLite files in WAL mode, opened by many processes at once (the ledger, the sandbox)."""

from __future__ import annotations

import sqlite3
import time


def use_wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switch the file to WAL. SQLite does not wait (busy_timeout) for the lock this takes
    when other processes are opening the same new file at that moment: it says "database is
    locked" at once. So it is tried again, for as long as a busy write would be waited for."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
