"""billing.toml files no one should write: huge, endless, deeply nested, hostile key names.
Each is one clear ConfigError (exit 1 on the CLI), never a traceback or a memory blow-up."""

import pytest

from usagebill.config import load_config
from usagebill.errors import ConfigError


def test_dev_zero_is_refused_quickly():
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config("/dev/zero")


@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000 + "]" * 5000,
    "a = " + "{b = " * 2000 + "1" + "}" * 2000,
])
def test_deep_nesting_is_a_config_error(tmp_path, text):
    p = tmp_path / "billing.toml"
    p.write_text(text)
    with pytest.raises(ConfigError):
        load_config(p)


def test_cli_refuses_them_in_one_escaped_line(runner, tmp_path):
    from click.testing import CliRunner

    from usagebill.cli import cli

    p = tmp_path / "evil.toml"
    p.write_text('[[plans]]\nname = "P"\nprices = [{ amount = 1, currency = "usd", interval = "month" }]\n'
                 '[plans.features."a\\u001b[31m\\nb"]\nprice_per_credit = 1\n')
    r = CliRunner().invoke(cli, ["--config", str(p), "config", "check"])
    assert r.exit_code == 1
    assert "\x1b" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = CliRunner().invoke(cli, ["--config", "/dev/zero", "config", "check"])
    assert r.exit_code == 1 and "larger than 1 MiB" in r.stderr


def test_a_number_of_5000_digits_is_a_config_error(tmp_path):
    p = tmp_path / "billing.toml"
    p.write_text("[[plans]]\nname = " + "1" * 5000 + "\n")
    with pytest.raises(ConfigError, match="4,300 digits"):
        load_config(p)
