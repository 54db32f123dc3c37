"""Shared fixtures, and the ledger backend the suite runs on.

``--backend=sqlite`` (the default) or ``--backend=postgres`` (or ``USAGEBILL_TEST_BACKEND``):
on PostgreSQL every ledger a test opens by path, in this process (the library and CliRunner),
is opened instead as an empty, migrated PostgreSQL database on the session's throwaway server,
one per distinct path within a test (``PgLedgers``). Tests about SQLite files themselves
carry the ``sqlite_only`` mark and are skipped there; tests that pick their backends
themselves (``own_backend``: tests/race/...) run in the default pass only.
``pg_server_url`` / ``pg_url`` are for tests that want PostgreSQL whatever the backend
(tests/pgserver.py starts the server)."""

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests import pgserver

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "billing.toml.example"
BACKENDS = ("sqlite", "postgres")


def pytest_addoption(parser):
    parser.addoption(
        "--backend", choices=BACKENDS, default=None,
        help="the ledger backend the suite runs on (default: $USAGEBILL_TEST_BACKEND, else sqlite); "
             "postgres starts a throwaway server, or uses $USAGEBILL_TEST_PG_URL",
    )


def backend_of(config) -> str:
    chosen = config.getoption("--backend") or os.environ.get("USAGEBILL_TEST_BACKEND") or "sqlite"
    if chosen not in BACKENDS:
        raise pytest.UsageError(f"USAGEBILL_TEST_BACKEND={chosen!r}: expected one of {', '.join(BACKENDS)}")
    return chosen


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def pg_backend_present() -> bool:
    """The PostgreSQL backend module is in this checkout (``usagebill/ledger/postgres.py``)."""
    import importlib.util

    return importlib.util.find_spec("usagebill.ledger.postgres") is not None


def pytest_configure(config):
    if backend_of(config) == "postgres" and not pg_backend_present():
        raise pytest.UsageError("--backend=postgres: usagebill.ledger.postgres (the PostgreSQL backend) is not in this checkout")


def pytest_report_header(config):
    return f"ledger backend: {backend_of(config)}"


def pytest_collection_modifyitems(config, items):
    if backend_of(config) != "postgres":
        return
    # the race tests run on both backends in every pass: not again on this one
    own = [item for item in items if item.get_closest_marker("own_backend") is not None]
    if own:
        config.hook.pytest_deselected(items=own)
        items[:] = [item for item in items if item.get_closest_marker("own_backend") is None]
    for item in items:
        mark = item.get_closest_marker("sqlite_only")
        if mark is not None:
            why = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "about SQLite files")
            item.add_marker(pytest.mark.skip(reason=f"sqlite_only: {why}"))


