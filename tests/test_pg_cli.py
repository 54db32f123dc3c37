"""The CLI in a process of its own on a PostgreSQL ledger (``--db URL`` / ``USAGEBILL_DB``),
sharing it with this process's library: what one writes the other reads. The suite's
PostgreSQL pass runs in-process ledgers only; these are its subprocess cases."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import pg_backend_present
from usagebill import Billing

pytestmark = pytest.mark.own_backend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(pg_url):
    if not pg_backend_present():
        pytest.skip("the PostgreSQL backend (usagebill/ledger/postgres.py) is not in this checkout")
    return pg_url


def cli(config_path, *args, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "usagebill", "--config", str(config_path), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_record_no_push_on_a_url_ledger_does_not_import_stripe(url, config_path, tmp_path):
    with Billing.open(config_path, url) as b:
        b.customers.add("alice")
        b.subscriptions.start("alice", "Pro")
    code = (
        "import sys; from usagebill.cli import cli\n"
        f"cli(['--config', {str(config_path)!r}, 'record', 'alice', 'api_calls', '2', '--no-push'], standalone_mode=False)\n"
        "print('stripe' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "USAGEBILL_DB": url}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "False"
    with Billing.open(config_path, url) as b:
        assert b.usage.get_summary("alice", "api_calls").total_amount == 2


def test_the_cli_and_the_library_share_a_url_ledger(url, config_path, tmp_path):
    for args in (("sync",), ("customers", "add", "bob")):
        r = cli(config_path, "--db", url, *args, "--json")
        assert r.returncode == 0, r.stderr
    r = cli(config_path, "subscribe", "bob", "Pro", "--json", env={"USAGEBILL_DB": url})
    assert r.returncode == 0, r.stderr
    # with a URL ledger the sandbox's state is beside the config (no folder of the ledger's own)
    assert (config_path.parent / ".usagebill" / "sandbox.db").exists()
    assert not (tmp_path / ".usagebill" / "ledger.db").exists()  # no SQLite ledger was made
    with Billing.open(config_path, url) as b:
        assert b.subscriptions.active("bob").stripe_subscription_id.startswith("sub_")
        b.credits.grant("bob", "api_calls", 5)
    r = cli(config_path, "--db", url, "credits", "balance", "bob", "api_calls", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["balance"] == 105
