"""customers add / update / remove on the sandbox: a failed Stripe call leaves the ledger as
it was, unknown ids typed by a user are exit 1, and removal keeps the billing history."""

import json

import pytest


def J(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _customers(runner):
    return [c["user_id"] for c in J(runner("customers", "list", "--json"))]


def test_a_mistyped_stripe_id_leaves_no_customer(runner):
    r = runner("customers", "add", "ghost", "--stripe-id", "cus_typo")
    assert r.exit_code == 1, r.output
    assert "No such customer: 'cus_typo'" in r.stderr and len(r.stderr.strip().splitlines()) == 2
    assert _customers(runner) == []
    # the right id then links it, as if the typo had never happened
    real = J(runner("customers", "add", "real", "--json"))["stripe_customer_id"]
    J(runner("customers", "remove", "real", "--json"))
    c = J(runner("customers", "add", "ghost", "--stripe-id", real, "--json"))
    assert c["stripe_customer_id"] == real and _customers(runner) == ["ghost"]


def test_stripe_down_while_creating_leaves_no_customer(runner, monkeypatch):
    assert runner("sync").exit_code == 0  # the sandbox exists before it fails
    monkeypatch.setenv("USAGEBILL_SANDBOX_FAULTS", "5xx=1.0,seed=1")
    r = runner("customers", "add", "bob", "--email", "bob@example.com")
    assert r.exit_code == 4, r.output
    monkeypatch.delenv("USAGEBILL_SANDBOX_FAULTS")
    assert _customers(runner) == []
    c = J(runner("customers", "add", "bob", "--email", "bob@example.com", "--json"))
    assert c["stripe_customer_id"].startswith("cus_")


def test_linking_a_customer_on_another_test_clock_is_refused_and_leaves_nothing(runner):
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))["id"]
    other = J(runner("customers", "add", "other", "--test-clock", clock, "--json"))["stripe_customer_id"]
    r = runner("customers", "add", "linked", "--stripe-id", other)
    assert r.exit_code == 1 and f"is on test clock {clock}" in r.stderr
    assert _customers(runner) == ["other"]
    r = runner("customers", "add", "ghost", "--test-clock", "clock_nope")
    assert r.exit_code == 1 and "No such test_clock" in r.stderr.replace("test clock", "test_clock")
    assert _customers(runner) == ["other"]


def test_unknown_ids_typed_by_a_user_are_exit_1(runner):
    r = runner("invoices", "show", "in_nope")
    assert r.exit_code == 1 and "No such invoice: 'in_nope'" in r.stderr and len(r.stderr.strip().splitlines()) == 2
    r = runner("testclock", "show", "clock_nope")
    assert r.exit_code == 1 and "clock_nope" in r.stderr
    r = runner("testclock", "advance", "clock_nope", "--to", "+1d")
    assert r.exit_code == 1 and "clock_nope" in r.stderr


def test_update_email_changes_stripe_then_the_ledger(runner):
    J(runner("customers", "add", "alice", "--email", "alice@example.com", "--json"))
    J(runner("customers", "update", "alice", "--email", "alice@example.org", "--json"))
    c = J(runner("customers", "show", "alice", "--json"))
    assert c["email"] == "alice@example.org" and c["stripe"]["email"] == "alice@example.org"
    r = runner("customers", "update", "alice", "--email", "not-an-address")
    assert r.exit_code == 1 and "not an e-mail address" in r.stderr
    assert runner("customers", "update", "alice").exit_code == 2
    assert runner("customers", "update", "nobody", "--email", "a@b.c").exit_code == 1


def test_update_email_when_stripe_fails_changes_nothing(runner, monkeypatch):
    J(runner("customers", "add", "alice", "--email", "alice@example.com", "--json"))
    monkeypatch.setenv("USAGEBILL_SANDBOX_FAULTS", "5xx=1.0,seed=1")
    assert runner("customers", "update", "alice", "--email", "alice@example.org").exit_code == 4
    monkeypatch.delenv("USAGEBILL_SANDBOX_FAULTS")
    c = J(runner("customers", "show", "alice", "--json"))
    assert c["email"] == "alice@example.com" and c["stripe"]["email"] == "alice@example.com"


def test_update_stripe_id_relinks_and_refuses_while_subscribed(runner):
    assert runner("sync").exit_code == 0
    J(runner("customers", "add", "alice", "--json"))
    spare = J(runner("customers", "add", "spare", "--json"))["stripe_customer_id"]
    r = runner("customers", "update", "alice", "--stripe-id", "cus_typo")
    assert r.exit_code == 1 and "No such customer: 'cus_typo'" in r.stderr
    J(runner("subscribe", "alice", "Pro", "--json"))
    before = J(runner("customers", "show", "alice", "--json"))["stripe_customer_id"]
    r = runner("customers", "update", "alice", "--stripe-id", spare)
    assert r.exit_code == 1 and "active 'Pro' subscription" in r.stderr
    assert J(runner("customers", "show", "alice", "--json"))["stripe_customer_id"] == before
    assert runner("cancel", "alice").exit_code == 0
    assert J(runner("customers", "update", "alice", "--stripe-id", spare, "--json"))["stripe_customer_id"] == spare


def test_remove_is_refused_while_subscribed_or_usage_is_pending(runner):
    assert runner("sync").exit_code == 0
    J(runner("customers", "add", "alice", "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    r = runner("customers", "remove", "alice")
    assert r.exit_code == 1 and "active 'Pro' subscription" in r.stderr
    J(runner("record", "alice", "api_calls", "7", "--no-push", "--json"))
    assert runner("cancel", "alice", "--no-invoice").exit_code == 0  # cancel delivers the 7 first
    J(runner("customers", "add", "bob", "--json"))
    J(runner("subscribe", "bob", "Pro", "--json"))
    J(runner("record", "bob", "api_calls", "3", "--no-push", "--json"))
    J(runner("customers", "remove", "alice", "--json"))
    assert _customers(runner) == ["bob"]


def test_remove_keeps_the_history_of_a_customer_that_has_one(runner, billing):
    assert runner("sync").exit_code == 0
    J(runner("customers", "add", "alice", "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    J(runner("record", "alice", "api_calls", "7", "--json"))
    assert runner("cancel", "alice").exit_code == 0
    removed = J(runner("customers", "remove", "alice", "--json"))
    assert removed["removed"] == "retired"
    assert removed["history"]["usage_events"] == 1 and removed["history"]["subscriptions"] == 1
    assert _customers(runner) == []
    # the history stays: the events, the last invoice in Stripe
    assert [e.amount for e in billing.usage.events("alice")] == [7]
    invoices = J(runner("invoices", "list", "alice", "--json"))
    assert invoices[0]["lines"][0]["quantity"] == 7
    r = runner("customers", "add", "alice")
    assert r.exit_code == 1 and "was removed" in r.stderr
    r = runner("subscribe", "alice", "Pro")
    assert r.exit_code == 1 and "was removed" in r.stderr


def test_a_customer_without_history_is_deleted(runner):
    J(runner("customers", "add", "temp", "--json"))
    assert J(runner("customers", "remove", "temp", "--json"))["removed"] == "deleted"
    assert runner("customers", "show", "temp").exit_code == 1
    J(runner("customers", "add", "temp", "--json"))  # the id is free again
