"""Credits over billing periods through the CLI, on the sandbox's Stripe with a test clock:
grants survive a reset, the invoice bills what the credits did not cover; histories."""

import json

import pytest


def J(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def alice(runner):
    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--name", "t", "--json"))
    J(runner("customers", "add", "alice", "--email", "alice@example.com", "--test-clock", clock["id"], "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))  # 100 included api_calls, reset each month
    return clock["id"]


def test_a_purchase_survives_the_reset_and_the_invoice_bills_the_rest(runner, alice):
    J(runner("credits", "grant", "alice", "api_calls", "50", "--id", "purchase-1", "--json"))
    J(runner("credits", "consume", "alice", "api_calls", "70", "--json"))  # from the allocation
    parts = J(runner("credits", "balance", "alice", "api_calls", "--json"))
    assert (parts["balance"], parts["included"], parts["granted"]) == (80, 30, 50)
    J(runner("testclock", "advance", alice, "--to", "2026-02-01T02:00:00Z", "--json"))
    parts = J(runner("credits", "balance", "alice", "api_calls", "--json"))
    assert (parts["balance"], parts["included"], parts["granted"]) == (150, 100, 50)  # 30 expired, 50 kept
    r = J(runner("charge", "alice", "api_calls", "180", "--json"))
    assert (r["from_credits"], r["as_usage"], r["delivery"]["status"]) == (150, 30, "delivered")
    J(runner("testclock", "advance", alice, "--to", "2026-03-01T02:00:00Z", "--json"))
    invoices = J(runner("invoices", "list", "alice", "--json"))
    march = [i for i in invoices if i["billing_reason"] == "subscription_cycle"][0]  # newest first
    lines = J(runner("invoices", "show", march["id"], "--json"))["lines"]
    assert [(x["description"], x["quantity"], x["amount"]) for x in lines] == [("Pro", 1, 2000), ("API Calls", 30, 300)]
    assert march["total"] == 2300
    history = J(runner("credits", "history", "alice", "api_calls", "--json"))
    assert [(e["reason"], e["delta"]) for e in history][:3] == [("renewal_reset", 100), ("charge", -150),
                                                                 ("renewal_reset", 70)]


def test_grant_with_an_expiry_on_the_command_line(runner, alice):
    r = J(runner("credits", "grant", "alice", "api_calls", "20", "--expires", "2026-01-10", "--json"))
    assert (r["expires_at"], r["balance"]) == ("2026-01-10T00:00:00Z", 120)
    J(runner("testclock", "advance", alice, "--to", "2026-01-11T00:00:00Z", "--json"))
    assert J(runner("credits", "balance", "alice", "api_calls", "--json"))["lots"] == []
    assert J(runner("credits", "balance", "alice", "api_calls", "--json"))["balance"] == 100
    r = runner("credits", "grant", "alice", "api_calls", "1", "--expires", "2026-01-01")
    assert r.exit_code == 1 and "is not after 'alice''s now" in r.output


def test_history_every_row_feature_column_key_column_iso_times(runner, alice):
    for i in range(60):
        runner("credits", "consume", "alice", "api_calls", "1", "--id", f"c-{i}")
    rows = J(runner("credits", "history", "alice", "--json"))
    assert len(rows) == 61  # every row, not the newest 50
    assert rows[0]["unit"] == "api_calls" and rows[0]["idempotency_key"] == "c-59"
    assert rows[0]["created_at"] == "2026-01-01T00:00:00Z" and rows[-1]["period_start"] == "2026-01-01T00:00:00Z"
    r = runner("credits", "history", "alice")
    header = r.stderr.splitlines()[1]
    assert "feature" in header and "idempotency key" in header
    r = runner("credits", "history", "alice", "--limit", "10")
    assert len([line for line in r.stderr.splitlines() if "api_calls" in line]) == 10
    assert "the newest 10 rows; older ones exist" in r.stderr
    r = runner("credits", "history", "alice", "--limit", "61")
    assert "older ones exist" not in r.stderr
    assert J(runner("credits", "history", "alice", "--since", "2026-01-02", "--json")) == []
    assert len(J(runner("wallet", "history", "alice", "--since", "2026-01-01", "--json"))) == 0
