"""``reconcile`` compares the ledger with what Stripe billed on its finalized invoices (usage
lines plus late-usage invoice items), fails in words on money at risk, and ``--closed-only``
is the cron check: non-zero exactly when a closed period is billed otherwise than the ledger."""

import json

from usagebill.gateway import late_usage
from usagebill.gateway.clocks import advance_clock
from usagebill.gateway.delivery import push
from usagebill.gateway.reconcile import reconcile
from tests.lifecycle import app, invoices, lines, on_clock  # noqa: F401 (app: a fixture)


def by_period(r):
    return {(x.feature, x.state, x.period_start): (x.ledger, x.stripe, x.pending) for x in r.lines}


def test_closed_periods_are_compared_with_the_invoice_and_open_ones_with_the_meter(app):
    clock = on_clock(app, "alice", "Team")
    app.usage.record("alice", "api_calls", 40)
    app.usage.record("alice", "ai_tokens", 1000)
    advance_clock(app, app.connection, clock, "+1month2h")
    app.usage.record("alice", "api_calls", 3)
    app.usage.record("alice", "api_calls", 2, push=False)
    r = reconcile(app, app.connection)
    jan, feb = 1767225600, 1769904000
    (inv,) = invoices(app)
    assert by_period(r) == {
        ("api_calls", "closed", jan): (40, 40, 0), ("ai_tokens", "closed", jan): (1000, 1000, 0),
        ("api_calls", "open", feb): (3, 3, 2), ("ai_tokens", "open", feb): (0, 0, 0),
    }
    assert {x.invoice_id for x in r.lines if x.state == "closed"} == {inv.id}
    assert r.ok and r.at_risk == []


def test_usage_delivered_after_finalization_is_money_at_risk(app, monkeypatch):
    """What push did before: send a finalized period's usage as meter events (accepted, billed
    on no invoice) and exit 0. reconcile must not agree."""
    clock = on_clock(app)
    app.usage.record("alice", "api_calls", 40)
    app.usage.record("alice", "api_calls", 5, push=False)
    advance_clock(app, app.connection, clock, "+1month2h")
    monkeypatch.setattr(late_usage.LateBilling, "run", lambda self: None)
    assert push(app, app.connection).delivered == 1  # the meter took it
    r = reconcile(app, app.connection)
    (risk,) = r.at_risk
    assert (risk.feature, risk.ledger, risk.stripe, risk.difference, risk.pending) == ("api_calls", 45, 40, -5, 0)
    assert not r.ok


def test_pending_usage_of_a_closed_period_fails_until_push_bills_it_late(app):
    clock = on_clock(app)
    app.usage.record("alice", "api_calls", 40)
    app.usage.record("alice", "api_calls", 5, push=False)
    advance_clock(app, app.connection, clock, "+1month2h")
    (risk,) = reconcile(app, app.connection, closed_only=True).at_risk
    assert (risk.ledger, risk.stripe, risk.pending) == (45, 40, 5)
    push(app, app.connection)
    r = reconcile(app, app.connection, closed_only=True)
    assert r.ok and [(x.state, x.ledger, x.stripe, x.late) for x in r.lines] == [("closed", 45, 45, 5)]
    advance_clock(app, app.connection, clock, "+1month")  # the late item lands on Feb's invoice
    jan, feb = invoices(app)
    assert lines(feb)[0] == ("API Calls (Jan 01-Feb 01, reported late)", 5, 50)
    r = reconcile(app, app.connection)
    assert r.ok and [(x.period_start, x.ledger, x.stripe) for x in r.lines if x.state == "closed"] == [
        (1769904000, 0, 0), (1767225600, 45, 45)]


def test_cli_reconcile_says_it_in_words_and_closed_only_is_the_cron_check(runner, monkeypatch):
    def run(*args):
        return runner(*args)

    assert run("sync").exit_code == 0
    clock = json.loads(run("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json").stdout)["id"]
    assert run("customers", "add", "alice", "--test-clock", clock).exit_code == 0
    assert run("subscribe", "alice", "Pro").exit_code == 0
    assert run("record", "alice", "api_calls", "40").exit_code == 0
    assert run("record", "alice", "api_calls", "5", "--no-push").exit_code == 0
    r = run("reconcile", "--closed-only")
    assert r.exit_code == 0 and "Stripe matches the ledger" in r.stderr  # nothing closed yet
    r = run("reconcile")
    assert r.exit_code == 0 and "5 unit(s) of the open period are not in Stripe yet" in r.stderr
    assert run("testclock", "advance", clock, "--to", "+1month2h").exit_code == 0
    r = run("reconcile", "--closed-only")
    assert r.exit_code == 1, r.output
    assert "Money at risk: alice api_calls 2026-01-01T00:00:00Z .. 2026-02-01T00:00:00Z" in r.stderr
    assert "the ledger has 45 unit(s), Stripe billed 40" in r.stderr and "5 unit(s) not billed" in r.stderr
    assert "5 still pending: usagebill push bills them" in r.stderr
    assert "money at risk in 1 closed period(s)" in r.stderr and "Traceback" not in r.output
    out = json.loads(run("reconcile", "--closed-only", "--json").stdout)
    assert [(x["state"], x["ledger"], x["stripe"], x["pending"], x["at_risk"]) for x in out] == [
        ("closed", 45, 40, 5, True)]
    assert run("push").exit_code == 0
    r = run("reconcile", "--closed-only")
    assert r.exit_code == 0, r.output
    assert "every closed period is billed as the ledger says" in r.stderr
