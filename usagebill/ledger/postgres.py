"""The ledger on PostgreSQL: the same statements as on SQLite, through psycopg 3.

What differs lives here and nowhere else: placeholders (``?`` and ``:name`` become psycopg's),
rows readable by index and by name, psycopg's errors as ours, sums as integers, and locking.
SQLite has one writer at a time; here a write transaction runs at READ COMMITTED and takes,
as its first statement, a transaction-scoped advisory lock:

- a transaction about one customer (``transaction(customer=...)``: consume, charge, top-up,
  renewals, idempotency keys) locks that customer, and holds the global lock shared;
- one that names no customer (sync, migrations, imports) holds the global lock exclusively,
  as SQLite's single writer would;
- one that only claims or marks rows (``transaction(rows_only=True)``: the outbox) takes no
  advisory lock: its row locks (``FOR NO KEY UPDATE SKIP LOCKED``) are enough.

So the logic written for SQLite's serial writes stays right with many processes on many
servers. psycopg is imported only when the ledger is a URL."""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager, nullcontext
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import LedgerError
from .db import IntegrityError, Ledger, StoreError

EXTRA_HINT = "pip install 'usagebill[postgres]'"
GLOBAL_LOCK = 0x75626C00  # "ubl\0": the key of the ledger-wide advisory lock
_C = ' COLLATE "C"'  # text compared byte by byte, as the ledger's columns (and SQLite) do
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?|(?<!:):([A-Za-z_]\w*)|%")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for every message that names it)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    if parts.password is None and not any(k.lower() == "password" for k, _ in parse_qsl(parts.query)):
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else f"{k}={v}" for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_url(url: str) -> None:
    """Refuse a URL that carries a password: it would show in process lists, shell history
    and CI logs. libpq's own means keep it out of sight."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError as e:
        raise LedgerError(f"the ledger URL {redact(url)} is not a valid URL ({e})") from None
    if has_password or any(k.lower() == "password" for k, _ in parse_qsl(parts.query)):
        raise LedgerError(
            f"the ledger URL {redact(url)} carries a password: give it through PGPASSWORD, PGPASSFILE "
            "(~/.pgpass) or PGSERVICE instead, so it stays out of process lists, shell history and logs"
        )


def translate(sql: str) -> str:
    """The package's SQL (``?`` and ``:name`` placeholders) in psycopg's paramstyle."""

    def one(m: re.Match) -> str:
        token = m.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if m.group(1):
            return f"%({m.group(1)})s"
        return token.replace("%", "%%")  # a quoted string or name: placeholders stay text

    return _TOKENS.sub(one, sql)


def lock_key(customer: str) -> int:
    """A customer's advisory lock key: a stable signed 64-bit hash of the user id."""
    return int.from_bytes(hashlib.blake2b(customer.encode(), digest_size=8).digest(), "big", signed=True)


def _row_factory():
    """Rows like sqlite3.Row: a tuple, also readable by column name, with ``keys()``."""
    classes: dict[tuple, type] = {}

    def factory(cursor):
        names = tuple(c.name for c in cursor.description or ())
        cls = classes.get(names)
        if cls is None:
            index = {n: i for i, n in enumerate(names)}

            class Row(tuple):
                __slots__ = ()

                def __getitem__(self, key, _get=tuple.__getitem__, _index=index):
                    return _get(self, _index[key] if isinstance(key, str) else key)

                def keys(self, _names=names):
                    return list(_names)

            cls = classes[names] = Row
        return cls

    return factory


def _numeric_loader(psycopg):
    """SUM over BIGINT is NUMERIC in PostgreSQL: integral values come back as int (SQLite's
    answer), others as Decimal."""
    from decimal import Decimal

    class IntegralNumeric(psycopg.adapt.Loader):
        def load(self, data):
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else Decimal(text)

    return IntegralNumeric


