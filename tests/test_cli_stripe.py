"""The Stripe side through the CLI, on the sandbox (state in a file beside the ledger, so
consecutive commands see the same Stripe)."""

import json

import pytest


def J(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def on_clock(runner):
    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--name", "t", "--json"))
    J(runner("customers", "add", "alice", "--email", "alice@example.com", "--test-clock", clock["id"], "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    return clock["id"]


def test_every_command_says_which_stripe_it_talks_to(runner):
    r = runner("sync")
    assert r.exit_code == 0
    assert r.stderr.splitlines()[0].startswith("usagebill: sandbox, state in ")
    assert r.stderr.count("usagebill: sandbox") == 1


def test_customer_and_subscription_in_stripe(runner, on_clock):
    c = J(runner("customers", "show", "alice", "--json"))
    assert c["stripe_customer_id"].startswith("cus_") and c["test_clock"] == on_clock
    assert c["stripe"] == {"id": c["stripe_customer_id"], "email": "alice@example.com", "test_clock": on_clock}
    assert c["subscription"]["plan"] == "Pro" and c["subscription"]["stripe_subscription_id"].startswith("sub_")
    assert c["subscription"]["anchor"] == "2026-01-01T00:00:00Z"
    # included credits granted for the first period
    assert J(runner("credits", "balance", "alice", "api_calls", "--json"))["balance"] == 100
    # repeating is harmless
    again = J(runner("customers", "add", "alice", "--json"))
    assert again["stripe_customer_id"] == c["stripe_customer_id"]
    assert J(runner("subscribe", "alice", "Pro", "--json"))["stripe_subscription_id"] == c["subscription"]["stripe_subscription_id"]


def test_first_invoice_and_clock_advance_renews_credits(runner, on_clock):
    invoices = J(runner("invoices", "list", "alice", "--json"))
    assert [(i["billing_reason"], i["total"]) for i in invoices] == [("subscription_create", 2000)]
    J(runner("credits", "consume", "alice", "api_calls", "70", "--json"))
    clock = J(runner("testclock", "advance", on_clock, "--to", "+1month2h", "--json"))
    assert clock["frozen_time"] == "2026-02-01T02:00:00Z" and clock["status"] == "ready"
    assert clock["customers"] == ["alice"]
    s = J(runner("summary", "alice", "--key", "api_calls", "--json"))
    assert (s["period_start"], s["period_end"]) == ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    assert J(runner("credits", "balance", "alice", "api_calls", "--json"))["balance"] == 100  # reset
    invoices = J(runner("invoices", "list", "alice", "--json"))
    cycle = [i for i in invoices if i["billing_reason"] == "subscription_cycle"]
    assert len(cycle) == 1 and cycle[0]["status"] == "open" and cycle[0]["total"] == 2000
    shown = J(runner("invoices", "show", cycle[0]["id"], "--json"))
    assert [(x["description"], x["quantity"], x["amount"]) for x in shown["lines"]] == [("Pro", 1, 2000), ("API Calls", 0, 0)]
    r = runner("invoices", "show", cycle[0]["id"])
    assert "Pro" in r.stderr and "$20.00" in r.stderr and "Total" in r.stderr


def test_advance_rules(runner, on_clock):
    r = runner("testclock", "advance", on_clock, "--to", "2025-12-01T00:00:00Z")
    assert r.exit_code == 1 and "only move forward" in r.stderr
    r = runner("testclock", "advance", on_clock, "--to", "+1fortnight")
    assert r.exit_code == 1 and "unknown unit 'fortnight'" in r.stderr
    r = runner("testclock", "advance", on_clock, "--to", "+3month")  # more than two intervals: Stripe refuses
    assert r.exit_code == 4 and "Stripe said 400" in r.stderr
    shown = J(runner("testclock", "show", on_clock, "--json"))
    assert shown["frozen_time"] == "2026-01-01T00:00:00Z"


def test_preview_shows_the_next_invoice(runner, on_clock):
    p = J(runner("invoices", "preview", "alice", "--json"))
    assert p["id"] is None or p["id"].startswith("upcoming")
    assert [(x["description"], x["quantity"]) for x in p["lines"]] == [("Pro", 1), ("API Calls", 0)]


def test_subscribe_before_sync_says_what_to_do(runner):
    runner("customers", "add", "bob")
    r = runner("subscribe", "bob", "Pro")
    assert r.exit_code == 1 and "run usagebill sync" in r.stderr


def test_live_key_needs_live_flag_and_clocks_refuse_live(runner, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_supersecret123")
    r = runner("sync")
    assert r.exit_code == 1 and "pass --live" in r.stderr
    assert "supersecret" not in r.output
    r = runner("--live", "testclock", "create")
    assert r.exit_code == 1 and "not in live mode" in r.stderr and "supersecret" not in r.output


def test_nonsense_key_is_refused(runner, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "pk_test_publishable")
    r = runner("sync")
    assert r.exit_code == 1 and "is not a secret or restricted key" in r.stderr
    assert "pk_test_publishable" not in r.output


def test_a_sandbox_ledger_is_not_pointed_at_test_mode(runner, monkeypatch):
    assert runner("sync").exit_code == 0
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_abc")
    r = runner("sync")
    assert r.exit_code == 1 and "belongs to the sandbox" in r.stderr and "sk_test_abc" not in r.output


def test_sync_dry_run_then_sync_then_nothing(runner):
    plan = J(runner("sync", "--dry-run", "--json"))
    assert plan["dry_run"] and len(plan["actions"]) == 17
    assert len(J(runner("sync", "--json"))["actions"]) == 17
    r = runner("sync")
    assert "nothing to do" in r.stderr


def test_a_flag_beats_its_env_var_and_says_so(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("USAGEBILL_DB", str(tmp_path / "env.db"))
    r = runner("--db", str(tmp_path / "flag.db"), "customers", "list", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    assert "--db given, so USAGEBILL_DB is not used" in r.stderr
    assert (tmp_path / "flag.db").exists() and not (tmp_path / "env.db").exists()


def test_api_key_flag_is_checked_and_never_printed(runner):
    r = runner("--api-key", "sk_live_flagsecret", "sync")
    assert r.exit_code == 1 and "pass --live" in r.stderr and "flagsecret" not in r.output


def test_cancel_bills_the_partial_period_and_stops_usage(runner, on_clock):
    J(runner("record", "alice", "api_calls", "40", "--no-push", "--json"))  # pending: cancel delivers it first
    r = runner("cancel", "alice", "--json")
    assert r.exit_code == 0, r.output
    assert J(r)["status"] == "canceled"
    invoices = J(runner("invoices", "list", "alice", "--json"))
    last = invoices[0]
    assert [(x["description"], x["quantity"], x["amount"]) for x in last["lines"]] == [("API Calls", 40, 400)]
    assert J(runner("status", "alice", "--json"))["pending"] == 0
    r = runner("record", "alice", "api_calls", "1")
    assert r.exit_code == 1 and "no active subscription" in r.stderr
    assert runner("cancel", "alice").exit_code == 1
    # and a new subscription can start
    assert J(runner("subscribe", "alice", "Pay As You Go", "--json"))["plan"] == "Pay As You Go"


def test_cancel_refuses_while_usage_cannot_be_delivered(runner, on_clock, monkeypatch):
    J(runner("record", "alice", "api_calls", "5", "--no-push", "--json"))
    monkeypatch.setenv("USAGEBILL_SANDBOX_FAULTS", "5xx=1.0,seed=1")  # Stripe down
    r = runner("cancel", "alice")
    assert r.exit_code != 0 and "nothing was cancelled" in r.stderr
    monkeypatch.delenv("USAGEBILL_SANDBOX_FAULTS")
    assert J(runner("customers", "show", "alice", "--json"))["subscription"]["plan"] == "Pro"


def test_resubscribing_to_the_same_plan_after_cancel_makes_a_new_subscription(runner, on_clock):
    old = J(runner("customers", "show", "alice", "--json"))["subscription"]["stripe_subscription_id"]
    assert runner("cancel", "alice").exit_code == 0
    new = J(runner("subscribe", "alice", "Pro", "--json"))
    assert new["stripe_subscription_id"] != old
    J(runner("record", "alice", "api_calls", "3", "--json"))
    assert J(runner("summary", "alice", "--key", "api_calls", "--json"))["total_amount"] == 3
