"""subscribe: Stripe first or ledger first, never half. What the ledger would refuse is
refused before Stripe makes a subscription it would bill; a subscribe killed after Stripe
made it is completed by a re-run with the same subscription, and Stripe bills it once."""

import json

import pytest

from tests.test_cli_stripe import J

from usagebill.subscriptions import Subscriptions



@pytest.fixture
def alice(runner):
    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))["id"]
    J(runner("customers", "add", "alice", "--test-clock", clock, "--json"))
    return clock


def stripe_subscriptions(tmp_path):
    from usagebill.gateway.client import connect

    conn = connect(ledger_path=tmp_path / ".usagebill" / "ledger.db")
    return list(conn.client.v1.subscriptions.list(params={"limit": 100}).auto_paging_iter())


def test_a_refusal_of_the_ledger_comes_before_stripe(runner, alice, tmp_path):
    J(runner("wallet", "top-up", "alice", "2000", "--currency", "eur", "--json"))
    r = runner("subscribe", "alice", "Pro")  # a usd plan: the ledger refuses a euro wallet
    assert r.exit_code == 1 and "EUR" in r.stderr and "USD" in r.stderr
    assert stripe_subscriptions(tmp_path) == []  # Stripe bills nothing
    assert J(runner("customers", "show", "alice", "--json"))["subscription"] is None


def test_killed_after_stripe_a_rerun_completes_the_same_subscription(runner, alice, tmp_path, monkeypatch):
    real, calls = Subscriptions.start, []

    def dying(self, user_id, plan, *args, **kwargs):
        if kwargs.get("stripe_subscription_id") and not calls:  # the write after Stripe's
            calls.append(1)
            raise KeyboardInterrupt
        return real(self, user_id, plan, *args, **kwargs)

    monkeypatch.setattr(Subscriptions, "start", dying)
    assert runner("subscribe", "alice", "Pro").exit_code == 130
    made = stripe_subscriptions(tmp_path)
    assert len(made) == 1
    assert J(runner("customers", "show", "alice", "--json"))["subscription"] is None  # half, for now
    sub = J(runner("subscribe", "alice", "Pro", "--json"))
    assert sub["stripe_subscription_id"] == made[0].id and len(stripe_subscriptions(tmp_path)) == 1
    assert J(runner("credits", "balance", "alice", "api_calls", "--json"))["balance"] == 100
    J(runner("record", "alice", "api_calls", "150", "--json"))
    J(runner("testclock", "advance", alice, "--to", "+1month2h", "--json"))
    cycle = [i for i in J(runner("invoices", "list", "alice", "--json")) if i["billing_reason"] == "subscription_cycle"]
    lines = J(runner("invoices", "show", cycle[0]["id"], "--json"))["lines"]
    assert [(x["description"], x["quantity"], x["amount"]) for x in lines] == [("Pro", 1, 2000), ("API Calls", 150, 1500)]
    assert runner("reconcile", "--closed-only").exit_code == 0
