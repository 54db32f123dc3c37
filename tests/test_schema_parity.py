"""The PostgreSQL schema (``usagebill.ledger.pg_schema``) is the SQLite one: the same tables,
ordered columns, primary keys, unique constraints and indexes (partial ones with the same
WHERE), other indexes, CHECK constraints, foreign keys and immutability triggers; every
SQLite migration has a PostgreSQL twin under the same name, in the same order; and
``migrate_pg`` migrates a fresh database once however many processes open it at once.

What does not map one-to-one, and how it is compared here:
- SQLite lets a non-INTEGER primary key column hold NULL (a legacy quirk); PostgreSQL's
  primary keys are NOT NULL. Primary key columns count as NOT NULL on both sides.
- SQLite's ``INTEGER PRIMARY KEY AUTOINCREMENT`` is an identity column on PostgreSQL:
  compared as "generated id" on both sides.
- Names of the indexes behind inline UNIQUE / PRIMARY KEY constraints are the engine's own
  (``sqlite_autoindex_...`` / ``..._key``): compared by columns. Indexes made by CREATE INDEX
  are compared by name too.
- CHECK constraints are compared as normalised text and by behaviour (a violating row is
  refused on both).
- PostgreSQL also refuses TRUNCATE of the immutable tables (SQLite has no TRUNCATE): the
  ``*_no_truncate`` triggers are PostgreSQL's alone.
- Types are compared by family (integer / text / real); PostgreSQL's own rules (BIGINT for
  every integer, ``COLLATE "C"`` for every text column) are checked on their own.
- SQLite's LIKE ignores the case of ASCII letters by default, PostgreSQL's never does: no
  schema can make them agree, so the ledger's SQLite connections set case_sensitive_like
  (compared with and without ASCII letters).

The server: the suite's ``pg_server_url`` fixture when tests/conftest.py has one, else
``USAGEBILL_TEST_PG_URL`` (a role that may CREATE DATABASE) when set, else a throwaway server
started here (initdb + pg_ctl, as ``postgres`` when run as root, a unix socket in a temporary
folder, fsync off), else the module is skipped (a failure when ``CI=true``). The module makes
one fresh database, with an ICU en-US default collation where the server has ICU (so that
``COLLATE "C"`` is what makes the orders agree), and each test a fresh schema in it; the
tests of processes migrating at once get a fresh database each."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from urllib.parse import quote

import pytest

from usagebill import LedgerError
from usagebill.ledger import db as ledger_db
from usagebill.ledger.db import IntegrityError
from usagebill.ledger.migrations import MIGRATIONS

psycopg = pytest.importorskip("psycopg") if os.environ.get("CI") != "true" else __import__("psycopg")

from usagebill.ledger.pg_schema import PG_MIGRATIONS, migrate_pg  # noqa: E402

IMMUTABLE = ("usage_events", "credit_ledger", "wallet_ledger")

# open_ledger's SQLite path, taken before any test runs: the suite's PostgreSQL pass
# (tests/conftest.py, --backend=postgres) turns ledgers opened by path into PostgreSQL
# databases, and this module compares with a real SQLite ledger on every pass
_open_sqlite = ledger_db._open_sqlite


def open_sqlite_ledger(path) -> ledger_db.Ledger:
    return _open_sqlite(os.fspath(path))


# -- the server ------------------------------------------------------------------------------
def _pg_binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is needed with CI=true: {reason}")
    pytest.skip(f"no PostgreSQL: {reason}")


@pytest.fixture(scope="module")
def schema_pg_server(request):
    """A server URL whose role may create databases: the suite's ``pg_server_url`` once
    tests/conftest.py has one, else ``USAGEBILL_TEST_PG_URL``, else a server of our own."""
    try:
        url = request.getfixturevalue("pg_server_url")
    except pytest.FixtureLookupError:
        url = os.environ.get("USAGEBILL_TEST_PG_URL")
    if url:
        yield url
        return
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        _unavailable("initdb / pg_ctl not found (set USAGEBILL_TEST_PG_URL)")
    root = tempfile.mkdtemp(prefix="usagebill-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            _unavailable("running as root and there is no postgres user")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(root, "data")
    opts = f"-c listen_addresses='' -k {root} -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
    try:
        subprocess.run([*as_user, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "-o", opts, "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"the throwaway server did not start: {e} {detail.decode(errors='replace')[-500:]}")
    try:
        yield f"postgresql://postgres@/postgres?host={quote(root)}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _with_db(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname`` (the path part replaced)."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


def _with_schema(url: str, schema: str) -> str:
    """``url`` whose sessions create and find tables in ``schema`` (libpq's ``options``)."""
    return url + ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")


def _admin(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql)


def _new_database(server: str):
    """The URL of a new, empty database (an ICU en-US default collation where the server has
    ICU, so that COLLATE "C" must matter), dropped afterwards."""
    name = "ub_schema_" + uuid.uuid4().hex[:12]
    try:
        _admin(server, f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    except psycopg.Error:
        _admin(server, f"CREATE DATABASE {name}")
    yield _with_db(server, name)
    _admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def fresh_database(schema_pg_server):
    yield from _new_database(schema_pg_server)


@pytest.fixture(scope="module")
def module_database(schema_pg_server):
    yield from _new_database(schema_pg_server)


@pytest.fixture
def fresh_pg(module_database):
    """The URL of a new, empty schema (cheaper than a database: most tests want one) of the
    module's database, dropped afterwards."""
    name = "ub_" + uuid.uuid4().hex[:12]
    _admin(module_database, f"CREATE SCHEMA {name}")
    yield _with_schema(module_database, name)
    _admin(module_database, f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def pg(fresh_pg):
    """A connection (autocommit) to a fresh schema migrated by ``migrate_pg``."""
    with psycopg.connect(fresh_pg, autocommit=True) as conn:
        migrate_pg(conn)
        yield conn


@pytest.fixture
def lite(tmp_path):
    ledger = open_sqlite_ledger(tmp_path / "l.db")
    yield ledger
    ledger.close()


@pytest.fixture(scope="module")
def schemas(module_database, tmp_path_factory):
    """(SQLite's, PostgreSQL's) schema as data, of a ledger migrated from nothing on each."""
    ledger = open_sqlite_ledger(tmp_path_factory.mktemp("parity") / "l.db")
    _admin(module_database, "CREATE SCHEMA ub_parity")
    with psycopg.connect(_with_schema(module_database, "ub_parity"), autocommit=True) as conn:
        migrate_pg(conn)
        yield sqlite_schema(ledger), pg_schema(conn)
    ledger.close()


# -- the two schemas as data -----------------------------------------------------------------
def _family(declared: str) -> str:
    t = declared.upper()
    if "INT" in t:
        return "integer"
    if any(w in t for w in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if any(w in t for w in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "real"
    return t.lower() or "none"


def _norm_sql(text: str | None) -> str | None:
    """A WHERE, CHECK or DEFAULT as both engines would agree to write it."""
    if text is None:
        return None
    text = re.sub(r"::(?:character varying|double precision|\w+)", "", text.lower())  # PostgreSQL's casts
    text = re.sub(r'collate "?c"?', "", text)
    text = re.sub(r"=\s*any\s*\(\s*array\[(.*?)\]\s*\)", r" in (\1)", text)  # PostgreSQL's IN (...)
    return re.sub(r"[\s()]", "", text.removeprefix("check"))


def _sqlite_checks(sql: str) -> set[str]:
    """The CHECK (...) expressions of a CREATE TABLE statement (balanced parentheses)."""
    found = set()
    for m in re.finditer(r"\bCHECK\s*\(", sql, re.I):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            i += 1
        found.add(_norm_sql(sql[m.end():i - 1]))
    return found


def sqlite_schema(ledger) -> dict:
    q = ledger.all
    tables = [r[0] for r in q("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    schema: dict = {}
    for t in tables:
        (sql,) = ledger.one("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (t,))
        info = q(f"PRAGMA table_info({t})")
        pk = [r["name"] for r in sorted(info, key=lambda r: r["pk"]) if r["pk"]]
        columns = [(r["name"], _family(r["type"]), bool(r["notnull"]) or r["name"] in pk, _norm_sql(r["dflt_value"]))
                   for r in info]
        generated = {pk[0]} if len(pk) == 1 and "AUTOINCREMENT" in sql.upper() else set()
        unique_constraints, unique_indexes, indexes = set(), {}, {}
        for ix in q(f"PRAGMA index_list({t})"):
            cols = tuple((r["name"], bool(r["desc"])) for r in q(f"PRAGMA index_xinfo({ix['name']})") if r["key"])
            where = None
            if ix["partial"]:
                (isql,) = ledger.one("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (ix["name"],))
                where = _norm_sql(re.search(r"\bWHERE\b(.*)$", isql, re.I | re.S).group(1))
            if ix["origin"] == "pk":
                continue
            if ix["origin"] == "u":  # UNIQUE in the table's definition
                unique_constraints.add(cols)
            elif ix["unique"]:
                unique_indexes[ix["name"]] = (cols, where)
            else:
                indexes[ix["name"]] = (cols, where)
        fks = {(r["from"], r["table"], r["to"], r["on_update"], r["on_delete"]) for r in q(f"PRAGMA foreign_key_list({t})")}
        schema[t] = {
            "columns": columns, "primary_key": pk, "generated": generated, "unique_constraints": unique_constraints,
            "unique_indexes": unique_indexes, "indexes": indexes, "checks": _sqlite_checks(sql), "foreign_keys": fks,
        }
    triggers = {(r[0], r[1]) for r in q("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")}
    return {"tables": schema, "triggers": triggers}


_FK_ACTION = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def pg_schema(conn) -> dict:
    def q(sql, args=()):
        return conn.execute(sql, args).fetchall()

    tables = [r[0] for r in q(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')")]
    schema: dict = {}
    for t in tables:
        columns = q(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), "
            "a.attidentity FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (t,))
        (pk,) = conn.execute(
            "SELECT (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord) "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n) "
            "FROM pg_constraint c WHERE c.conrelid = %s::regclass AND c.contype = 'p'", (t,)).fetchone() or ([],)
        unique_constraints, unique_indexes, indexes = set(), {}, {}
        for name, unique, primary, keys, where, constraint in q(
                "SELECT i.relname, x.indisunique, x.indisprimary, "
                "(SELECT array_agg(ARRAY[a.attname, (x.indoption[k.ord - 1] & 1)::text] ORDER BY k.ord) "
                " FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, ord) "
                " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n WHERE k.ord <= x.indnkeyatts), "
                "pg_get_expr(x.indpred, x.indrelid), "
                "EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.conrelid = x.indrelid) "
                "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass", (t,)):
            cols = tuple((k, d == "1") for k, d in keys)
            if primary:
                continue
            if constraint:
                unique_constraints.add(cols)
            elif unique:
                unique_indexes[name] = (cols, _norm_sql(where))
            else:
                indexes[name] = (cols, _norm_sql(where))
        checks = {_norm_sql(r[0]) for r in q(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'", (t,))}
        fks = set()
        for src, ref, dst, upd, dele, deferrable in q(
                "SELECT (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord) "
                " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n), c.confrelid::regclass::text, "
                "(SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(n, ord) "
                " JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n), "
                "c.confupdtype, c.confdeltype, c.condeferrable "
                "FROM pg_constraint c WHERE c.conrelid = %s::regclass AND c.contype = 'f'", (t,)):
            assert len(src) == 1 and not deferrable, (t, src)  # SQLite's are single-column, immediate
            fks.add((src[0], ref, dst[0], _FK_ACTION[upd], _FK_ACTION[dele]))
        schema[t] = {
            "columns": [(n, _family(ty), nn, _norm_sql(d)) for n, ty, nn, d, _ in columns],
            "primary_key": list(pk or []),
            "generated": {n for n, _, _, _, ident in columns if ident},
            "unique_constraints": unique_constraints, "unique_indexes": unique_indexes, "indexes": indexes,
            "checks": checks, "foreign_keys": fks,
        }
    triggers = {(r[0], r[1]) for r in q(
        "SELECT g.tgname, g.tgrelid::regclass::text FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND NOT g.tgisinternal")}
    return {"tables": schema, "triggers": triggers}


# -- the same schema -------------------------------------------------------------------------
def test_every_sqlite_migration_has_a_postgresql_twin_in_the_same_order():
    assert [name for name, _ in PG_MIGRATIONS] == [fn.__name__ for fn in MIGRATIONS]


def test_migrate_pg_records_every_migration(pg):
    assert [r[0] for r in pg.execute("SELECT name FROM _migrations ORDER BY name").fetchall()] == sorted(
        fn.__name__ for fn in MIGRATIONS)
    assert migrate_pg(pg) == []  # nothing left to apply


def test_the_same_tables(schemas):
    assert sorted(schemas[0]["tables"]) == sorted(schemas[1]["tables"])


@pytest.mark.parametrize("part", ["columns", "primary_key", "generated", "unique_constraints", "unique_indexes",
                                  "indexes", "checks", "foreign_keys"])
def test_the_same_per_table(schemas, part):
    s, p = schemas[0]["tables"], schemas[1]["tables"]
    assert {t: s[t][part] for t in s} == {t: p[t][part] for t in s}


def test_the_partial_indexes_are_there_with_their_where(schemas):
    """A guard on the comparison itself: it does see the partial indexes."""
    tables = schemas[1]["tables"]
    assert tables["subscriptions"]["unique_indexes"]["subscriptions_one_active"] == (
        (("user_id", False),), "status='active'")
    assert tables["event_delivery"]["indexes"]["event_delivery_failed"] == (  # m010 dropped m009's sending index
        (("seq", False),), "status='failed'")
    assert tables["usage_events"]["indexes"]["usage_events_by_time"][0] == tuple(
        (c, False) for c in ("user_id", "feature", "timestamp", "amount"))


def test_the_same_triggers_and_truncate_refused_on_postgresql_too(schemas):
    s, p = schemas[0]["triggers"], schemas[1]["triggers"]
    truncate = {(f"{t}_no_truncate", t) for t in IMMUTABLE}
    assert s == {(f"{t}_no_{op}", t) for t in IMMUTABLE for op in ("update", "delete")}
    assert p == s | truncate


def test_postgresql_integers_are_bigint_and_text_is_collate_c(pg):
    rows = pg.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), co.collname "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped").fetchall()
    assert rows
    assert [r for r in rows if r[2] not in ("bigint", "text")] == []
    assert [r for r in rows if r[2] == "text" and r[3] != "C"] == []


# -- the same behaviour ----------------------------------------------------------------------
def _valid_row(schema: dict, table: str) -> dict:
    """A row that every NOT NULL column accepts (integers 1, texts 'x'), generated ids left out."""
    t = schema["tables"][table]
    return {n: (1 if fam == "integer" else "x") for n, fam, notnull, default in t["columns"]
            if notnull and n not in t["generated"] and default is None}


def _insert_sql(table: str, row: dict, style: str) -> str:
    marks = ", ".join(("?" if style == "sqlite" else "%s") for _ in row)
    return f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})"


CHECKED = [("usage_events", "amount", 0), ("usage_events", "amount", -1), ("allocations_left", "remaining", -1),
           ("credit_grants", "remaining", -1)]


@pytest.mark.parametrize("sqlite,postgresql", [
    ("status = 'active'", "(status = 'active'::text)"),
    ("status IN ('queued', 'sending') AND first_sent_at IS NOT NULL",
     "((status = ANY (ARRAY['queued'::text, 'sending'::text])) AND (first_sent_at IS NOT NULL))"),
    ("remaining >= 0", "CHECK ((remaining >= 0))"),
    ("amount > 0 AND status = 'x'", "CHECK (((amount > 0) AND (status = 'x'::text)))"),
])
def test_the_normalised_where_and_check_of_both_engines(sqlite, postgresql):
    """How the comparison reads a partial index's WHERE and a CHECK (PostgreSQL writes them
    back with casts, parentheses and = ANY (ARRAY[...]))."""
    assert _norm_sql(sqlite) == _norm_sql(postgresql)
    assert _norm_sql("status = 'active'") != _norm_sql("status = 'canceled'")


def test_the_checks_compared_by_behaviour_are_all_the_checks(lite):
    s = sqlite_schema(lite)["tables"]
    assert {(t, c) for t, c, _ in CHECKED} == {(t, c) for t in s for c, *_ in s[t]["columns"]
                                               if any(re.match(rf"{c}\W", k) for k in s[t]["checks"])}


@pytest.mark.parametrize("table,column,bad", CHECKED)
def test_a_row_violating_a_check_is_refused_on_both(lite, pg, table, column, bad):
    row = _valid_row(sqlite_schema(lite), table)
    assert row == _valid_row(pg_schema(pg), table)
    with pytest.raises(IntegrityError, match="CHECK"):
        lite.execute(_insert_sql(table, {**row, column: bad}, "sqlite"), tuple({**row, column: bad}.values()))
    with pytest.raises(psycopg.errors.CheckViolation):
        pg.execute(_insert_sql(table, {**row, column: bad}, "pg"), tuple({**row, column: bad}.values()))
    # and the valid row goes in on both (the check refused the value, not the row)
    lite.execute(_insert_sql(table, row, "sqlite"), tuple(row.values()))
    pg.execute(_insert_sql(table, row, "pg"), tuple(row.values()))


def test_foreign_keys_are_enforced_on_both(lite, pg):
    row = {"user_id": "nobody", "plan": "pro", "interval": "month", "currency": "usd", "anchor": 0,
           "status": "active", "created_at": 0}
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        lite.execute(_insert_sql("subscriptions", row, "sqlite"), tuple(row.values()))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        pg.execute(_insert_sql("subscriptions", row, "pg"), tuple(row.values()))


def test_one_active_subscription_per_customer_on_both(lite, pg):
    for db, style, refused in ((lite, "sqlite", IntegrityError), (pg, "pg", psycopg.errors.UniqueViolation)):
        db.execute(_insert_sql("customers", {"user_id": "u", "created_at": 0}, style), ("u", 0))
        sub = {"user_id": "u", "plan": "pro", "interval": "month", "currency": "usd", "anchor": 0, "created_at": 0}
        for status in ("canceled", "canceled", "active"):  # any number of canceled ones
            db.execute(_insert_sql("subscriptions", {**sub, "status": status}, style), (*sub.values(), status))
        with pytest.raises(refused):
            db.execute(_insert_sql("subscriptions", {**sub, "status": "active"}, style), (*sub.values(), "active"))


@pytest.mark.parametrize("table", IMMUTABLE)
def test_immutable_tables_refuse_update_delete_and_truncate(lite, pg, table):
    s, p = sqlite_schema(lite), pg_schema(pg)
    row = _valid_row(s, table)
    assert row == _valid_row(p, table)
    lite.execute(_insert_sql(table, row, "sqlite"), tuple(row.values()))
    pg.execute(_insert_sql(table, row, "pg"), tuple(row.values()))
    column = [c for c in row if c not in ("id", "user_id")][0]
    for sql in (f"UPDATE {table} SET {column} = {column}", f"DELETE FROM {table}"):
        with pytest.raises(IntegrityError, match=f"^{table} rows are immutable$"):
            lite.execute(sql)
        with pytest.raises(psycopg.IntegrityError) as refused:
            pg.execute(sql)
        assert refused.value.sqlstate.startswith("23")
        assert refused.value.diag.message_primary == f"{table} rows are immutable"
    with pytest.raises(psycopg.IntegrityError, match=f"{table} rows are immutable"):
        pg.execute(f"TRUNCATE {table} CASCADE")
    # row triggers, as on SQLite: a statement that touches no row is not refused
    lite.execute(f"DELETE FROM {table} WHERE user_id = 'nobody'")
    pg.execute(f"DELETE FROM {table} WHERE user_id = 'nobody'")
    assert lite.one(f"SELECT COUNT(*) FROM {table}")[0] == pg.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 1


def test_key_order_and_like_agree_with_sqlite(lite, pg):
    """Binary order on both (the fresh database's default collation is ICU en-US where the
    server has ICU, which would put 'a' before 'B')."""
    ids = ["a", "B", "_x", "é", "Z", "a-b", "ab", "a_b", "A", "\u00e9t\u00e9", "e"]
    for i in ids:
        lite.execute("INSERT INTO customers (user_id, created_at) VALUES (?, 0)", (i,))
        pg.execute("INSERT INTO customers (user_id, created_at) VALUES (%s, 0)", (i,))
    order = "SELECT user_id FROM customers ORDER BY user_id"
    assert [r[0] for r in lite.all(order)] == [r[0] for r in pg.execute(order).fetchall()] == sorted(ids)
    for lo, hi in (("B", "a"), ("_", "b"), ("Z", "é")):
        between = "SELECT user_id FROM customers WHERE user_id > {0} AND user_id < {0} ORDER BY user_id"
        assert [r[0] for r in lite.all(between.format("?"), (lo, hi))] == [
            r[0] for r in pg.execute(between.format("%s"), (lo, hi)).fetchall()]
    like = "SELECT user_id FROM customers WHERE user_id LIKE {} ESCAPE '\\' ORDER BY user_id"
    for pattern in ("\\_%", "é%", "%-%", "%\\_%"):  # no ASCII letter: see the next test
        assert [r[0] for r in lite.all(like.format("?"), (pattern,))] == [
            r[0] for r in pg.execute(like.format("%s"), (pattern,)).fetchall()]


def test_like_with_ascii_letters_agrees_with_sqlite(lite, pg):
    """SQLite's LIKE ignores the case of ASCII letters unless told otherwise (the ledger's
    connections are: PRAGMA case_sensitive_like); PostgreSQL's never does."""
    for i in ("a", "A"):
        lite.execute("INSERT INTO customers (user_id, created_at) VALUES (?, 0)", (i,))
        pg.execute("INSERT INTO customers (user_id, created_at) VALUES (%s, 0)", (i,))
    like = "SELECT user_id FROM customers WHERE user_id LIKE {} ORDER BY user_id"
    assert [r[0] for r in lite.all(like.format("?"), ("a%",))] == [
        r[0] for r in pg.execute(like.format("%s"), ("a%",)).fetchall()]


def test_big_amounts_fit(lite, pg):
    big = 2**62
    row = {"id": "e", "user_id": "u", "feature": "f", "amount": big, "timestamp": big, "recorded_at": big,
           "source": "import"}
    lite.execute(_insert_sql("usage_events", row, "sqlite"), tuple(row.values()))
    pg.execute(_insert_sql("usage_events", row, "pg"), tuple(row.values()))
    assert pg.execute("SELECT amount, seq FROM usage_events").fetchone() == (big, 1)


# -- migrating -------------------------------------------------------------------------------
M003_INPUT = [("a", "api_calls", 100, 100, "plan_grant"), ("a", "api_calls", 50, 150, "grant"),
              ("a", "api_calls", -30, 120, "consume"), ("b", "api_calls", 5, 5, "grant"),
              ("b", "api_calls", -5, 0, "consume"), ("c", "x", 7, 7, "grant"), ("a", "other", 3, 3, "grant")]


def test_m003_copies_credits_held_before_it_as_on_sqlite(tmp_path, monkeypatch, fresh_pg):
    from usagebill.ledger import migrations

    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
    ledger = open_sqlite_ledger(tmp_path / "old.db")
    ledger.executemany("INSERT INTO credit_ledger (user_id, feature, delta, balance_after, reason, created_at) "
                       "VALUES (?, ?, ?, ?, ?, 0)", M003_INPUT)
    ledger.close()
    monkeypatch.undo()
    ledger = open_sqlite_ledger(tmp_path / "old.db")
    with psycopg.connect(fresh_pg, autocommit=True) as conn:
        assert migrate_pg(conn, migrations=PG_MIGRATIONS[:2]) == ["m001_initial", "m002_stripe"]
        conn.cursor().executemany("INSERT INTO credit_ledger (user_id, feature, delta, balance_after, reason, created_at) "
                                  "VALUES (%s, %s, %s, %s, %s, 0)", M003_INPUT)
        assert migrate_pg(conn)[0] == "m003_included_and_granted"
        grants = "SELECT * FROM credit_grants ORDER BY id"
        assert [tuple(r) for r in ledger.all(grants)] == conn.execute(grants).fetchall()
        assert len(conn.execute(grants).fetchall()) == 3
        # what m003 added comes after the columns m001 made, as on SQLite
        assert sqlite_schema(ledger)["tables"]["credit_ledger"]["columns"] == pg_schema(conn)["tables"][
            "credit_ledger"]["columns"]
    ledger.close()


def test_a_database_from_a_newer_usagebill_is_refused(pg):
    pg.execute("INSERT INTO _migrations VALUES ('m999_future', 0)")
    with pytest.raises(LedgerError, match=r"^postgresql://u:\*\*\*@h/db: made by a newer usagebill "
                                          r"\(unknown migrations: m999_future\)$"):
        migrate_pg(pg, where="postgresql://u:***@h/db")
    with pytest.raises(LedgerError, match=r"^postgresql://postgres@.*: made by a newer usagebill"):
        migrate_pg(pg)


def test_an_older_usagebill_refuses_the_migrations_it_does_not_know(pg):
    newest = ", ".join(sorted(name for name, _ in PG_MIGRATIONS[-2:]))
    with pytest.raises(LedgerError, match=f"unknown migrations: {newest}"):
        migrate_pg(pg, where="db", migrations=PG_MIGRATIONS[:-2])


def test_a_failed_migration_leaves_nothing(fresh_pg):
    broken = [*PG_MIGRATIONS[:2], ("m003_broken", "CREATE TABLE half (x BIGINT); SELECT no_such_function()")]
    with psycopg.connect(fresh_pg, autocommit=True) as conn:
        with pytest.raises(psycopg.Error):
            migrate_pg(conn, migrations=broken)
        assert pg_schema(conn)["tables"] == {}
        assert migrate_pg(conn)[-1] == PG_MIGRATIONS[-1][0]


def test_migrate_pg_needs_autocommit(fresh_pg):
    with psycopg.connect(fresh_pg) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            migrate_pg(conn)


MIGRATE_IN_A_PROCESS = """
import json, sys
import psycopg
from usagebill.ledger.pg_schema import migrate_pg
url, gate = sys.argv[1], int(sys.argv[2])
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("SELECT pg_advisory_lock_shared(%s)", (gate,))  # waits until the test opens the gate
    conn.execute("SELECT pg_advisory_unlock_shared(%s)", (gate,))
    print(json.dumps(migrate_pg(conn)))
"""


@pytest.mark.parametrize("processes", [2, 8])
def test_processes_migrating_a_fresh_database_at_once_migrate_it_once(fresh_database, processes):
    """Separate processes, held at a gate (an advisory lock the test holds) until all of them
    are connected and waiting, then let go at once on a database with no table yet."""
    import json
    import sys
    import time

    gate = 4242
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (gate,))
        workers = [subprocess.Popen([sys.executable, "-c", MIGRATE_IN_A_PROCESS, fresh_database, str(gate)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(processes)]
        deadline = time.monotonic() + 120
        while conn.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                           "AND classid = 0 AND objid = %s AND objsubid = 1", (gate,)).fetchone()[0] < processes:
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "the workers did not wait"
            time.sleep(0.02)
        conn.execute("SELECT pg_advisory_unlock(%s)", (gate,))
        outcomes = [w.communicate(timeout=120) for w in workers]
        assert [(w.returncode, err) for w, (_, err) in zip(workers, outcomes) if w.returncode] == []
        applied = [json.loads(out) for out, _ in outcomes]
        assert sorted(name for names in applied for name in names) == sorted(fn.__name__ for fn in MIGRATIONS)
        assert sum(1 for names in applied if names) == 1  # each migration once, all by one process
        assert conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
