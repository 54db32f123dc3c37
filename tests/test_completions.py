from pathlib import Path

import pytest

from usagebill.cli.completion_cmd import SHELLS, completion_script

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("shell", SHELLS)
def test_checked_in_completions_match_the_app(shell):
    checked_in = (ROOT / "completions" / f"usagebill.{shell}").read_text()
    assert checked_in == completion_script(shell), (
        f"completions/usagebill.{shell} is stale: run  usagebill completion {shell} > completions/usagebill.{shell}"
    )


def test_completion_command_prints_the_script(runner):
    r = runner("completion", "bash")
    assert r.exit_code == 0 and "_USAGEBILL_COMPLETE" in r.stdout


def test_completion_completes_commands(monkeypatch, capsys):
    from usagebill.cli import cli

    monkeypatch.setenv("_USAGEBILL_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "usagebill test")
    monkeypatch.setenv("COMP_CWORD", "1")
    with pytest.raises(SystemExit):
        cli.main(prog_name="usagebill")
    assert "testclock" in capsys.readouterr().out


def complete(config_path, line: str, shell: str = "bash") -> list[str]:
    """What the shell would offer for the last word of ``line`` (Click's completion protocol)."""
    import os
    import subprocess
    import sys

    words = line.split(" ")
    env = {**os.environ, "_USAGEBILL_COMPLETE": f"{shell}_complete", "COMP_WORDS": f"usagebill --config {config_path} {line}",
           "COMP_CWORD": str(len(words) + 2), "PYTHONPATH": str(ROOT)}
    if shell == "fish":  # fish passes the word being completed itself
        env["COMP_CWORD"] = words[-1]
    code = "import sys; from usagebill.cli import cli; cli(prog_name='usagebill')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    if shell == "bash":
        return [x.split(",", 1)[1] for x in out.stdout.splitlines() if x]
    return out.stdout.splitlines()


@pytest.fixture
def names(runner):
    runner("sync")
    clock = runner("testclock", "create", "--at", "2026-01-01", "--name", "january").stdout.strip()
    for who in ("alice", "albert", "bob"):
        runner("customers", "add", who, "--test-clock", clock)
        runner("subscribe", who, "Pro")
    runner("testclock", "advance", clock, "--to", "+1month2h")
    invoices = [i["id"] for i in __import__("json").loads(runner("invoices", "list", "alice", "--json").stdout)]
    return clock, invoices


@pytest.mark.sqlite_only(reason="completion reads the SQLite file itself, read-only")
def test_completion_offers_the_real_names_from_the_ledger(config_path, names):
    clock, invoices = names
    assert complete(config_path, "summary al") == ["albert", "alice"]
    assert complete(config_path, "credits balance ") == ["albert", "alice", "bob"]
    assert complete(config_path, "subscribe alice p") == ["Pro", "pay_as_you_go"]  # a name with spaces: its key
    assert complete(config_path, "record alice a") == ["api_calls", "ai_tokens"]
    assert complete(config_path, "summary alice --key e") == ["exports"]
    assert complete(config_path, "testclock advance ") == [clock]
    assert complete(config_path, "customers add carol --test-clock clock_") == [clock]
    assert invoices and complete(config_path, "invoices show in_") == invoices
    # zsh and fish get the clock's name as its description
    assert complete(config_path, "testclock show ", shell="zsh") == ["plain", clock, "january"]
    assert complete(config_path, "testclock show ", shell="fish") == [f"plain,{clock}\tjanuary"]


def test_completion_reads_the_ledger_without_stripe_or_writes(config_path, tmp_path):
    ledger = tmp_path / ".usagebill" / "ledger.db"
    assert complete(config_path, "summary a") == [] and not ledger.exists()  # no ledger: none made
    assert complete(tmp_path / "missing.toml", "subscribe alice ") == []  # no config: nothing, no traceback