class PgLedger(Ledger):
    dialect = "postgres"
    without_rowid = ""
    skip_locked = " FOR NO KEY UPDATE SKIP LOCKED"
    string_agg = "string_agg"

    def __init__(self, conn, url: str):
        super().__init__(conn, redact(url))
        self.url = url
        self._sql: dict[str, str] = {}
        self._errors = _errors()
        self._pending: list[tuple[str, Any]] = []  # statements queued for the next round trip
        self._idle = self._errors.pq.TransactionStatus.IDLE
        from psycopg.rows import tuple_row

        self._tuple_rows = tuple_row

    def _q(self, sql: str) -> str:
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = translate(sql)
        return q

    def _send(self, sql: str, args: Any):
        """Run one statement, with the writes queued before it (``defer``, and a deferred
        BEGIN) in one pipeline: one round trip whatever the queue holds."""
        self.round_trips += 1
        pending = self._pending
        if not pending:
            return self.conn.execute(sql, args)
        self._pending = []
        with self.conn.pipeline():
            for queued, queued_args in pending:
                self.conn.execute(queued, queued_args)
            return self.conn.execute(sql, args)

    def execute(self, sql: str, args: Any = ()):
        if not sql.startswith("SELECT"):
            self.writes += 1
        try:
            return self._send(self._q(sql), args)
        except self._errors.IntegrityError as e:
            raise IntegrityError(_message(e)) from e
        except self._errors.Error as e:
            raise StoreError(_message(e)) from e

    def defer(self, sql: str, args: Any = ()) -> None:
        if not self.in_transaction:
            self.execute(sql, args)
            return
        self.writes += 1
        self._pending.append((self._q(sql), args))

    def executemany(self, sql: str, rows: Any) -> int:
        rows = list(rows)
        self.writes += 1
        if not rows:
            return 0
        try:
            self._flush()
            self.round_trips += 1
            cur = self.conn.cursor()
            cur.executemany(self._q(sql), rows)
            return max(cur.rowcount, 0)
        except self._errors.IntegrityError as e:
            raise IntegrityError(_message(e)) from e
        except self._errors.Error as e:
            raise StoreError(_message(e)) from e

    def _flush(self) -> None:
        """Send what is queued now (before a statement that does not go through ``_send``)."""
        if self._pending:
            self.round_trips += 1
            pending, self._pending = self._pending, []
            with self.conn.pipeline():
                for queued, queued_args in pending:
                    self.conn.execute(queued, queued_args)

    def table_exists(self, name: str) -> bool:
        return self.one("SELECT to_regclass(?) IS NOT NULL", (name,))[0]

    def _begin(self, customer: str | None, rows_only: bool) -> None:
        # queued, not sent: BEGIN and the locks go with the transaction's first statement
        self._pending = [("BEGIN ISOLATION LEVEL READ COMMITTED", None)]
        if rows_only:
            return
        if customer is None:
            self._pending.append(("SELECT pg_advisory_xact_lock(%s)", (GLOBAL_LOCK,)))
        else:
            key = lock_key(str(customer))  # not yet checked: a bad user id is refused inside
            self._pending.append(("SELECT pg_advisory_xact_lock_shared(%s), pg_advisory_xact_lock(%s)",
                                  (GLOBAL_LOCK, key)))

    def _commit(self) -> None:
        # the queued writes and COMMIT in one round trip; a write refused there (a constraint,
        # a trigger) rolls the whole transaction back, as it would have when sent alone
        try:
            self._send("COMMIT", None)
        except self._errors.IntegrityError as e:
            self._rollback()
            raise IntegrityError(_message(e)) from e
        except self._errors.Error as e:
            self._rollback()
            raise StoreError(_message(e)) from e

    def _rollback(self) -> None:
        self._pending = []
        if self.conn.info.transaction_status == self._idle:
            return  # nothing was sent (or the server ended it already)
        try:
            self.conn.execute("ROLLBACK")
        except self._errors.Error:
            pass  # the connection is gone: the server rolled back already

    def bulk(self, cache_kib: int):
        return nullcontext()

    @contextmanager
    def staged(self, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> Iterator[None]:
        """As on SQLite, but by ``COPY``: one stream, not a statement per row. The table keeps
        the rows' order (``n``, filled in COPY's order) and compares text as the ledger does
        (``COLLATE "C"``: a join on the ledger's indexes can use them). It lives within a
        transaction (``ON COMMIT DELETE ROWS``: a reused connection finds it empty)."""
        defs = ", ".join(f'{n} {t}{_C if t == "TEXT" else ""}' for n, t in columns)
        with self.transaction():  # nested in the caller's, or the rows' own (they go at commit)
            self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (n BIGINT GENERATED ALWAYS AS IDENTITY, {defs}) "
                         "ON COMMIT DELETE ROWS")
            self.writes += 1
            try:
                self._copy(table, columns, rows)
                self.round_trips += 1  # the SETs
                # one indexed look-up per row, as on SQLite: without that, the planner (which
                # knows nothing of the new rows) hashes the whole ledger for each batch (a seq
                # scan of usage_events: 0.9 s a batch at 1M events, against 0.1 s)
                self.conn.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
            except self._errors.Error as e:
                raise StoreError(_message(e)) from e
            yield
            # not on an error: the transaction is rolled back then, and the rows with it
            self.execute(f"TRUNCATE {table}")
            try:
                self._flush()
                self.round_trips += 1
                self.conn.execute("SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT")
            except self._errors.Error as e:
                raise StoreError(_message(e)) from e

    def _copy(self, table: str, columns: tuple[tuple[str, str], ...], rows: Iterable[tuple]) -> None:
        """``rows`` into ``table``'s ``columns`` by one COPY stream, after what is queued (in order)."""
        self._flush()
        self.round_trips += 1
        with self.conn.cursor().copy(f"COPY {table} ({', '.join(n for n, _ in columns)}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    def fill_temp(self, table: str, columns: tuple[tuple[str, str], ...], key: str, rows: Iterable[tuple]) -> None:
        """As on SQLite, by ``COPY`` (a statement per row takes seconds for the 10^5 rows of a
        reconcile), text compared as the ledger does, and ``ANALYZE``d: the planner knows its
        size then."""
        defs = ", ".join(f"{n} {d.replace('TEXT', 'TEXT' + _C, 1)}" for n, d in columns)
        self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({defs}, PRIMARY KEY ({key}))")
        with self.transaction():
            self.execute(f"TRUNCATE {table}")
            try:
                self._copy(table, columns, rows)
            except self._errors.Error as e:
                raise StoreError(_message(e)) from e
            self.execute(f"ANALYZE {table}")

    @contextmanager
    def index_joins(self) -> Iterator[None]:
        """Within one transaction, no hash or merge joins and no JIT: the planner would rather
        read a whole ledger table once than look each temporary row up in its index, which is
        what keeps a reconcile's cost to its windows (a hash of 10^6 events, a merge of every
        usage total, and 2 s of JIT compiling at 10^6 events, measured)."""
        with self.transaction(rows_only=True):
            self.execute("SET LOCAL enable_hashjoin = off")
            self.execute("SET LOCAL enable_mergejoin = off")
            self.execute("SET LOCAL jit = off")
            yield

    def insert_new(self, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple],
                   constants: tuple[tuple[str, str], ...] = (), *, key: tuple[str, ...]) -> int:
        """COPY into a staging table, then one ``INSERT ... SELECT ... ORDER BY n ON CONFLICT
        (key) DO NOTHING``: rows go in COPY's order, so the first of a key wins, as on SQLite."""
        if not rows:
            return 0
        names = [n for n, _ in columns]
        target = ", ".join(names + [n for n, _ in constants])
        source = ", ".join(names + [v for _, v in constants])
        stage = f"staged_{table}"
        with self.staged(stage, columns, rows):
            return max(self.execute(f"INSERT INTO {table} ({target}) SELECT {source} FROM {stage} ORDER BY n "
                                    f"ON CONFLICT ({', '.join(key)}) DO NOTHING").rowcount, 0)


