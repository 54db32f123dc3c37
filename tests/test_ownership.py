"""One ledger, one config: a second billing.toml pointed at a ledger is refused (it would
archive the first one's prices at sync); moving the whole project keeps working;
`config adopt` moves a ledger to a config on purpose."""

import json
import shutil

import pytest
from click.testing import CliRunner

from usagebill import Billing
from usagebill.cli import cli
from usagebill.errors import ConfigError


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


@pytest.mark.sqlite_only(reason="a PostgreSQL ledger records its config's file name only (usagebill/ownership.py): both are billing.toml")
def test_a_second_config_is_refused_and_can_adopt_on_purpose(tmp_path, config_path):
    db = tmp_path / "shared.db"
    assert run("--config", config_path, "--db", db, "sync").exit_code == 0
    other = tmp_path / "other" / "billing.toml"
    other.parent.mkdir()
    other.write_text(config_path.read_text().replace('name = "Pro"', 'name = "Pro Plus"'))
    r = run("--config", other, "--db", db, "sync", "--dry-run")
    assert r.exit_code == 1
    assert "belongs to the config" in r.stderr and "config adopt" in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("Error:")]) == 1
    # the library refuses it too
    try:
        Billing.open(other, db)
        raise AssertionError("opened a ledger of another config")
    except ConfigError:
        pass
    # on purpose: adopt, then the first config is the stranger
    r = run("--config", other, "--db", db, "config", "adopt", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["config"] == "other/billing.toml"
    assert run("--config", other, "--db", db, "sync", "--dry-run").exit_code == 0
    assert run("--config", config_path, "--db", db, "customers", "list").exit_code == 1


def test_moving_the_project_keeps_its_ledger(tmp_path, config_path):
    assert run("--config", config_path, "customers", "add", "alice").exit_code == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(str(config_path), moved / "billing.toml")
    shutil.move(str(tmp_path / ".usagebill"), moved / ".usagebill")
    r = run("--config", moved / "billing.toml", "customers", "list", "--json")
    assert r.exit_code == 0, r.output
    assert [c["user_id"] for c in json.loads(r.stdout)] == ["alice"]
