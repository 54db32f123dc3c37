"""A throwaway PostgreSQL server for the test session, and fresh databases on it.

``USAGEBILL_TEST_PG_URL`` (a server someone else runs, reached as a user who may CREATE
DATABASE) is used when given; otherwise ``initdb`` + ``pg_ctl`` start one in a temporary folder,
listening on a unix socket only, with durability off (``fsync=off``...): about a second. When
run as root, the server runs as the ``postgres`` OS user (PostgreSQL refuses root). The server
is stopped at the end of the session (the fixture's finalizer, ``atexit``, and a watchdog
process that stops it if the test process dies without either), and its folder removed.

Plain functions (no pytest here), so the race tests' spawned processes and ``bench/`` can
use them too; the fixtures are in ``tests/conftest.py``."""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ENV_URL = "USAGEBILL_TEST_PG_URL"
BINARIES = ("initdb", "pg_ctl")
# durability off (a throwaway server); connections for tests that keep many ledgers open
SERVER_OPTIONS = ("-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=400")


class ServerUnavailable(Exception):
    """No PostgreSQL server for the tests: not installed (``installed`` False), or it did not
    start (the message carries the command's output and the server's log)."""

    def __init__(self, message: str, *, installed: bool = True):
        super().__init__(message)
        self.installed = installed


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: from PATH, else the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH)."""
    found = [shutil.which(b) for b in BINARIES]
    if all(found):
        # the real folder (Debian links pg_ctl into /usr/bin as a wrapper script)
        dirs = {Path(os.path.realpath(f)).parent for f in found}
        if len(dirs) == 1:
            return dirs.pop()
    candidates = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        version = os.path.basename(os.path.dirname(d))
        if all(os.access(os.path.join(d, b), os.X_OK) for b in BINARIES):
            candidates.append((int(version) if version.isdigit() else 0, d))
    if candidates:
        return Path(max(candidates)[1])
    return None


def _as_server_user(args: list[str]) -> list[str]:
    """``args`` as run by the ``postgres`` OS user when we are root (PostgreSQL refuses to run
    as root), else as ourselves."""
    if os.geteuid() != 0:
        return args
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *args]
    import shlex

    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(args)]


def _server_uid_gid() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise ServerUnavailable(
            "running as root, and there is no 'postgres' OS user to run the test server as "
            "(install Debian's postgresql package, or set USAGEBILL_TEST_PG_URL)"
        ) from None
    return pw.pw_uid, pw.pw_gid


class Server:
    """One server: ``start()``, ``url`` (the ``postgres`` maintenance database), ``stop()``."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.url = ""
        self._watchdog: subprocess.Popen | None = None
        self._stopped = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _run(self, args: list[str], what: str, timeout: float) -> None:
        try:
            out = subprocess.run(_as_server_user(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ServerUnavailable(f"{what} failed: {e}\n{self.log_text()}") from None
        if out.returncode != 0:
            raise ServerUnavailable(f"{what} exited {out.returncode}:\n{out.stdout}\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except (OSError, TypeError, AttributeError):
            return "(no server log)"
        return "--- server log ---\n" + text[-8000:]

    def start(self) -> "Server":
        ids = _server_uid_gid()
        # short: a unix socket's path must stay under ~100 bytes
        self.root = Path(tempfile.mkdtemp(prefix="ubpg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        if ids is not None:
            os.chown(self.root, *ids)
        initdb = str(self.bin_dir / "initdb")
        pg_ctl = str(self.bin_dir / "pg_ctl")
        self._run([initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
                   "-E", "UTF8", "--locale=C"], "initdb", 120)
        self._run([pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                   "-o", f"-k {self.root} {SERVER_OPTIONS}", "start"], "pg_ctl start", 90)
        self._start_watchdog(pg_ctl)
        atexit.register(self.stop)
        self.url = f"postgresql://postgres@{quote(str(self.root), safe='')}/postgres"
        return self

    def _start_watchdog(self, pg_ctl: str) -> None:
        """A process that stops the server once our end of its stdin closes: when this process
        ends in any way, a SIGKILL included, the server does not outlive it."""
        stop = _as_server_user([pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"])
        code = ("import subprocess, sys, shutil\n"
                "sys.stdin.buffer.read()\n"
                f"subprocess.run({stop!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                f"shutil.rmtree({str(self.root)!r}, ignore_errors=True)\n")
        self._watchdog = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)

    def running(self) -> bool:
        if self.root is None or self._stopped:
            return False
        out = subprocess.run(_as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"]),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return out.returncode == 0

    def stop(self) -> None:
        if self._stopped or self.root is None:
            return
        self._stopped = True
        subprocess.run(_as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                        "-w", "stop"]),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self._watchdog is not None:
            self._watchdog.stdin.close()  # nothing left for it to stop; it removes the folder
            try:
                self._watchdog.wait(30)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> Server:
    """Start a throwaway server (``ServerUnavailable`` when PostgreSQL is not installed or
    does not start)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise ServerUnavailable("PostgreSQL is not installed (no initdb / pg_ctl on PATH or in "
                                "/usr/lib/postgresql/*/bin)", installed=False)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ServerUnavailable("psycopg is not installed (pip install '.[postgres]')", installed=False) from None
    server = Server(bin_dir)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


# -- databases on a server -----------------------------------------------------------------

def with_database(url: str, name: str) -> str:
    """``url`` naming the database ``name`` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def database_of(url: str) -> str:
    from urllib.parse import unquote

    return unquote(urlsplit(url).path.lstrip("/")) or "postgres"


_counter = 0
_counter_lock = threading.Lock()


def database_name(hint: str) -> str:
    """A database name that says which test it is for (PostgreSQL keeps 63 bytes), unique in
    this process and across processes."""
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    slug = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_") or "db"
    suffix = f"_{os.getpid()}_{n}"
    return "t_" + slug[: 63 - 2 - len(suffix)] + suffix


def _admin(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=30)


def create_database(server_url: str, hint: str, *, template: str = "template0") -> str:
    """A new, empty database (a copy of ``template``) on the server; its URL."""
    from psycopg import sql

    name = database_name(hint)
    with _admin(server_url) as conn:
        for attempt in range(50):
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                               sql.Identifier(template)))
                break
            except Exception as e:  # the template in use by another CREATE DATABASE: wait a little
                if "is being accessed by other users" not in str(e) or attempt == 49:
                    raise
                time.sleep(0.05)
    return with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database ``url`` names, even with connections still open to it (a test that
    did not close its ledger)."""
    from psycopg import sql

    with _admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database_of(url))))


def execute(url: str, statement: str, args=None) -> list:
    """One statement on the database ``url`` names, in autocommit; its rows (if any)."""
    with _admin(url) as conn:
        cur = conn.execute(statement, args)
        return cur.fetchall() if cur.description else []


# -- ledger databases used again ---------------------------------------------------------------

_FINGERPRINT = """
SELECT (SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT nspname::text FROM pg_namespace
         WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema') t(x)),
       (SELECT string_agg(x, ',' ORDER BY x) FROM (
          SELECT table_schema || '.' || table_name || '.' || column_name || ':' || data_type || ':'
                 || is_nullable || ':' || COALESCE(column_default, '') || ':' || ordinal_position
            FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')) t(x)),
       (SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT indexdef FROM pg_indexes
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) t(x)),
       (SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint
         WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)) t(x)),
       (SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT tgname || ':' || tgenabled::text FROM pg_trigger
         WHERE NOT tgisinternal) t(x)),
       (SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT proname || ':' || md5(prosrc) FROM pg_proc
         WHERE pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)) t(x)),
       (SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT array_to_string(setconfig, ' ') FROM pg_db_role_setting s
          JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()) t(x))
"""


def fingerprint(url: str) -> tuple:
    """What a database's schema is: schemas, columns, indexes, constraints, triggers, functions,
    its own settings. Two ledgers with the same fingerprint and no rows are the same ledger."""
    return tuple(execute(url, _FINGERPRINT)[0])


def empty_ledger(server_url: str, url: str, keep: tuple[str, ...] = ("_migrations",)) -> None:
    """Every connection to the database ended, every table but ``keep`` emptied (immutability
    triggers bypassed: as a superuser, in replica mode), identities restarted."""
    execute(server_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (database_of(url),))
    with _admin(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> ALL(%s)", (list(keep),))]
        conn.execute("SET session_replication_role = replica")
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


class LedgerPool:
    """Migrated ledger databases for the suite's PostgreSQL pass: made from one migrated
    template (``CREATE DATABASE ... TEMPLATE``), and given back after use emptied (a few ms)
    instead of dropped and made again (hundreds of ms with the migrations). A database whose
    schema a test changed (a dropped trigger, an extra migration row, a setting) is dropped,
    not used again. ``reuse=False``: every ledger a new database from template0, migrating
    itself on first open, dropped after use (slower, for a suspicion about the pool)."""

    def __init__(self, server_url: str, *, reuse: bool = True):
        self.server_url = server_url
        self.reuse = reuse
        self.template: str | None = None
        self.expected: tuple | None = None
        self.migrations: list | None = None
        self.free: list[str] = []
        self.made = 0

    def _template(self) -> str:
        if self.template is None:
            from usagebill.ledger.postgres import open_pg

            url = create_database(self.server_url, "ledger_template")
            open_pg(url).close()
            self.template = database_of(url)
            self.expected = fingerprint(url)
            self.migrations = execute(url, "SELECT name, applied_at FROM _migrations ORDER BY name")
        return self.template

    def take(self, hint: str) -> str:
        if self.free:
            return self.free.pop()
        self.made += 1
        return create_database(self.server_url, hint, template=self._template() if self.reuse else "template0")

    def give_back(self, url: str) -> None:
        if self.reuse:
            try:
                empty_ledger(self.server_url, url)
                same = (fingerprint(url) == self.expected and
                        execute(url, "SELECT name, applied_at FROM _migrations ORDER BY name") == self.migrations)
            except Exception:
                same = False
            if same:
                self.free.append(url)
                return
        drop_database(self.server_url, url)

    def close(self) -> None:
        for url in self.free:
            drop_database(self.server_url, url)
        self.free.clear()
        if self.template is not None:
            drop_database(self.server_url, with_database(self.server_url, self.template))