def _errors():
    import psycopg

    return psycopg


def _message(e) -> str:
    """psycopg's primary message, one line."""
    diag = getattr(e, "diag", None)
    text = (diag.message_primary if diag is not None and diag.message_primary else str(e)) or type(e).__name__
    return " ".join(text.split())


def open_pg(url: str, *, read_only: bool = False) -> PgLedger:
    """Connect to the ledger at ``url`` (autocommit: writes go through ``transaction``) and
    migrate it (``pg_schema.migrate_pg``, once, under an advisory lock). ``read_only``: no
    migration (a ledger not up to date is an error) and no write (shell completion)."""
    check_url(url)
    try:
        import psycopg
    except ImportError:
        raise LedgerError(
            f"the ledger {redact(url)} is a PostgreSQL URL, which needs the postgres extra: {EXTRA_HINT}"
        ) from None
    from .pg_schema import migrate_pg

    try:
        conn = psycopg.connect(url, autocommit=True, row_factory=_row_factory(), connect_timeout=10,
                               application_name="usagebill")
    except psycopg.Error as e:
        raise LedgerError(f"{redact(url)}: cannot connect to the ledger ({_message(e)})") from None
    conn.adapters.register_loader("numeric", _numeric_loader(psycopg))
    if read_only:
        ledger = PgLedger(conn, url)
        ledger.readonly = True
        return ledger
    try:
        migrate_pg(conn, where=redact(url))
    except LedgerError:
        conn.close()
        raise
    except psycopg.Error as e:
        conn.close()
        raise LedgerError(f"{redact(url)}: not a usable usagebill ledger ({_message(e)})") from None
    return PgLedger(conn, url)
