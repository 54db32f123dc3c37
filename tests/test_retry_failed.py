"""Refused usage can be finished: an event Stripe refused (its meter was inactive) stays
failed, `reconcile` counts it as money at risk, `status` says a retry can succeed once the
cause is fixed, and after `sync` reactivates the meter `push --retry-failed` delivers it:
reconcile is clean and the invoice bills it."""

import json

from tests.test_cli_stripe import J, on_clock  # noqa: F401  (alice on Pro, on a test clock at 2026-01-01)


def deactivate_meter(tmp_path):
    from usagebill.gateway.client import connect
    from usagebill.ledger import mapping
    from usagebill.ledger.db import open_ledger

    ledger = open_ledger(tmp_path / ".usagebill" / "ledger.db")
    meter = mapping.get(ledger, "meter:api_calls")
    ledger.close()
    connect(ledger_path=tmp_path / ".usagebill" / "ledger.db").client.v1.billing.meters.deactivate(meter)


def test_a_refused_event_is_retried_after_the_fix(runner, on_clock, tmp_path):
    J(runner("record", "alice", "api_calls", "5", "--json"))
    deactivate_meter(tmp_path)
    r = runner("record", "alice", "api_calls", "30", "--json")
    assert r.exit_code == 4 and json.loads(r.stdout)["delivery"]["status"] == "failed"
    refused = json.loads(r.stdout)["id"]
    r = runner("reconcile")  # 30 units never sent: money at risk, not "Stripe matches"
    assert r.exit_code == 1 and "30 unit(s) refused by Stripe" in r.stderr
    failed = J(runner("status", "--json"))["failed_events"]
    assert [(f["id"], f["amount"], f["retry"]) for f in failed] == [(refused, 30, "after a fix")]
    assert "usagebill sync" in failed[0]["retry_why"]
    r = runner("status")
    assert "Retry can succeed for 1 of them? after a fix" in r.stderr and "push --retry-failed" in r.stderr
    assert runner("sync").exit_code == 0  # reactivates the meter
    assert J(runner("push", "--json"))["delivered"] == 0  # a plain push leaves failed events alone
    r = runner("push", "--retry-failed", "--id", refused, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["delivered"] == 1 and "1 refused event(s) sent again" in r.stderr
    status = J(runner("status", "--json"))
    assert (status["failed"], status["pending"], status["delivered"]) == (0, 0, 2)
    assert runner("reconcile").exit_code == 0
    J(runner("testclock", "advance", on_clock, "--to", "+1month2h", "--json"))
    cycle = [i for i in J(runner("invoices", "list", "alice", "--json")) if i["billing_reason"] == "subscription_cycle"]
    lines = J(runner("invoices", "show", cycle[0]["id"], "--json"))["lines"]
    assert ("API Calls", 35, 350) in [(x["description"], x["quantity"], x["amount"]) for x in lines]
    assert runner("reconcile", "--closed-only").exit_code == 0


def test_retry_failed_arguments(runner, on_clock):
    r = runner("push", "--id", "ube_x")
    assert r.exit_code == 2 and "--retry-failed" in r.stderr
    r = runner("push", "--retry-failed", "--id", "ube_nope")
    assert r.exit_code == 1 and "not a failed usage event: ube_nope" in r.stderr
    r = runner("push", "--retry-failed")
    assert r.exit_code == 0 and "No refused event to send again" in r.stderr


def test_a_refusal_too_old_for_stripe_says_a_retry_cannot_succeed(billing):
    from usagebill.gateway.retry import outlook
    from usagebill.ledger.outbox import FailedEvent

    billing.customers.add("old")
    billing.subscriptions.start("old", "Pro", anchor=0)
    now = billing.now_for("old")
    o = outlook(billing, FailedEvent("ube_1", "old", "api_calls", 3, now - 40 * 86400, "Timestamp must be within"))
    assert o.retry == "no" and "35 days" in o.why


def test_a_refusal_of_a_period_since_invoiced_is_billed_late_on_retry(runner, on_clock, tmp_path):
    deactivate_meter(tmp_path)
    r = runner("record", "alice", "api_calls", "30", "--json")
    assert r.exit_code == 4
    J(runner("testclock", "advance", on_clock, "--to", "+1month2h", "--json"))  # January's invoice is final
    failed = J(runner("status", "--json"))["failed_events"]
    assert [(f["amount"], f["retry"]) for f in failed] == [(30, "yes")] and "late usage" in failed[0]["retry_why"]
    assert runner("reconcile", "--closed-only").exit_code == 1  # 30 units of January at risk
    assert runner("sync").exit_code == 0
    r = runner("push", "--retry-failed", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["invoiced_late"] == 1
    J(runner("testclock", "advance", on_clock, "--to", "+1month", "--json"))  # February's invoice bills it
    cycles = [i for i in J(runner("invoices", "list", "alice", "--json")) if i["billing_reason"] == "subscription_cycle"]
    feb = J(runner("invoices", "show", cycles[0]["id"], "--json"))["lines"]
    assert ("API Calls (Jan 01-Feb 01, reported late)", 30, 300) in [
        (x["description"], x["quantity"], x["amount"]) for x in feb], feb
    assert runner("reconcile", "--closed-only").exit_code == 0
    r = runner("doctor")  # late-usage states are states the ledger knows
    assert r.exit_code == 0, r.stderr
