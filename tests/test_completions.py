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
