"""The sandbox refuses an SDK pinned to an API version it was not built for (one clear line,
on the CLI too), and a broken billing engine fails loudly instead of silently losing routes."""

import sys

import pytest
import stripe

import usagebill.sandbox
from usagebill.sandbox import Sandbox, UnsupportedSDK
from usagebill.sandbox.compat import BUILT_FOR


def test_the_installed_sdk_is_the_one_the_sandbox_emulates():
    assert stripe.api_version in BUILT_FOR


def test_another_api_version_is_refused_with_one_clear_message(monkeypatch):
    monkeypatch.setattr(stripe, "api_version", "2099-01-01.future")
    with pytest.raises(UnsupportedSDK) as e:
        Sandbox()
    message = str(e.value)
    assert "\n" not in message
    assert "2099-01-01.future" in message and BUILT_FOR[0] in message and "stripe>=16.1,<17" in message


def test_cli_says_it_in_one_line_without_a_traceback(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from usagebill.cli import cli

    monkeypatch.setattr(stripe, "api_version", "2099-01-01.future")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    (tmp_path / "billing.toml").write_text(
        '[[plans]]\nname = "Pro"\nprices = [{ amount = 2000, currency = "usd", interval = "month" }]\n')
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "billing.toml"), "sync"])
    assert result.exit_code == 1, result.output
    assert "2099-01-01.future" in result.output and "Traceback" not in result.output


def test_a_broken_billing_engine_is_not_swallowed(monkeypatch):
    monkeypatch.delattr(usagebill.sandbox, "billing", raising=False)
    monkeypatch.setitem(sys.modules, "usagebill.sandbox.billing", None)  # its import now fails
    with pytest.raises(ImportError):
        Sandbox()
