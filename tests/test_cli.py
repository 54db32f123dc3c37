import json
import re
from pathlib import Path

import click
import pytest

from usagebill.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def all_commands(group=cli, prefix=()):
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, path)


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in all_commands()])
def test_every_command_has_help_with_an_example_and_is_in_the_readme(runner, path):
    result = runner(*path.split(), "--help")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output and "usagebill" in result.output.split("Example:")[1]
    cmd = dict((" ".join(p), c) for p, c in all_commands())[path]
    if not isinstance(cmd, click.Group):
        assert re.search(rf"`usagebill {re.escape(path)}\b", README.read_text()), f"{path} missing from README"


def test_docs_example_through_the_cli(runner):
    assert runner("sync").exit_code == 0
    assert runner("customers", "add", "alice", "--email", "alice@example.com").exit_code == 0
    r = runner("subscribe", "alice", "Pro")
    assert r.exit_code == 0, r.output
    r = runner("record", "alice", "api_calls", "150", "--json")
    assert r.exit_code == 0, r.output
    event = json.loads(r.stdout)
    assert event["amount"] == 150 and event["key"] == "api_calls" and event["id"].startswith("ube_")
    r = runner("summary", "alice", "--key", "api_calls", "--json")
    s = json.loads(r.stdout)
    assert (s["total_amount"], s["estimated_cost"], s["currency"], s["formatted_cost"]) == (150, 1500, "usd", "$15.00")
    r = runner("summary", "alice")
    assert r.exit_code == 0 and r.stdout == "" and "$15.00" in r.stderr and "API Calls" in r.stderr


def test_stdout_is_data_only(runner):
    runner("sync")
    runner("customers", "add", "a")
    r = runner("subscribe", "a", "Pro")
    assert r.stdout == "" and "a is on Pro ($20.00/month)" in r.stderr


@pytest.mark.parametrize("args, code, message", [
    (["record", "nobody", "api_calls"], 1, "Error: unknown customer 'nobody'"),
    (["record", "a", "api_calls", "1.5"], 1, "smaller unit"),
    (["record", "a", "api_calls", "2", "--at", "soon"], 1, "not a time"),
    (["subscribe", "a", "Platinum"], 1, "unknown plan 'Platinum'"),
    (["credits", "consume", "a", "api_calls", "101"], 3, "not enough api_calls credits"),
    (["charge", "a", "nope", "1"], 1, "unknown feature 'nope'"),
    (["subscribe", "a", "Pro", "--interval", "daily"], 2, "Invalid value"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(runner, args, code, message):
    runner("sync")
    runner("customers", "add", "a")
    if args[0] != "subscribe":
        runner("subscribe", "a", "Pro")
    r = runner(*args)
    assert r.exit_code == code, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output
    if code != 2:
        assert len([x for x in r.stderr.strip().splitlines() if not x.startswith("usagebill: sandbox")]) == 1


def test_bad_config_is_one_line(tmp_path, runner, config_path):
    config_path.write_text('[[plans]]\nname = "Pro"\nprices = [{ amount = 1, currency = "usd", interval = "monthly" }]\n')
    r = runner("config", "check")
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        "Error: billing.toml:3: plans[0].prices[0].interval: must be one of week, month, year, "
        "not 'monthly' (did you mean 'month'?)"
    )


def test_missing_config(tmp_path):
    from click.testing import CliRunner

    r = CliRunner().invoke(cli, ["config", "check"])
    assert r.exit_code == 1 and "billing.toml: no such file" in r.stderr


def test_config_check_json(runner):
    r = runner("config", "check", "--json")
    data = json.loads(r.stdout)
    pro = data["plans"][0]
    assert pro["name"] == "Pro" and pro["prices"] == [{"amount": 2000, "currency": "usd", "interval": "month"}]
    assert pro["features"][0] == {
        "key": "api_calls", "display_name": "API Calls", "price_per_credit": "10", "track_usage": True,
        "credits": {"allocation": 100, "on_renewal": "reset"}, "auto_top_up": None,
    }


def test_env_vars_for_config_and_db(tmp_path, config_path, monkeypatch):
    from click.testing import CliRunner

    monkeypatch.setenv("USAGEBILL_CONFIG", str(config_path))
    monkeypatch.setenv("USAGEBILL_DB", str(tmp_path / "elsewhere.db"))
    r = CliRunner().invoke(cli, ["customers", "add", "e"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "elsewhere.db").exists()
    # a flag beats the env var
    r = CliRunner().invoke(cli, ["--db", str(tmp_path / "flag.db"), "customers", "list", "--json"])
    assert json.loads(r.stdout) == []


def test_default_ledger_is_beside_the_config(runner, config_path):
    runner("customers", "add", "x")
    assert (config_path.parent / ".usagebill" / "ledger.db").exists()


def test_credits_wallet_and_history(runner):
    runner("sync")
    runner("customers", "add", "t")
    runner("subscribe", "t", "Team", "--interval", "month")
    r = runner("credits", "grant", "t", "exports", "5", "--id", "g1", "--json")
    assert json.loads(r.stdout) == {"user_id": "t", "key": "exports", "delta": 5, "balance": 15, "replayed": False,
                                      "expires_at": None}
    r = runner("credits", "grant", "t", "exports", "5", "--id", "g1", "--json")
    assert json.loads(r.stdout)["replayed"] is True
    r = runner("credits", "consume", "t", "exports", "3", "--json")
    assert json.loads(r.stdout)["balance"] == 12
    r = runner("wallet", "top-up", "t", "250", "--json")
    assert json.loads(r.stdout) == {"user_id": "t", "currency": "usd", "delta": 250, "balance": 750, "replayed": False}
    r = runner("wallet", "consume", "t", "1000")
    assert r.exit_code == 0 and "balance -$2.50" in r.stderr
    r = runner("wallet", "history", "t", "--json")
    assert [e["delta"] for e in json.loads(r.stdout)] == [-1000, 250, 500]
    r = runner("credits", "history", "t", "exports", "--json")
    assert [e["reason"] for e in json.loads(r.stdout)] == ["consume", "grant", "plan_grant"]
    r = runner("charge", "t", "exports", "2", "--json")
    assert json.loads(r.stdout)["from_credits"] == 2


def test_customers_list_and_show(runner):
    runner("sync")
    runner("customers", "add", "b", "--email", "b@example.com")
    runner("customers", "add", "a")
    runner("subscribe", "a", "Pro")
    data = json.loads(runner("customers", "list", "--json").stdout)
    assert [c["user_id"] for c in data] == ["a", "b"]
    assert data[0]["subscription"]["plan"] == "Pro" and data[1]["subscription"] is None
    shown = json.loads(runner("customers", "show", "b", "--json").stdout)
    assert shown["email"] == "b@example.com"
    r = runner("customers", "add", "b", "--email", "other@example.com")
    assert r.exit_code == 1 and "exists with email" in r.stderr


def test_debug_shows_tracebacks(runner, monkeypatch):
    monkeypatch.setenv("USAGEBILL_DEBUG", "1")
    with pytest.raises(Exception, match="unknown customer"):
        runner("record", "ghost", "api_calls")


def test_python_dash_m(config_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "usagebill", "--config", str(config_path), "config", "check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stderr
