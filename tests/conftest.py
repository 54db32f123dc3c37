import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "billing.toml.example"


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
