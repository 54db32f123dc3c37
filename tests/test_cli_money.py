"""Credits over billing periods through the CLI, on the sandbox's Stripe with a test clock:
grants survive a reset, the invoice bills what the credits did not cover; histories."""

from tests.test_cli_stripe import J, on_clock  # noqa: F401  (alice on Pro, on a test clock at 2026-01-01)


def test_a_purchase_survives_the_reset_and_the_invoice_bills_the_rest(runner, on_clock):
    J(runner("credits", "grant", "alice", "api_calls", "50", "--id", "purchase-1", "--json"))
    J(runner("credits", "consume", "alice", "api_calls", "70", "--json"))  # from the allocation
    parts = J(runner("credits", "balance", "alice", "api_calls", "--json"))
    assert (parts["balance"], parts["included"], parts["granted"]) == (80, 30, 50)
    J(runner("testclock", "advance", on_clock, "--to", "2026-02-01T02:00:00Z", "--json"))
    parts = J(runner("credits", "balance", "alice", "api_calls", "--json"))
    assert (parts["balance"], parts["included"], parts["granted"]) == (150, 100, 50)  # 30 expired, 50 kept
    r = J(runner("charge", "alice", "api_calls", "180", "--json"))
    assert (r["from_credits"], r["as_usage"], r["delivery"]["status"]) == (150, 30, "delivered")
    J(runner("testclock", "advance", on_clock, "--to", "2026-03-01T02:00:00Z", "--json"))
    invoices = J(runner("invoices", "list", "alice", "--json"))
    march = [i for i in invoices if i["billing_reason"] == "subscription_cycle"][0]  # newest first
    lines = J(runner("invoices", "show", march["id"], "--json"))["lines"]
    assert [(x["description"], x["quantity"], x["amount"]) for x in lines] == [("Pro", 1, 2000), ("API Calls", 30, 300)]
    assert march["total"] == 2300
    history = J(runner("credits", "history", "alice", "api_calls", "--json"))
    assert [(e["reason"], e["delta"]) for e in history][:3] == [("renewal_reset", 100), ("charge", -150),
                                                                 ("renewal_reset", 70)]


def test_grant_with_an_expiry_on_the_command_line(runner, on_clock):
    r = J(runner("credits", "grant", "alice", "api_calls", "20", "--expires", "2026-01-10", "--json"))
    assert (r["expires_at"], r["balance"]) == ("2026-01-10T00:00:00Z", 120)
    J(runner("testclock", "advance", on_clock, "--to", "2026-01-11T00:00:00Z", "--json"))
    assert J(runner("credits", "balance", "alice", "api_calls", "--json"))["lots"] == []
    assert J(runner("credits", "balance", "alice", "api_calls", "--json"))["balance"] == 100
    r = runner("credits", "grant", "alice", "api_calls", "1", "--expires", "2026-01-01")
    assert r.exit_code == 1 and "is not after 'alice''s now" in r.output


def test_history_every_row_feature_column_key_column_iso_times(runner, on_clock):
    for i in range(60):
        runner("credits", "consume", "alice", "api_calls", "1", "--id", f"c-{i}")
    rows = J(runner("credits", "history", "alice", "--json"))
    assert len(rows) == 61  # every row, not the newest 50
    assert rows[0]["feature"] == "api_calls" and rows[0]["idempotency_key"] == "c-59"
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


def test_idle_periods_on_a_test_clock_each_get_their_allocation(runner):
    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))
    J(runner("customers", "add", "tess", "--test-clock", clock["id"], "--json"))
    J(runner("subscribe", "tess", "Team", "--interval", "month", "--json"))  # wallet 500 and 10 exports, "add"
    J(runner("testclock", "advance", clock["id"], "--to", "2026-03-01T00:00:00Z", "--json"))  # two periods, untouched
    assert J(runner("wallet", "balance", "tess", "--json"))["balance"] == 3 * 500
    assert J(runner("credits", "balance", "tess", "exports", "--json"))["balance"] == 3 * 10
    invoices = J(runner("invoices", "list", "tess", "--json"))
    assert sorted((i["billing_reason"], i["total"]) for i in invoices) == [
        ("subscription_create", 5000), ("subscription_cycle", 5000), ("subscription_cycle", 5000)]
    debits = [J(runner("charge", "tess", "ai_tokens", "1", "--json"))["wallet_debit"] for _ in range(3)]
    assert debits == [1, 0, 1]  # 0.5c a token: 1.5c rounded up, none free
    assert J(runner("wallet", "balance", "tess", "--json"))["balance"] == 1500 - 2
