"""sync keeps live subscriptions in line with billing.toml, across billing periods on a test
clock: what Stripe (the sandbox) invoices, and summary agreeing with it to the cent."""

import json

import pytest


def J(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


STORAGE = '''
[plans.features.storage]
display_name = "Storage GB"
price_per_credit = 3
track_usage = true
'''


@pytest.fixture
def alice(runner):
    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))["id"]
    J(runner("customers", "add", "alice", "--test-clock", clock, "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    return clock


def _with_pro(config_path, extra="", **replace):
    """The example config with Pro's section changed."""
    text = config_path.read_text()
    pro_end = text.index('[[plans]]\nname = "Pay As You Go"')
    pro = text[:pro_end]
    for old, new in replace.items():
        assert old in pro
        pro = pro.replace(old, new, 1)
    config_path.write_text(pro + extra + "\n" + text[pro_end:])


def _cycle_invoice(runner, period_start):
    invoices = J(runner("invoices", "list", "alice", "--json"))
    found = [i for i in invoices if i["billing_reason"] == "subscription_cycle"
             and any(x["period_start"] == period_start for x in i["lines"] if x["description"] != "Pro")]
    assert len(found) == 1, invoices
    return found[0]


def _usage_lines(inv):
    return sorted((x["description"], x["quantity"], x["unit_amount"], x["amount"]) for x in inv["lines"])


def test_a_feature_added_to_a_plan_is_billed_on_the_next_invoice_of_its_subscribers(runner, config_path, alice):
    _with_pro(config_path, STORAGE)
    r = runner("record", "alice", "storage", "1")  # not on alice's subscription before sync: never billed
    assert r.exit_code == 1 and "run usagebill sync" in r.stderr
    plan = J(runner("sync", "--dry-run", "--json"))
    subs = [a for a in plan["actions"] if a["kind"] == "subscription"]
    assert [(a["verb"], a["key"]) for a in subs] == [("add", "alice")]
    assert "Storage GB" in subs[0]["detail"] and "from now on" in subs[0]["detail"]
    assert [a for a in J(runner("sync", "--dry-run", "--json"))["actions"] if a["kind"] == "subscription"] == subs
    done = J(runner("sync", "--json"))
    assert [(a["verb"], a["kind"], a["key"]) for a in done["actions"] if a["kind"] == "subscription"] == [
        ("add", "subscription", "alice")]
    assert [a for a in J(runner("sync", "--json"))["actions"]] == []  # in line now: nothing to do
    J(runner("record", "alice", "storage", "20", "--json"))
    J(runner("record", "alice", "api_calls", "150", "--json"))
    summary = {s["key"]: s["estimated_cost"] for s in J(runner("summary", "alice", "--json"))}
    assert summary == {"api_calls": 1500, "storage": 60}
    J(runner("testclock", "advance", alice, "--to", "+1month2h", "--json"))
    inv = _cycle_invoice(runner, "2026-01-01T00:00:00Z")
    assert inv["status"] != "draft"
    assert _usage_lines(inv) == [("API Calls", 150, "10", 1500), ("Pro", 1, "2000", 2000), ("Storage GB", 20, "3", 60)]
    assert inv["total"] == 3560 == 2000 + sum(summary.values())
    assert runner("reconcile", "--closed-only").exit_code == 0


def test_a_price_change_bills_old_usage_at_the_old_price_and_the_rest_at_the_new(runner, config_path, alice):
    J(runner("record", "alice", "api_calls", "100", "--json"))  # Jan 01, at $0.10
    J(runner("testclock", "advance", alice, "--to", "+15d", "--json"))  # Jan 16
    J(runner("record", "alice", "api_calls", "40", "--at", "2026-01-15T12:00:00Z", "--no-push", "--json"))
    _with_pro(config_path, **{"price_per_credit = 10 ": "price_per_credit = 12 ",
                              "amount = 2000": "amount = 2500"})
    r = runner("sync", "--dry-run")
    assert r.exit_code == 0 and "alice" in r.stderr + r.stdout
    done = J(runner("sync", "--json"))
    moves = {a["detail"].split(":")[0]: a["detail"] for a in done["actions"] if a["kind"] == "subscription"}
    assert set(moves) == {"API Calls", "Pro"}
    assert "$0.10 -> $0.12 per unit from now" in moves["API Calls"] and "old price" in moves["API Calls"]
    assert "$20.00 -> $25.00 per month from the next period" in moves["Pro"]
    assert J(runner("status", "alice", "--json"))["pending"] == 0  # sync delivered the 40 before the change
    J(runner("record", "alice", "api_calls", "60", "--json"))  # Jan 16, at $0.12
    s = J(runner("summary", "alice", "--key", "api_calls", "--json"))
    assert (s["total_amount"], s["estimated_cost"], s["unit_price"]) == (200, 140 * 10 + 60 * 12, "12")
    J(runner("testclock", "advance", alice, "--to", "2026-02-01T02:00:00Z", "--json"))
    inv = _cycle_invoice(runner, "2026-01-01T00:00:00Z")
    # the base price is paid in advance: February at the new price; January's usage split at the change
    assert _usage_lines(inv) == [("API Calls", 60, "12", 720), ("API Calls", 140, "10", 1400), ("Pro", 1, "2500", 2500)]
    assert inv["total"] == 2500 + s["estimated_cost"]
    # the next period is all at the new price, and summary still agrees
    J(runner("record", "alice", "api_calls", "10", "--json"))
    s = J(runner("summary", "alice", "--key", "api_calls", "--json"))
    assert (s["total_amount"], s["estimated_cost"]) == (10, 120)
    J(runner("testclock", "advance", alice, "--to", "2026-03-01T02:00:00Z", "--json"))
    inv = _cycle_invoice(runner, "2026-02-01T00:00:00Z")
    assert _usage_lines(inv) == [("API Calls", 10, "12", 120), ("Pro", 1, "2500", 2500)]
    assert J(runner("sync", "--json"))["actions"] == []
    r = runner("reconcile", "--closed-only")  # every unit of both periods on an invoice, once
    assert r.exit_code == 0, r.output


def test_a_price_changed_twice_in_one_period(runner, config_path, alice):
    J(runner("record", "alice", "api_calls", "7", "--json"))
    J(runner("testclock", "advance", alice, "--to", "+1d", "--json"))
    _with_pro(config_path, **{"price_per_credit = 10 ": "price_per_credit = 12 "})
    J(runner("sync", "--json"))
    J(runner("testclock", "advance", alice, "--to", "+10d", "--json"))
    J(runner("record", "alice", "api_calls", "5", "--json"))
    J(runner("testclock", "advance", alice, "--to", "+1d", "--json"))
    _with_pro(config_path, **{"price_per_credit = 12 ": "price_per_credit = 0.5 "})
    J(runner("sync", "--json"))
    J(runner("record", "alice", "api_calls", "3", "--json"))
    s = J(runner("summary", "alice", "--key", "api_calls", "--json"))
    assert s["estimated_cost"] == 7 * 10 + 5 * 12 + 2  # 3 x 0.5 = 1.5 rounds half-up to 2, as Stripe rounds a line
    J(runner("testclock", "advance", alice, "--to", "2026-02-01T02:00:00Z", "--json"))
    inv = _cycle_invoice(runner, "2026-01-01T00:00:00Z")
    usage = [x for x in inv["lines"] if x["description"] == "API Calls"]
    assert sorted((x["quantity"], x["amount"]) for x in usage) == [(3, 2), (5, 60), (7, 70)]
    assert sum(x["amount"] for x in usage) == s["estimated_cost"]
    assert runner("reconcile", "--closed-only").exit_code == 0


def _without_team(config_path):
    text = config_path.read_text()
    config_path.write_text(text[:text.index('[[plans]]\nname = "Team"')])


@pytest.fixture
def bob_on_team(runner, alice):
    J(runner("customers", "add", "bob", "--test-clock", alice, "--json"))
    J(runner("subscribe", "bob", "Team", "--interval", "month", "--json"))


def test_removing_a_plan_with_active_subscriptions_is_refused(runner, config_path, alice, bob_on_team):
    before = config_path.read_text()
    _without_team(config_path)
    for args in (("config", "check"), ("sync", "--dry-run"), ("sync",)):
        r = runner(*args)
        assert r.exit_code == 1, (args, r.output)
        assert "plan 'team' (1 active subscription(s): bob)" in r.stderr, r.stderr
        assert "cancel those subscriptions" in r.stderr and len(r.stderr.strip().splitlines()) <= 2
    # nothing was archived: with the plan back, Stripe already matches, and bob is billed as before
    config_path.write_text(before)
    assert J(runner("sync", "--json"))["actions"] == []
    J(runner("record", "bob", "ai_tokens", "10", "--json"))
    J(runner("testclock", "advance", alice, "--to", "+1month2h", "--json"))
    cycle = [i for i in J(runner("invoices", "list", "bob", "--json")) if i["billing_reason"] == "subscription_cycle"]
    assert [sorted((x["description"], x["quantity"], x["amount"]) for x in i["lines"]) for i in cycle] == [
        [("AI Tokens", 10, 5), ("API Calls", 0, 0), ("Team", 1, 5000)]]
    # once bob is cancelled, the plan may go
    assert runner("cancel", "bob").exit_code == 0
    _without_team(config_path)
    assert runner("config", "check").exit_code == 0
    archived = {(a["kind"], a["key"]) for a in J(runner("sync", "--json"))["actions"] if a["verb"] == "archive"}
    assert ("product", "product:plan:team") in archived


def test_removing_or_renaming_a_feature_in_use_is_refused(runner, config_path, alice):
    text = config_path.read_text()
    config_path.write_text(text.replace("[plans.features.api_calls]", "[plans.features.api_requests]", 1))
    r = runner("sync")
    assert r.exit_code == 1 and "usage feature 'api_calls' of plan 'Pro' (1 active subscription(s): alice)" in r.stderr
    assert "a rename is a removal plus an addition" in r.stderr
    assert runner("config", "check").exit_code == 1
    # turning usage billing off is a removal too
    config_path.write_text(text.replace("track_usage = true\ncredits", "track_usage = false\ncredits", 1))
    r = runner("config", "check")
    assert r.exit_code == 1 and "usage feature 'api_calls' of plan 'Pro'" in r.stderr
    config_path.write_text(text)
    assert runner("config", "check").exit_code == 0


def test_config_check_without_a_ledger_checks_the_file_alone(runner, config_path, tmp_path):
    assert runner("config", "check").exit_code == 0
    assert not (tmp_path / ".usagebill" / "ledger.db").exists()  # config check made no ledger


def test_commands_for_customers_on_other_plans_work_whatever_the_config_says_of_one(runner, config_path, bob_on_team):
    J(runner("record", "bob", "ai_tokens", "10", "--no-push", "--json"))
    _without_team(config_path)  # an edit not synced (sync would refuse it)
    J(runner("record", "alice", "api_calls", "5", "--json"))
    assert J(runner("summary", "alice", "--key", "api_calls", "--json"))["total_amount"] == 5
    listed = {c["user_id"]: c["subscription"]["plan"] for c in J(runner("customers", "list", "--json"))}
    assert listed == {"alice": "Pro", "bob": "team"}
    assert J(runner("push", "--json"))["delivered"] == 1  # bob's: his Stripe subscription still bills it
    r = runner("summary", "bob")
    assert r.exit_code == 1 and "plan 'team', which billing.toml no longer has" in r.stderr
    assert runner("cancel", "bob").exit_code == 0  # and bob can still be cancelled


def test_late_usage_of_a_period_before_a_price_change_is_billed_at_that_periods_price(runner, config_path, alice):
    J(runner("testclock", "advance", alice, "--to", "+19d", "--json"))
    J(runner("record", "alice", "api_calls", "5", "--no-push", "--json"))  # Jan 20, pending
    J(runner("testclock", "advance", alice, "--to", "2026-02-01T02:00:00Z", "--json"))  # January is invoiced
    _with_pro(config_path, **{"price_per_credit = 10 ": "price_per_credit = 12 "})
    J(runner("sync", "--json"))  # delivers alice's pending usage first: too late for January's invoice
    J(runner("record", "alice", "api_calls", "2", "--json"))  # February, at $0.12
    J(runner("testclock", "advance", alice, "--to", "2026-03-01T02:00:00Z", "--json"))
    inv = _cycle_invoice(runner, "2026-02-01T00:00:00Z")
    assert _usage_lines(inv) == [("API Calls", 2, "12", 24), ("API Calls (Jan 01-Feb 01, reported late)", 5, "10", 50),
                                 ("Pro", 1, "2000", 2000)]
    assert runner("reconcile", "--closed-only").exit_code == 0


def test_usage_stamped_before_a_price_change_is_refused_after_it(runner, config_path, tmp_path, alice):
    J(runner("testclock", "advance", alice, "--to", "+15d", "--json"))  # Jan 16
    _with_pro(config_path, **{"price_per_credit = 10 ": "price_per_credit = 12 "})
    J(runner("sync", "--json"))
    # Stripe billed January 1-16 at the old price when sync moved the price: a unit stamped
    # before that moment would be on no invoice
    r = runner("record", "alice", "api_calls", "3", "--at", "2026-01-10T00:00:00Z")
    assert r.exit_code == 1 and "when sync put 'api_calls' on alice's subscription" in r.stderr
    rows = tmp_path / "usage.csv"
    rows.write_text("user_id,key,amount,timestamp\nalice,api_calls,3,2026-01-10T00:00:00Z\n"
                    "alice,api_calls,4,2026-01-16T00:00:00Z\n")
    r = runner("import", str(rows))
    assert r.exit_code == 5 and "line 2" in r.stderr and "when sync put 'api_calls'" in r.stderr
    assert J(runner("summary", "alice", "--key", "api_calls", "--json"))["estimated_cost"] == 4 * 12
    J(runner("testclock", "advance", alice, "--to", "2026-02-01T02:00:00Z", "--json"))
    inv = _cycle_invoice(runner, "2026-01-01T00:00:00Z")
    assert [(x["quantity"], x["amount"]) for x in inv["lines"] if x["description"] == "API Calls"] == [(4, 48)]
    assert runner("reconcile", "--closed-only").exit_code == 0
