"""Fuzzing: mutated billing.toml files and hostile command lines. Whatever comes in, the
answer is a valid config or one ConfigError; on the CLI one line on stderr and exit 1 or 2,
never a traceback."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usagebill.cli import cli
from usagebill.config import Config, load_config
from usagebill.errors import ConfigError

EXAMPLE = (Path(__file__).resolve().parent.parent / "billing.toml.example").read_text()
LINES = EXAMPLE.splitlines()

HOSTILE_VALUES = [
    "0", "-1", "2.0", "1e30", '"1e30"', '"10"', "9223372036854775808", "1" * 5000, "nan", "inf", "-inf",
    "true", '""', '"\u202e"', '"\x1b[31m"', "[]", "{}", "[[[[[[]]]]]]", "0.0000000000001", "1_000",
    "2026-01-01T00:00:00Z", '"usd"', '"USD"', '"xxx"', '"month"', '"fortnight"', '"reset"', '"add"',
    "{ allocation = -5 }", "{ threshold = 1e30, amount = 0 }", "[" * 3000 + "]" * 3000,
]
HOSTILE_KEYS = ["api_calls", "x.y", '"a\nb"', '"\u200b"', '"' + "k" * 300 + '"', "1", '"plans"', "price_per_credit"]


@st.composite
def mutated(draw):
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "key", "drop", "dup", "bytes", "truncate"]))
        line = lines[i]
        if kind == "value" and "=" in line:
            lines[i] = line.split("=", 1)[0] + "= " + draw(st.sampled_from(HOSTILE_VALUES))
        elif kind == "key" and "=" in line:
            lines[i] = draw(st.sampled_from(HOSTILE_KEYS)) + " =" + line.split("=", 1)[1]
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, line)
        elif kind == "bytes":
            pos = draw(st.integers(0, max(len(line), 1)))
            lines[i] = line[:pos] + draw(st.text(max_size=5)) + line[pos:]
        elif kind == "truncate":
            lines = lines[: i + 1]
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated())
def test_a_mutated_config_is_valid_or_one_config_error(tmp_path, text):
    p = tmp_path / "billing.toml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        assert isinstance(load_config(p), Config)
    except ConfigError as e:
        assert str(e)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated())
def test_config_check_answers_in_one_line(tmp_path, text):
    p = tmp_path / "billing.toml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    r = CliRunner().invoke(cli, ["--config", str(p), "config", "check"])
    assert r.exit_code in (0, 1), (r.exit_code, r.output, r.exception)
    if r.exit_code:
        errors = [x for x in r.stderr.splitlines() if x.startswith("Error:")]
        assert len(errors) == 1 and "\x1b" not in r.stderr, r.stderr


COMMANDS = [
    ["record"], ["charge"], ["summary"], ["credits", "balance"], ["credits", "grant"], ["credits", "consume"],
    ["credits", "history"], ["wallet", "top-up"], ["wallet", "consume"], ["wallet", "balance"], ["customers", "add"],
    ["customers", "show"], ["status"], ["push"], ["reconcile"], ["testclock", "create"], ["testclock", "advance"],
    ["invoices", "show"], ["subscribe"], ["cancel"], ["import"],
]
TOKENS = [
    "alice", "api_calls", "exports", "Pro", "1", "0", "-1", "2.0", "1e3", "1_000", "\u0661\u0662", "9" * 5000,
    str(2**63), "999999999999", "--at", "--id", "--json", "--to", "+1month", "+99999999y", "--help", "--", "",
    " ", "\x1b[2J", "\u202e", "a" * 10000, "clock_nope", "in_nope", "-", "--no-push", "--expires", "nan",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd=st.sampled_from(COMMANDS), args=st.lists(st.sampled_from(TOKENS), max_size=5))
def test_hostile_command_lines_never_crash(config_path, cmd, args):
    r = CliRunner().invoke(cli, ["--config", str(config_path), *cmd, *args], input="")
    assert r.exception is None or isinstance(r.exception, SystemExit), (cmd, args, r.exception)
    assert r.exit_code in (0, 1, 2, 3, 4, 5), (cmd, args, r.output)
    assert "Traceback" not in r.output
    if r.exit_code in (1, 2):
        assert "\x1b" not in r.stderr and "\u202e" not in r.stderr, r.stderr
        errors = [x for x in r.stderr.splitlines() if x.startswith("Error:")]
        assert len(errors) == 1, r.stderr
        assert len(errors[0]) < 1200
