"""The PostgreSQL test harness itself (tests/pgserver.py and the fixtures in conftest.py): a
throwaway server starts and stops and never outlives the tests, each test gets a fresh database
named after it, and with CI=true a server that does not start fails the run."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests import pgserver
from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.own_backend  # PostgreSQL whatever the backend: once per CI run


def need_binaries():
    if pgserver.find_bin_dir() is None:
        if in_ci():
            pytest.fail("CI=true and PostgreSQL is not installed")
        pytest.skip("PostgreSQL is not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        if in_ci():
            pytest.fail("CI=true and psycopg is not installed")
        pytest.skip("psycopg is not installed")


def test_the_server_answers_and_is_15_or_newer(pg_server_url):
    (version,) = pgserver.execute(pg_server_url, "SHOW server_version_num")[0]
    assert int(version) >= 150000


def test_a_fresh_database_per_test_named_after_it(pg_url, pg_server_url, request):
    name = pgserver.database_of(pg_url)
    assert name.startswith("t_test_a_fresh_database_per_test") and len(name) <= 63
    assert pgserver.execute(pg_url, "SELECT current_database()") == [(name,)]
    tables = pgserver.execute(pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    assert tables == []
    other = pgserver.create_database(pg_server_url, request.node.name)
    assert other != pg_url
    pgserver.drop_database(pg_server_url, other)
    assert pgserver.execute(pg_server_url, "SELECT 1 FROM pg_database WHERE datname = %s",
                            (pgserver.database_of(other),)) == []


def test_database_names_are_unique_and_fit():
    long = "test_" + "x" * 200 + "[sqlite-Pro]"
    names = {pgserver.database_name(long) for _ in range(100)}
    assert len(names) == 100
    assert all(len(n) <= 63 and n.replace("_", "").isalnum() for n in names)


def test_a_server_starts_and_stops_leaving_nothing(tmp_path):
    need_binaries()
    started = time.monotonic()
    server = pgserver.start_server()
    took = time.monotonic() - started
    root = server.root
    try:
        assert server.running()
        assert pgserver.execute(server.url, "SELECT 1") == [(1,)]
        assert "listen_addresses" not in server.url and server.url.startswith("postgresql://postgres@%2F")
        assert pgserver.execute(server.url, "SHOW fsync") == [("off",)]
        assert pgserver.execute(server.url, "SHOW listen_addresses") == [("",)]
    finally:
        server.stop()
    assert not server.running()
    assert not root.exists()
    assert took < 30, f"the server took {took:.1f} s to start"


def test_the_server_does_not_outlive_a_killed_test_process(tmp_path):
    """A SIGKILL gives no finalizer nor atexit a chance: the watchdog stops the server."""
    need_binaries()
    code = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, sys.argv[1])
        from tests import pgserver
        server = pgserver.start_server()
        print(server.root, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        root = Path(proc.stdout.readline().strip())
        assert (root / "data" / "postmaster.pid").exists()
        pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (root.exists() or _alive(pid)):
        time.sleep(0.1)
    assert not _alive(pid), "the server is still running after its test process died"
    assert not root.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not running
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _run_with_a_server_that_fails(tmp_path, ci: bool):
    """pytest in a subprocess, on one test that needs the server, with an initdb / pg_ctl
    first on PATH that cannot start anything."""
    import tempfile

    fake = Path(tempfile.mkdtemp(prefix="ubpg-fake-"))  # not under tmp_path: the postgres user must reach it
    fake.chmod(0o755)
    (fake / "initdb").write_text("#!/bin/sh\necho 'initdb: the fake one'\nexit 0\n")
    (fake / "pg_ctl").write_text(
        "#!/bin/sh\n"
        "for a; do case $prev in -l) echo 'FATAL:  could not create lock file (a fake server)' > \"$a\";; esac; prev=$a; done\n"
        "echo 'pg_ctl: could not start server'\nexit 1\n"
    )
    for f in fake.iterdir():
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in (pgserver.ENV_URL, "CI", "PYTEST_ADDOPTS")}
    env["PATH"] = f"{fake}:{env.get('PATH', '/usr/bin:/bin')}"
    if ci:
        env["CI"] = "true"
    test = "tests/test_pgserver.py::test_the_server_answers_and_is_15_or_newer"
    try:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(fake, ignore_errors=True)


def test_with_ci_a_server_that_does_not_start_fails_the_run_with_its_log(tmp_path):
    if os.geteuid() == 0:
        need_binaries()  # as root: the postgres OS user must exist for the fake to be reached
    r = _run_with_a_server_that_fails(tmp_path, ci=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "CI=true and no PostgreSQL server" in r.stdout
    assert "pg_ctl start exited 1" in r.stdout
    assert "could not create lock file (a fake server)" in r.stdout  # the server's log


def test_without_ci_a_server_that_does_not_start_skips(tmp_path):
    if os.geteuid() == 0:
        need_binaries()
    r = _run_with_a_server_that_fails(tmp_path, ci=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 skipped" in r.stdout and "no PostgreSQL server" in r.stdout


# -- the PostgreSQL pass's ledgers (conftest.PgLedgers over pgserver.LedgerPool) ----------------

@pytest.fixture
def pool(pg_server_url):
    from tests.conftest import pg_backend_present

    if not pg_backend_present():
        pytest.skip("the PostgreSQL backend (usagebill/ledger/postgres.py) is not in this checkout")
    p = pgserver.LedgerPool(pg_server_url)
    yield p
    p.close()


def test_a_path_is_one_ledger_moved_or_reopened_and_a_new_one_once_deleted(pool, tmp_path):
    from tests.conftest import PgLedgers

    ledgers = PgLedgers(pool, "paths")
    first = ledgers.open(str(tmp_path / "a" / "ledger.db"))
    first.execute("INSERT INTO customers (user_id, created_at) VALUES ('kept', 1)")
    first.close()
    assert (tmp_path / "a" / "ledger.db").stat().st_mode & 0o777 == 0o600
    again = ledgers.open(str(tmp_path / "a" / "ledger.db"))
    assert again.path == str(tmp_path / "a" / "ledger.db")  # messages and the sandbox's place as on SQLite
    assert [r[0] for r in again.all("SELECT user_id FROM customers")] == ["kept"]
    again.close()
    (tmp_path / "a").rename(tmp_path / "b")
    moved = ledgers.open(str(tmp_path / "b" / "ledger.db"))
    assert [r[0] for r in moved.all("SELECT user_id FROM customers")] == ["kept"]
    moved.close()
    (tmp_path / "b" / "ledger.db").unlink()
    fresh = ledgers.open(str(tmp_path / "b" / "ledger.db"))
    assert fresh.all("SELECT user_id FROM customers") == []
    other = ledgers.open(str(tmp_path / "c.db"))
    assert other.all("SELECT user_id FROM customers") == []
    fresh.close(), other.close()
    assert len(ledgers.taken) == 3
    ledgers.give_back_all()
    assert len(pool.free) == 3 and pool.made == 3


def test_a_ledger_database_given_back_is_empty_and_used_again(pool):
    url = pool.take("reuse")
    from usagebill.ledger.postgres import open_pg

    ledger = open_pg(url)
    with ledger.transaction(customer="u"):
        ledger.execute("INSERT INTO customers (user_id, created_at) VALUES ('u', 1)")
        ledger.execute("INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, source) "
                       "VALUES ('e1', 'u', 'api_calls', 3, 1, 1, 'record')")
    # left open, as a test may leave it: giving it back ends the connection
    pool.give_back(url)
    assert pool.free == [url] and pool.take("again") == url
    ledger = open_pg(url)
    assert ledger.one("SELECT COUNT(*) FROM usage_events")[0] == 0
    assert ledger.one("SELECT COUNT(*) FROM customers")[0] == 0
    assert ledger.one("SELECT COUNT(*) FROM _migrations")[0] > 0
    ledger.execute("INSERT INTO customers (user_id, created_at) VALUES ('u', 1)")
    ledger.execute("INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, source) "
                   "VALUES ('e1', 'u', 'api_calls', 3, 1, 1, 'record')")
    assert ledger.one("SELECT seq FROM usage_events")[0] == 1  # identities restarted too
    ledger.close()
    pool.give_back(url)


@pytest.mark.parametrize("change", [
    "DROP TRIGGER usage_events_no_update ON usage_events",
    "INSERT INTO _migrations VALUES ('m999_future', 0)",
    "CREATE INDEX extra ON customers (created_at)",
    "ALTER TABLE customers ADD COLUMN extra TEXT",
])
def test_a_ledger_database_whose_schema_a_test_changed_is_dropped_not_used_again(pool, change):
    url = pool.take("changed")
    from usagebill.ledger.postgres import open_pg

    open_pg(url).close()
    if "TRIGGER" in change:  # the trigger's name as the schema has it
        (name,) = pgserver.execute(url, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND "
                                        "tgrelid = 'usage_events'::regclass ORDER BY tgname LIMIT 1")[0]
        change = f'DROP TRIGGER "{name}" ON usage_events'
    pgserver.execute(url, change)
    pool.give_back(url)
    assert pool.free == []
    assert pgserver.execute(pool.server_url, "SELECT 1 FROM pg_database WHERE datname = %s",
                            (pgserver.database_of(url),)) == []