# -- PostgreSQL --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server_url():
    """The URL of a PostgreSQL server's maintenance database, for the whole session:
    ``USAGEBILL_TEST_PG_URL``, else a throwaway server started now. Skips the test when
    PostgreSQL is not installed or does not start, unless ``CI=true``: then it fails, with the
    server's log."""
    given = os.environ.get(pgserver.ENV_URL)
    if given:
        yield given
        return
    try:
        server = pgserver.start_server()
    except pgserver.ServerUnavailable as e:
        if in_ci():
            pytest.fail(f"CI=true and no PostgreSQL server for the tests: {e}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {str(e).splitlines()[0]}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server_url, request):
    """A fresh, empty database for this test (named after it), dropped afterwards."""
    url = pgserver.create_database(pg_server_url, request.node.name)
    yield url
    pgserver.drop_database(pg_server_url, url)


class PgLedgers:
    """What ``_open_sqlite`` becomes on the PostgreSQL pass: a path's ledger is a database of
    its own, taken from the session's pool of migrated, empty ledger databases on the path's
    first open (``pgserver.LedgerPool``), given back at the end of the test. The path still
    gets its file (empty, mode 0600, as SQLite would create it), so what looks for the
    ledger's file finds it, and the file is what names the database (in an extended
    attribute, else by its inode): opened again, or after its folder was moved, it is the same
    ledger; deleted, the next open makes a new one, as on SQLite. A ``:memory:`` ledger is a
    database of its own too, given back when it is closed. ``ledger.path`` stays the path the
    test gave, so what lives beside the ledger (the sandbox's state) and what messages name
    are as on SQLite (the backend's own rules for a URL ledger, such as the sandbox beside the
    config, are tested with real URLs: tests/test_pg_cli.py, test_postgres_selection.py)."""

    XATTR = "user.usagebill_test_database"

    def __init__(self, pool: pgserver.LedgerPool, hint: str):
        self.pool = pool
        self.hint = hint
        self.by_inode: dict[tuple[int, int], str] = {}
        self.taken: list[str] = []

    def _take(self) -> str:
        url = self.pool.take(self.hint)
        self.taken.append(url)
        return url

    def url_for(self, path: str) -> str:
        from usagebill.errors import LedgerError

        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
            st = os.stat(p)
        except OSError as e:
            raise LedgerError(f"{path}: cannot create the ledger: {e.strerror}") from None
        try:
            url = pgserver.with_database(self.pool.server_url, os.getxattr(p, self.XATTR).decode())
            if url in self.taken:
                return url
        except OSError:
            pass
        key = (st.st_dev, st.st_ino)
        url = self.by_inode.get(key)
        if url is None:
            url = self._take()
            try:
                os.setxattr(p, self.XATTR, pgserver.database_of(url).encode())
            except OSError:  # no extended attributes here: the inode alone names it
                self.by_inode[key] = url
        return url

    def open(self, path: str):
        from usagebill.ledger.postgres import open_pg

        if path != ":memory:":
            ledger = open_pg(self.url_for(path))
            ledger.path = path
            return ledger
        url = self._take()
        ledger = open_pg(url)
        ledger.path = path
        close = ledger.close

        def close_and_give_back():
            close()
            if url in self.taken:
                self.taken.remove(url)
                self.pool.give_back(url)

        ledger.close = close_and_give_back
        return ledger

    def give_back_all(self) -> None:
        for url in self.taken:
            self.pool.give_back(url)
        self.taken.clear()


@pytest.fixture(scope="session")
def _pg_ledger_pool(pg_server_url):
    """The PostgreSQL pass's ledger databases (``USAGEBILL_TEST_PG_REUSE=0``: each one new,
    migrating itself, dropped after use)."""
    pool = pgserver.LedgerPool(pg_server_url, reuse=os.environ.get("USAGEBILL_TEST_PG_REUSE", "1") != "0")
    yield pool
    pool.close()


@pytest.fixture(autouse=True)
def _ledger_backend(request, monkeypatch):
    """On ``--backend=postgres``: ledgers opened by path are PostgreSQL databases (PgLedgers)."""
    if backend_of(request.config) != "postgres":
        yield None
        return
    ledgers = PgLedgers(request.getfixturevalue("_pg_ledger_pool"), request.node.name)
    import usagebill.ledger.db as db

    monkeypatch.setattr(db, "_open_sqlite", ledgers.open)
    yield ledgers
    ledgers.give_back_all()


# -- the fixtures every test uses -----------------------------------------------------------

@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test in its own folder, with no config, ledger or Stripe key from the outside."""
    for var in ("USAGEBILL_CONFIG", "USAGEBILL_DB", "STRIPE_API_KEY", "USAGEBILL_DEBUG", "USAGEBILL_FORCE_TTY",
                "USAGEBILL_SANDBOX_FAULTS", "USAGEBILL_SANDBOX_VISIBILITY_DELAY", "USAGEBILL_SANDBOX_DB"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def terminal(monkeypatch):
    """stdout as a 120-column terminal (USAGEBILL_FORCE_TTY), for the output people read."""
    monkeypatch.setenv("USAGEBILL_FORCE_TTY", "120")
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "billing.toml"
    shutil.copy(EXAMPLE, path)
    return path


@pytest.fixture
def billing(config_path):
    from usagebill import Billing

    b = Billing.open(config_path)
    yield b
    b.close()


@pytest.fixture
def runner(config_path):
    from usagebill.cli import cli

    r = CliRunner()

    def invoke(*args, input=None):
        return r.invoke(cli, ["--config", str(config_path), *map(str, args)], input=input, catch_exceptions=False)

    return invoke
