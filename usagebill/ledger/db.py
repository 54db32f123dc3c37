"""Opening the ledger: WAL, a busy timeout, a private file, migrations, and transactions."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterable, Iterator

from ..errors import LedgerError
from ..sqlite_wal import use_wal

# a result row, by index and by name (sqlite3.Row, or the PostgreSQL backend's row)
Row = Any


class StoreError(Exception):
    """The database refused a statement (SQLite's or PostgreSQL's error, as one class)."""


class IntegrityError(StoreError):
    """A constraint or an immutability trigger refused a write."""


class Ledger:
    """One connection in autocommit mode; writes go through ``transaction()``. Every SQL
    statement of the package goes through ``execute`` / ``executemany`` / ``one`` / ``all``,
    written once with ``?`` (or ``:name``) placeholders in SQL both backends take; the
    backend's own needs (locks, placeholders, errors) live in its subclass.

    On SQLite a transaction takes the write lock up front (BEGIN IMMEDIATE), so
    read-modify-write sequences such as ``consume`` are atomic across processes."""

    dialect = "sqlite"
    without_rowid = " WITHOUT ROWID"  # a temporary table keyed by its primary key alone
    # appended to a claim's SELECT: rows another transaction holds are skipped, not waited for
    # (SQLite has one writer at a time, so there is nothing to skip)
    skip_locked = ""
    string_agg = "group_concat"  # (text, separator) over a group

    def __init__(self, conn: sqlite3.Connection, path: str, *, readonly: bool = False):
        self.conn = conn
        self.path = path  # what messages name: a file, or a redacted URL
        if self.dialect == "sqlite":
            # LIKE tells 'a' from 'A', as PostgreSQL's does (ids are case-sensitive: a prefix
            # completes to the same ids on both backends)
            conn.execute("PRAGMA case_sensitive_like = ON")
        self.readonly = readonly  # opened read-only: this user may not write the file
        self._depth = 0
        self._lock = threading.RLock()
        # statements other than SELECT so far: what a reader cached within a transaction
        # stays true until this changes (usagebill.context's customer snapshot)
        self.writes = 0
        # statements sent to the database: what PostgreSQL pays a network round trip for
        # (queued writes go with the next statement: see ``defer``)
        self.round_trips = 0
        # what this transaction wrote and may read again (balances): kept by ledger modules,
        # valid only inside the transaction, cleared at its start and end
        self.memo: dict = {}

    # -- statements ------------------------------------------------------------------------
    def execute(self, sql: str, args: Any = ()):
        """A cursor (``fetchone``, ``fetchall``, iteration, ``rowcount``)."""
        if not sql.startswith("SELECT"):
            self.writes += 1
        self.round_trips += 1
        try:
            return self.conn.execute(sql, args)
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from e
        except sqlite3.Error as e:
            raise StoreError(str(e)) from e

    def executemany(self, sql: str, rows: Any) -> int:
        """Runs ``sql`` once per row; returns how many rows it changed in all."""
        self.writes += 1
        self.round_trips += 1
        try:
            before = self.conn.total_changes
            self.conn.executemany(sql, rows)
            return self.conn.total_changes - before
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from e
        except sqlite3.Error as e:
            raise StoreError(str(e)) from e

    def defer(self, sql: str, args: Any = ()) -> None:
        """A write whose result nobody reads (no rowcount, no RETURNING). Inside a
        transaction a backend may queue it and send it with the next statement or the
        COMMIT, in one round trip (PostgreSQL's pipeline); its errors show there, and the
        transaction rolls back as for any failed statement. SQLite runs it now."""
        self.execute(sql, args)

    def one(self, sql: str, args: Any = ()) -> Any:
        return self.execute(sql, args).fetchone()

    def all(self, sql: str, args: Any = ()) -> list:
        return self.execute(sql, args).fetchall()

    def tuples(self, sql: str, args: Any = ()) -> list[tuple]:
        """``all``, the rows as plain tuples (read by position): where a statement returns many
        rows, a third cheaper to make and to read than rows that also know their columns."""
        cursor = self.execute(sql, args)
        cursor.row_factory = self._tuple_rows
        return cursor.fetchall()

    _tuple_rows = None  # a cursor's row factory making plain tuples

    def insert_id(self, sql: str, args: Any = ()) -> int:
        """An INSERT's new ``id`` (the statement gets ``RETURNING id``)."""
        return int(self.one(sql + " RETURNING id", args)[0])

    def table_exists(self, name: str) -> bool:
        return self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) is not None

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self, customer: str | None = None, *, rows_only: bool = False) -> Iterator["Ledger"]:
        """One atomic unit of writes. ``customer``: the one customer whose balances, keys and
        renewals it reads and writes; ``rows_only``: it only claims or marks rows it locks
        itself (the outbox). A backend with many writers at once serialises transactions per
        customer, and those that name neither against all others; SQLite has one writer at
        a time anyway."""
        with self._lock:
            if self._depth:  # nested: part of the enclosing transaction
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            if self.readonly:
                raise LedgerError(
                    f"{self.path} is read-only for this user, and this needs to write to it "
                    "(run it as the ledger's owner, or ask for write access)"
                )
            self._begin(customer, rows_only)
            self.writes += 1  # a new transaction: nothing read before it is cached into it
            self.memo.clear()
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self.writes += 1
                self.memo.clear()
                self._rollback()
                raise
            self._depth = 0
            self.writes += 1
            self.memo.clear()
            self._commit()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def _begin(self, customer: str | None, rows_only: bool) -> None:
        self.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.execute("COMMIT")

    def _rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    # -- the backend's own ---------------------------------------------------------------
    @contextmanager
    def staged(self, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> Iterator[None]:
        """``rows`` in the temporary table ``table`` (``columns``: (name, type) pairs, types
        TEXT or BIGINT) for the statements run inside; emptied after. SQLite: executemany
        (in process, one prepared statement)."""
        self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({', '.join(f'{n} {t}' for n, t in columns)})")
        self.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
        try:
            yield
        finally:
            self.execute(f"DELETE FROM {table}")

    def insert_new(self, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple],
                   constants: tuple[tuple[str, str], ...] = (), *, key: tuple[str, ...]) -> int:
        """INSERT ``rows`` (values of ``columns``, (name, type) pairs; each row also gets the
        ``constants``, (column, SQL literal) pairs) into ``table``, in the order given, skipping
        a row whose ``key`` (the columns of a unique index) is taken: of rows sharing one, the
        first is inserted. Returns how many were. A row breaking another unique constraint
        is an error, not skipped (PostgreSQL then checks that one index per row, not every
        unique one). SQLite: executemany, the fastest there (a staging table would copy every
        row twice)."""
        names = ", ".join([n for n, _ in columns] + [n for n, _ in constants])
        values = ", ".join(["?"] * len(columns) + [v for _, v in constants])
        return self.executemany(f"INSERT INTO {table} ({names}) VALUES ({values}) "
                                f"ON CONFLICT ({', '.join(key)}) DO NOTHING", rows)

    def fill_temp(self, table: str, columns: tuple[tuple[str, str], ...], key: str, rows: Iterable[tuple]) -> None:
        """The temporary table ``table`` (``columns``: (name, declaration) pairs; keyed by
        ``key``, so a join can look rows up in it), made once per connection, holding exactly
        ``rows``. SQLite: one transaction (row by row in autocommit mode takes ten times as long)."""
        defs = ", ".join(f"{n} {d}" for n, d in columns)
        self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({defs}, PRIMARY KEY ({key})) WITHOUT ROWID")
        rows = list(rows)
        with self.transaction() as db:
            db.execute(f"DELETE FROM {table}")
            if rows:
                db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)

    def index_joins(self) -> ContextManager[None]:
        """Statements inside join the ledger's tables with small temporary ones by index look-ups
        (SQLite's planner does so by itself)."""
        return nullcontext()

    @contextmanager
    def bulk(self, cache_kib: int) -> Iterator[None]:
        """A bulk write (an import): SQLite gets a bigger page cache for its duration."""
        (old,) = self.one("PRAGMA cache_size")
        self.conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(old)}")

    def close(self) -> None:
        self.conn.close()


URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str | os.PathLike) -> bool:
    """A PostgreSQL URL rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def open_ledger(target: str | os.PathLike) -> Ledger:
    """Open and migrate the ledger at ``target``: a PostgreSQL URL (``postgresql://...``), or a
    SQLite file (created with mode 0600 if needed; ``":memory:"`` for a throw-away ledger)."""
    if is_url(target):
        from .postgres import open_pg

        return open_pg(target)
    return _open_sqlite(os.fspath(target))


def _open_sqlite(path: str) -> Ledger:
    from .migrations import migrate

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
            use_wal(conn)
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
