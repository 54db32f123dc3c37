"""What each command prints and where (issue 12): piped, the exact tab-separated lines scripts
parse (golden text) and nothing but the banner on stderr; on a terminal (USAGEBILL_FORCE_TTY),
rich tables that keep amounts and ids whole at 40 columns; NO_COLOR without one escape code."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LONG_ID = "customer-imported-from-the-crm-with-a-very-long-identifier-0001234567"


def J(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def banner_only(r) -> bool:
    """stderr free of data: the "which Stripe" banner, notes and verdicts at most."""
    return all(line.startswith(("usagebill: ", "Note: ", "Warning: ", "Stripe matches "))
               for line in r.stderr.splitlines())


def piped(runner, *args) -> str:
    r = runner(*args)
    assert r.exit_code == 0, r.output
    assert banner_only(r), r.stderr
    return r.stdout


@pytest.fixture
def world(runner):
    """alice on Pro and bob on Pay As You Go, both on a test clock from 2026-01-01, with usage
    on three days of January; the clock on Jan 3, 12:00."""
    assert runner("sync").exit_code == 0
    clock = runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--name", "jan").stdout.strip()
    for who in ("alice", "bob"):
        assert runner("customers", "add", who, "--email", f"{who}@example.com", "--test-clock", clock).exit_code == 0
    assert runner("subscribe", "alice", "pro").exit_code == 0  # any case resolves the plan
    assert runner("subscribe", "bob", "PAY AS YOU GO").exit_code == 0
    assert runner("testclock", "advance", clock, "--to", "2026-01-03T12:00:00Z").exit_code == 0
    for who, amount, at in (("alice", 40, "2026-01-01T10:00:00Z"), ("alice", 60, "2026-01-02T09:00:00Z"),
                            ("alice", 50, "2026-01-03T11:00:00Z"), ("bob", 500, "2026-01-02T08:00:00Z")):
        assert runner("record", who, "api_calls", amount, "--at", at).exit_code == 0
    return clock


# -- piped: golden text ------------------------------------------------------------------------

def test_config_check_piped(runner):
    assert piped(runner, "config", "check") == (
        "plan\tfeature\tprices\tdisplay_name\tper_unit\tcredits\tnotes\n"
        "Pro\t\t$20.00/month\t\t\t\t\n"
        "Pro\tapi_calls\t\tAPI Calls\t$0.10 usage\t100 (reset)\t\n"
        "Pay As You Go\t\t$0.00/month\t\t\t\t\n"
        "Pay As You Go\tapi_calls\t\tAPI Calls\t$0.05 usage\t\t\n"
        "Team\t\t$50.00/month, $500.00/year\t\t\t\twallet 500 (add)\n"
        "Team\tapi_calls\t\tAPI Calls\t$0.08 usage\t\t\n"
        "Team\tai_tokens\t\tAI Tokens\t$0.005 usage\t\t\n"
        "Team\texports\t\tExports\t$0.25 credits\t10 (add)\tauto top-up 10 below 2\n"
    )


def test_created_ids_alone_when_piped(runner, world):
    r = runner("record", "alice", "api_calls", "1")
    assert re.fullmatch(r"ube_[0-9a-f]{32}\n", r.stdout) and banner_only(r)
    assert re.fullmatch(r"cus_\w+\n", runner("customers", "add", "carol").stdout)
    assert re.fullmatch(r"sub_\w+\n", runner("subscribe", "carol", "Pro").stdout)
    assert re.fullmatch(r"clock_\w+\n", runner("testclock", "create").stdout)


def test_clock_id_captured_by_a_shell(config_path, tmp_path):
    """CLOCK=$(usagebill testclock create ...) works: the id alone on stdout."""
    script = (f'CLOCK=$("{sys.executable}" -m usagebill --config "{config_path}" testclock create --at 2026-01-01) '
              f'&& "{sys.executable}" -m usagebill --config "{config_path}" testclock show "$CLOCK" --json')
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    clock = json.loads(out.stdout)
    assert clock["id"].startswith("clock_") and clock["frozen_time"] == "2026-01-01T00:00:00Z"


def test_customers_list_and_show_piped(runner, world):
    data = {c["user_id"]: c for c in J(runner("customers", "list", "--json"))}
    a, b = data["alice"], data["bob"]
    assert piped(runner, "customers", "list") == (
        "user_id\temail\tplan\tstripe_customer_id\tstripe_subscription_id\n"
        f"alice\talice@example.com\tPro\t{a['stripe_customer_id']}\t{a['subscription']['stripe_subscription_id']}\n"
        f"bob\tbob@example.com\tPay As You Go\t{b['stripe_customer_id']}\t{b['subscription']['stripe_subscription_id']}\n"
    )
    assert piped(runner, "customers", "list", "--no-header").startswith("alice\talice@example.com\tPro\t")
    assert piped(runner, "customers", "show", "alice") == (
        "field\tvalue\n"
        "user_id\talice\n"
        "email\talice@example.com\n"
        f"stripe_customer_id\t{a['stripe_customer_id']}\n"
        f"test_clock\t{world}\n"
        f"created_at\t{a['created_at']}\n"
        "plan\tPro (month, usd)\n"
        "period\t2026-01-01T00:00:00Z .. 2026-02-01T00:00:00Z\n"
        f"stripe_subscription_id\t{a['subscription']['stripe_subscription_id']}\n"
        "in_stripe\ttrue\n"
    )


def test_summary_piped_csv_and_json(runner, world):
    assert piped(runner, "summary", "alice") == (
        "key\tdisplay_name\tunits\tunit_price\testimated_cost\tincluded_credits\tperiod_start\tperiod_end\n"
        "api_calls\tAPI Calls\t150\t$0.10\t$15.00\t100\t2026-01-01T00:00:00Z\t2026-02-01T00:00:00Z\n"
    )
    assert piped(runner, "summary", "alice", "--daily") == (
        "key\tstart\tend\tunits\testimated_cost\n"
        "api_calls\t2026-01-01T00:00:00Z\t2026-01-02T00:00:00Z\t40\t$4.00\n"
        "api_calls\t2026-01-02T00:00:00Z\t2026-01-03T00:00:00Z\t60\t$6.00\n"
        "api_calls\t2026-01-03T00:00:00Z\t2026-01-04T00:00:00Z\t50\t$5.00\n"
    )
    assert piped(runner, "summary", "alice", "--by", "week", "--csv") == (
        "user_id,key,start,end,units,estimated_cost,currency\n"
        # 2026-01-01 is a Thursday: the first week is clipped to the period's start
        "alice,api_calls,2026-01-01T00:00:00Z,2026-01-05T00:00:00Z,150,1500,usd\n"
    )
    assert piped(runner, "summary", "bob", "--csv") == (
        "user_id,key,start,end,units,estimated_cost,currency\n"
        "bob,api_calls,2026-01-01T00:00:00Z,2026-02-01T00:00:00Z,500,2500,usd\n"
    )


def test_summary_json_has_one_shape_with_or_without_key(runner, world):
    every, one = J(runner("summary", "alice", "--json")), J(runner("summary", "alice", "--key", "api_calls", "--json"))
    assert every == one == {
        "user_id": "alice", "plan": "Pro", "currency": "usd", "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-02-01T00:00:00Z", "by": None,
        "features": [{"key": "api_calls", "display_name": "API Calls", "total_amount": 150, "estimated_cost": 1500,
                      "formatted_cost": "$15.00", "unit_price": "10", "events": 3,
                      "included_credits": {"allocation": 100, "on_renewal": "reset", "balance": 100}}],
    }
    daily = J(runner("summary", "alice", "--daily", "--json"))
    assert daily["by"] == "day" and [(b["start"], b["units"], b["estimated_cost"]) for b in daily["features"][0]["series"]] == [
        ("2026-01-01T00:00:00Z", 40, 400), ("2026-01-02T00:00:00Z", 60, 600), ("2026-01-03T00:00:00Z", 50, 500)]


def test_top_piped(runner, world):
    assert piped(runner, "top") == (
        "rank\tuser_id\tplan\tunits\testimated_cost\tevents\tperiod_start\tperiod_end\tcurrency\n"
        "1\tbob\tPay As You Go\t500\t$25.00\t1\t2026-01-01T00:00:00Z\t2026-02-01T00:00:00Z\tusd\n"
        "2\talice\tPro\t150\t$15.00\t3\t2026-01-01T00:00:00Z\t2026-02-01T00:00:00Z\tusd\n"
    )


def test_histories_piped(runner, world):
    runner("credits", "consume", "alice", "api_calls", "30", "--id", "job-1")
    entries = J(runner("credits", "history", "alice", "--json"))
    assert piped(runner, "credits", "history", "alice") == (
        "when\tfeature\tchange\tbalance\treason\texpires_at\tidempotency_key\n"
        f"{entries[0]['created_at']}\tapi_calls\t-30\t70\tconsume\t\tjob-1\n"
        f"{entries[1]['created_at']}\tapi_calls\t+100\t100\tplan_grant\t\t\n"
    )
    assert piped(runner, "credits", "balance", "alice", "api_calls") == "70\n"
    runner("wallet", "top-up", "alice", "1250", "--id", "pay-1")
    entries = J(runner("wallet", "history", "alice", "--json"))
    assert piped(runner, "wallet", "history", "alice") == (
        "when\tchange\tbalance\treason\tidempotency_key\n"
        f"{entries[0]['created_at']}\t+$12.50\t$12.50\ttop_up\tpay-1\n"
    )
    assert piped(runner, "wallet", "balance", "alice") == "1250\n"


def test_results_piped(runner, world):
    assert piped(runner, "credits", "grant", "alice", "api_calls", "5") == "granted\tbalance\texpires_at\treplayed\n5\t105\t\tfalse\n"
    assert piped(runner, "credits", "consume", "alice", "api_calls", "5") == "consumed\tbalance\ttopped_up\n5\t100\t0\n"
    out = piped(runner, "charge", "alice", "api_calls", "120")
    header, line = out.splitlines()
    assert header == "units\tfrom_credits\tfrom_wallet\twallet_debit\tas_usage\tusage_event\tcredit_balance\twallet_balance"
    assert re.fullmatch(r"120\t100\t0\t\$0\.00\t20\tube_\w+\t0\t\$0\.00", line)
    assert piped(runner, "push") == "delivered\talready_delivered\tfailed\tpending\tinvoiced_late\trequests\tbatches\n0\t0\t0\t0\t0\t0\t0\n"
    assert piped(runner, "status") == "pending\tdelivered\tfailed\tinvoiced_late\n0\t5\t0\t0\n"


def test_invoices_reconcile_sync_and_clock_piped(runner, world):
    clock = J(runner("testclock", "show", world, "--json"))
    assert piped(runner, "testclock", "show", world) == (
        "id\tname\tfrozen_time\tstatus\tcustomers\n"
        f"{world}\tjan\t2026-01-03T12:00:00Z\tready\t{','.join(clock['customers'])}\n")
    assert piped(runner, "reconcile", "alice", "--periods", "1") == (
        "user_id\tkey\tperiod_start\tperiod_end\tstate\tledger\tstripe\tdifference\tpending\n"
        "alice\tapi_calls\t2026-01-01T00:00:00Z\t2026-02-01T00:00:00Z\topen\t150\t150\t\t\n")
    assert piped(runner, "sync", "--dry-run") == "action\tobject\tkey\tdetail\tstripe_id\n"  # nothing to change
    invoices = J(runner("invoices", "list", "alice", "--json"))
    assert piped(runner, "invoices", "list", "alice") == "id\tnumber\tstatus\tbilling_reason\tcreated\ttotal\n" + "".join(
        f"{i['id']}\t{i['number'] or ''}\t{i['status']}\t{i['billing_reason']}\t{i['created']}\t${i['total'] / 100:.2f}\n"
        for i in invoices)
    first = invoices[-1]
    assert piped(runner, "invoices", "show", first["id"]).splitlines() == [
        "item\tquantity\tunit_price\tamount\tperiod_start\tperiod_end",
        "Pro\t1\t$20.00\t$20.00\t2026-01-01T00:00:00Z\t2026-02-01T00:00:00Z",
        "API Calls\t0\t$0.10\t$0.00\t2026-01-01T00:00:00Z\t2026-02-01T00:00:00Z",
        "Total\t\t\t$20.00\t\t"]


def test_plain_values_never_split_a_line(runner, world):
    runner("credits", "grant", "alice", "api_calls", "1", "--id", "with\ttab")
    lines = piped(runner, "credits", "history", "alice").splitlines()
    assert lines[1].endswith("\tgrant\t\twith tab") and all(line.count("\t") == 6 for line in lines)


# -- terminals as they are ---------------------------------------------------------------------

def test_terminal_gets_tables_on_stdout_and_messages_stay_on_stderr(runner, world, terminal):
    r = runner("customers", "list")
    assert r.exit_code == 0 and "┃" in r.stdout and "alice@example.com" in r.stdout and banner_only(r)
    r = runner("testclock", "create", "--at", "2026-01-01")
    assert r.stdout.startswith("Test clock clock_") and "at 2026-01-01T00:00:00Z" in r.stdout


def test_piped_width_ignores_the_terminal(runner, world, monkeypatch):
    runner("customers", "add", LONG_ID, "--email", "someone.with.a.long.address@example-enterprise.com")
    monkeypatch.setenv("COLUMNS", "20")
    out = piped(runner, "customers", "list")
    assert f"{LONG_ID}\tsomeone.with.a.long.address@example-enterprise.com\t-\tcus_" in out
    assert "\x1b" not in out and "┃" not in out and "…" not in out


def test_no_color_means_no_escape_code(runner, world, terminal, monkeypatch):
    for args in (["customers", "list"], ["summary", "alice", "--daily"], ["top"], ["invoices", "preview", "alice"]):
        r = runner(*args)
        assert r.exit_code == 0 and "\x1b[" in r.stdout, args  # colour and bold on a terminal...
        monkeypatch.setenv("NO_COLOR", "1")
        r = runner(*args)
        assert r.exit_code == 0 and "\x1b" not in r.output, args  # ...and none at all with NO_COLOR
        monkeypatch.delenv("NO_COLOR")


def _cells(line: str) -> int:
    from rich.cells import cell_len

    return cell_len(line)


def test_forty_columns_keep_amounts_and_ids_whole(runner, world, monkeypatch):
    runner("customers", "add", LONG_ID)
    runner("subscribe", LONG_ID, "Pro")
    runner("record", LONG_ID, "api_calls", "123456")
    monkeypatch.setenv("USAGEBILL_FORCE_TTY", "40")
    monkeypatch.setenv("NO_COLOR", "1")
    cus = {c["user_id"]: c["stripe_customer_id"] for c in J(runner("customers", "list", "--json"))}
    for args, whole in (
        (["customers", "list"], [cus["alice"], cus[LONG_ID]]),
        (["top"], ["$12,345.60", "123,456", "$25.00", "$15.00"]),
        (["summary", "alice"], ["$15.00", "150"]),
        (["summary", "alice", "--daily"], ["$4.00", "$6.00", "$5.00", "$15.00"]),
        (["invoices", "preview", "alice"], ["150 x $0.10", "$15.00", "$20.00", "$35.00"]),
    ):
        r = runner(*args)
        assert r.exit_code == 0, r.output
        assert all(_cells(line) <= 40 for line in r.stdout.splitlines()), (args, r.stdout)
        assert "…" not in r.stdout and "$..." not in r.stdout
        for text in whole:
            assert any(text in line for line in r.stdout.splitlines()), (args, text, r.stdout)


def test_a_long_user_id_folds_without_squeezing_the_others(runner, world, monkeypatch):
    runner("customers", "add", LONG_ID * 2, "--email", "x@example.com")
    monkeypatch.setenv("USAGEBILL_FORCE_TTY", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    data = J(runner("customers", "list", "--json"))
    out = runner("customers", "list").stdout
    for c in data:  # every e-mail and Stripe id on one line, whole
        assert any(c["email"] in line and c["stripe_customer_id"] in line for line in out.splitlines()), out


# -- the chart and the morning look ------------------------------------------------------------

def test_daily_chart_on_a_terminal(runner, world, terminal, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    r = runner("summary", "alice", "--daily")
    assert r.exit_code == 0 and banner_only(r)
    lines = r.stdout.splitlines()
    assert lines[0] == "alice on Pro, per day (UTC): 2026-01-01T00:00:00Z .. 2026-02-01T00:00:00Z"
    bars = {line.split()[1]: line for line in lines if re.match(r"^\w{3} \d\d-\d\d ", line)}
    assert list(bars) == ["01-01", "01-02", "01-03"]
    assert bars["01-02"].rstrip().endswith("60 $6.00") and bars["01-01"].rstrip().endswith("40 $4.00")
    # bar lengths follow the units: 40 : 60 : 50
    length = {d: line.count("█") for d, line in bars.items()}
    assert length["01-02"] > length["01-03"] > length["01-01"] > 0
    assert "Total: 150 api_calls, $15.00 estimated (3 events)" in r.stdout
    assert "Included in Pro: 100 api_calls credits a period (reset), 100 left." in r.stdout


def test_daily_summary_and_top_follow_the_billing_period(runner, world):
    """Across a period end (test clock): the chart and top show the new period; --period
    previous ranks the one before, each customer in its own period."""
    runner("testclock", "advance", world, "--to", "2026-02-02T12:00:00Z")
    runner("record", "alice", "api_calls", "7", "--at", "2026-02-02T10:00:00Z")
    daily = J(runner("summary", "alice", "--daily", "--json"))
    assert (daily["period_start"], daily["period_end"]) == ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    assert [(b["start"], b["units"]) for b in daily["features"][0]["series"]] == [
        ("2026-02-01T00:00:00Z", 0), ("2026-02-02T00:00:00Z", 7)]
    now = J(runner("top", "--by", "units", "--json"))
    assert [(x["user_id"], x["units"], x["estimated_cost"]) for x in now] == [("alice", 7, 70)]
    before = J(runner("top", "--period", "previous", "--json"))
    assert [(x["rank"], x["user_id"], x["units"], x["estimated_cost"], x["period_start"]) for x in before] == [
        (1, "bob", 500, 2500, "2026-01-01T00:00:00Z"), (2, "alice", 150, 1500, "2026-01-01T00:00:00Z")]
    # what Stripe billed for January matches what top --period previous said
    invoices = J(runner("invoices", "list", "alice", "--json"))
    cycle = [i for i in invoices if i["billing_reason"] == "subscription_cycle"][0]
    usage = [x for x in cycle["lines"] if x["description"] == "API Calls"][0]
    assert (usage["quantity"], usage["amount"]) == (150, 1500)


def test_top_by_cost_and_by_units_rank_differently(runner, world):
    runner("customers", "add", "carol", "--test-clock", world)
    runner("subscribe", "carol", "Team", "--interval", "month")
    assert runner("record", "carol", "ai_tokens", "4000").exit_code == 0  # $20.00 at half a cent
    by_cost = [x["user_id"] for x in J(runner("top", "--json"))]
    by_units = [x["user_id"] for x in J(runner("top", "--by", "units", "--json"))]
    assert by_cost == ["bob", "carol", "alice"] and by_units == ["carol", "bob", "alice"]
    assert [x["user_id"] for x in J(runner("top", "--limit", "1", "--json"))] == ["bob"]


# -- small things ------------------------------------------------------------------------------

def test_missing_config_suggests_init(tmp_path):
    from click.testing import CliRunner

    from usagebill.cli import cli

    r = CliRunner().invoke(cli, ["customers", "list"])
    assert r.exit_code == 1
    assert r.stderr.strip() == ("Error: billing.toml: no such file; write an example with: usagebill init "
                                "(or point --config / USAGEBILL_CONFIG at yours)")


def test_plan_names_in_any_case_or_a_did_you_mean(runner):
    runner("sync")
    for i, name in enumerate(("pro", "PRO", "Pro", "pay_as_you_go")):
        runner("customers", "add", f"c{i}")
        assert runner("subscribe", f"c{i}", name).exit_code == 0
    plans = [c["subscription"]["plan"] for c in J(runner("customers", "list", "--json"))]
    assert plans == ["Pro", "Pro", "Pro", "Pay As You Go"]
    r = runner("subscribe", "c0", "PRP")
    assert r.exit_code == 1 and "unknown plan 'PRP' (did you mean 'Pro'?)" in r.stderr


def test_a_local_sandbox_that_is_not_running_is_named(runner, monkeypatch):
    monkeypatch.setenv("USAGEBILL_SANDBOX_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    r = runner("sync")
    assert r.exit_code == 4
    line = r.stderr.strip().splitlines()[-1]
    assert "cannot reach the sandbox at http://127.0.0.1:9" in line
    assert "start it with: usagebill sandbox serve --port 9" in line and "support@stripe.com" not in r.stderr


def test_stripe_times_in_messages_are_iso_8601():
    from usagebill.cli.output import readable_times

    assert readable_times("the customer's time is 1767225600, the event's 1764547200.") == (
        "the customer's time is 2026-01-01T00:00:00Z (1767225600), the event's 2025-12-01T00:00:00Z (1764547200).")
    assert readable_times("quantity 150 and amount 12345678901") == "quantity 150 and amount 12345678901"


EVERY_DATA_COMMAND = [
    ["config", "check"], ["customers", "list"], ["customers", "show", "alice"], ["summary", "alice"],
    ["summary", "alice", "--by", "hour"], ["top"], ["credits", "balance", "alice", "api_calls"],
    ["credits", "history", "alice"], ["credits", "grant", "alice", "api_calls", "2"],
    ["credits", "consume", "alice", "api_calls", "1"], ["wallet", "top-up", "alice", "100"],
    ["wallet", "consume", "alice", "50"], ["wallet", "balance", "alice"], ["wallet", "history", "alice"],
    ["record", "alice", "api_calls", "3"], ["charge", "alice", "api_calls", "2"], ["push"], ["status"],
    ["reconcile", "--periods", "1"], ["sync", "--dry-run"], ["invoices", "list", "alice"],
    ["invoices", "preview", "alice"], ["testclock", "show", "{clock}"], ["testclock", "advance", "{clock}", "--to", "+1h"],
    ["customers", "add", "dave"], ["subscribe", "dave", "Pro"], ["cancel", "dave"], ["import", "-"],
]


@pytest.mark.parametrize("form", ["piped", "terminal"])
def test_every_data_command_prints_its_data_on_stdout_only(runner, world, monkeypatch, form):
    if form == "terminal":
        monkeypatch.setenv("USAGEBILL_FORCE_TTY", "100")
    for args in EVERY_DATA_COMMAND:
        args = [a.format(clock=world) for a in args]
        r = runner(*args, input="user_id,key,amount\nalice,api_calls,1\n" if args[0] == "import" else None)
        assert r.exit_code == 0, (args, r.output)
        assert r.stdout.strip(), args
        assert banner_only(r), (args, r.stderr)
        assert ("┃" in r.stdout or "\t" not in r.stdout) if form == "terminal" else "┃" not in r.stdout, args


def test_readme_and_design_notes_are_in_the_repo():
    readme = (ROOT / "README.md").read_text()
    assert "shared folder" not in readme and "](docs/design.md)" in readme
    assert "stdout carries the data" in (ROOT / "docs" / "design.md").read_text()


def test_a_clock_moved_backwards_names_its_time_in_iso_8601(runner):
    clock = runner("testclock", "create", "--at", "2026-01-01").stdout.strip()
    r = runner("testclock", "advance", clock, "--to", "2025-12-01")
    assert r.exit_code == 1 and "is before the clock's time (2026-01-01T00:00:00Z)" in r.stderr


def test_help_lists_the_commands_in_the_order_of_the_tour(runner):
    r = runner("--help")
    listed = [line.split()[0] for line in r.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert listed[:2] == ["demo", "init"]
    assert listed.index("summary") < listed.index("top") < listed.index("invoices")


def test_plain_and_no_header_on_a_terminal(runner, world, terminal):
    assert runner("customers", "list", "--plain").stdout.startswith("user_id\temail\tplan\t")
    assert runner("customers", "list", "--no-header").stdout.startswith("alice\talice@example.com\tPro\t")
    assert runner("top", "--no-header").stdout.splitlines()[0].startswith("1\tbob\tPay As You Go\t500\t$25.00\t")


def test_a_network_error_says_what_failed_without_the_sdk_boilerplate():
    import stripe

    from usagebill.gateway.client import describe

    e = stripe.APIConnectionError("Unexpected error communicating with Stripe.  If this problem persists,\nlet us "
                                  "know at support@stripe.com.\n\n(Network error: ConnectionError: refused)")
    assert describe(e, "sync") == "sync: cannot reach Stripe (ConnectionError: refused)"
