"""Opening the ledger: WAL, a busy timeout, a private file, migrations, and transactions."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import LedgerError


class Ledger:
    """One SQLite connection in autocommit mode; writes go through ``transaction()``, which
    takes the write lock up front (BEGIN IMMEDIATE) so read-modify-write sequences such as
    ``consume`` are atomic across processes."""

    def __init__(self, conn: sqlite3.Connection, path: str, *, readonly: bool = False):
        self.conn = conn
        self.path = path
        self.readonly = readonly  # opened read-only: this user may not write the file
        self._depth = 0
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._depth:  # nested: part of the enclosing transaction
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            if self.readonly:
                raise LedgerError(
                    f"{self.path} is read-only for this user, and this needs to write to it "
                    "(run it as the ledger's owner, or ask for write access)"
                )
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.conn.execute("COMMIT")

    def one(self, sql: str, args: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, args).fetchone()

    def all(self, sql: str, args: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        self.conn.close()


@contextmanager
def page_cache(ledger: Ledger, kib: int) -> Iterator[None]:
    """A bigger SQLite page cache for the duration of a bulk write (an import)."""
    (old,) = ledger.one("PRAGMA cache_size")
    ledger.conn.execute(f"PRAGMA cache_size = -{int(kib)}")
    try:
        yield
    finally:
        ledger.conn.execute(f"PRAGMA cache_size = {int(old)}")


def open_ledger(path: str | os.PathLike) -> Ledger:
    """Open (creating with mode 0600 if needed) and migrate the ledger at ``path``;
    ``":memory:"`` for a throw-away ledger."""
    from .migrations import migrate

    path = os.fspath(path)
    if path != ":memory:" and _read_only_for_us(Path(path)):
        return _open_read_only(path)
    if path != ":memory:":
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if not p.exists():
                # the ledger holds customer e-mails and Stripe ids: private from the start
                os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as e:
            raise LedgerError(f"{path}: cannot create the ledger: {e.strerror}") from None
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        ledger = Ledger(conn, path)
        migrate(ledger)
    except sqlite3.DatabaseError as e:
        raise LedgerError(f"{path}: not a usable usagebill ledger ({e})") from None
    return ledger


def _read_only_for_us(p: Path) -> bool:
    """An existing ledger this user may read but not write (the file, or the folder where
    SQLite keeps its -wal and -shm files)."""
    if not p.exists() or not os.access(p, os.R_OK):
        return False
    if not os.access(p, os.W_OK):
        return True
    side = [Path(f"{p}-wal"), Path(f"{p}-shm")]
    return not os.access(p.parent, os.W_OK) and not all(s.exists() and os.access(s, os.W_OK) for s in side)


def _open_read_only(path: str) -> Ledger:
    """Reads work; the first write says "read-only" (``Ledger.transaction``). Without write
    access SQLite cannot create the WAL's -shm file: when no -wal file exists (no writer is
    active), the file is opened as immutable."""
    from urllib.parse import quote

    from .migrations import MIGRATIONS, _applied

    absolute = os.path.abspath(path)
    params = "mode=ro" if os.path.exists(absolute + "-wal") else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"file:{quote(absolute)}?{params}", uri=True, isolation_level=None, timeout=30,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        ledger = Ledger(conn, path, readonly=True)
        applied = _applied(ledger)
    except sqlite3.DatabaseError as e:
        raise LedgerError(f"{path}: not a usable usagebill ledger ({e})") from None
    known = {fn.__name__ for fn in MIGRATIONS}
    if applied is not None and applied - known:
        conn.close()
        raise LedgerError(f"{path}: made by a newer usagebill (unknown migrations: {', '.join(sorted(applied - known))})")
    if applied != known:
        conn.close()
        raise LedgerError(
            f"{path}: read-only for this user, and it needs upgrading first (run any usagebill command "
            "as the ledger's owner)"
        )
    return ledger
