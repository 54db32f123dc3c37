"""A ledger this user may only read: reads work (status, balances, summary, history), a write
says "read-only" in one line. Run for real as another user (root drops to nobody); skipped
where that user cannot run this Python."""

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

import usagebill

pytestmark = pytest.mark.sqlite_only(reason="file permissions of the SQLite ledger and its WAL")

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3" if os.geteuid() == 0 else sys.executable


def _paths() -> list[str]:
    return [str(Path(usagebill.__file__).resolve().parent.parent), sysconfig.get_paths()["purelib"]]


def as_reader(*args, cwd):
    """Run the CLI as a user who may read the ledger but not write it."""
    code = f"import sys; sys.path[:0] = {_paths()!r}; from usagebill.cli import main; sys.argv[0] = 'usagebill'; main()"
    kwargs = {}
    if os.geteuid() == 0:
        kwargs["preexec_fn"] = lambda: (os.setgid(65534), os.setuid(65534))
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    return subprocess.run([PYTHON, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          **kwargs)


@pytest.fixture
def shared(runner, config_path):
    """A ledger written by its owner, then readable by everyone and writable by nobody else."""
    if os.geteuid() == 0 and (not os.path.exists(PYTHON) or
                              subprocess.run([PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                                             capture_output=True, text=True).stdout.strip() != str(sys.version_info[:2])):
        pytest.skip("no system Python of this version to run as another user")
    for args in (("sync",), ("customers", "add", "alice"), ("subscribe", "alice", "Pro"),
                 ("record", "alice", "api_calls", "5", "--no-push"), ("credits", "grant", "alice", "api_calls", "7")):
        r = runner(*args)
        assert r.exit_code == 0, r.output
    top = Path(tempfile.mkdtemp(prefix="usagebill-ro-"))
    os.chmod(top, 0o755)
    shutil.copy(config_path, top / "billing.toml")
    shutil.copytree(config_path.parent / ".usagebill", top / ".usagebill")
    for p in [top / "billing.toml", *(top / ".usagebill").iterdir()]:
        os.chmod(p, 0o644)
    os.chmod(top / ".usagebill", 0o755)
    probe = as_reader("--version", cwd=top)
    if probe.returncode != 0:
        shutil.rmtree(top)
        pytest.skip(f"another user cannot run this Python here: {probe.stderr.strip()[-200:]}")
    if os.geteuid() != 0:  # not root: take the write permission away from ourselves
        for p in [top / "billing.toml", *(top / ".usagebill").iterdir()]:
            os.chmod(p, 0o444)
        os.chmod(top / ".usagebill", 0o555)
    yield top
    os.chmod(top / ".usagebill", 0o755)
    shutil.rmtree(top)


def test_reads_work_and_a_write_says_read_only(shared):
    r = as_reader("status", "--json", cwd=shared)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pending"] == 1
    r = as_reader("credits", "balance", "alice", "api_calls", "--json", cwd=shared)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["balance"] == 107
    r = as_reader("summary", "alice", "--json", cwd=shared)
    assert r.returncode == 0, r.stderr
    r = as_reader("credits", "grant", "alice", "api_calls", "1", cwd=shared)
    assert r.returncode == 1 and "read-only for this user" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_reads_work_while_the_owner_is_writing(shared):
    import sqlite3

    owner = sqlite3.connect(shared / ".usagebill" / "ledger.db")  # keeps a -wal file in place
    owner.execute("PRAGMA journal_mode = WAL")
    owner.execute("SELECT COUNT(*) FROM customers").fetchone()
    for side in ("-wal", "-shm"):
        f = shared / ".usagebill" / f"ledger.db{side}"
        if f.exists():
            os.chmod(f, 0o644)
    try:
        r = as_reader("credits", "balance", "alice", "api_calls", "--json", cwd=shared)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["balance"] == 107
    finally:
        owner.close()
