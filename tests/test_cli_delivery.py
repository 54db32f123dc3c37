"""push, status, reconcile and the delivery in record / charge, through the CLI on the sandbox
(state in a file beside the ledger, so consecutive commands see the same Stripe)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def J(result, code=0):
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


@pytest.fixture
def alice(runner):
    assert runner("sync").exit_code == 0
    assert runner("customers", "add", "alice").exit_code == 0
    assert runner("subscribe", "alice", "Pro").exit_code == 0
    return "alice"


def sandbox_conn(config_path):
    """A library connection to the CLI's sandbox (the file beside the ledger)."""
    from usagebill.gateway.client import connect

    return connect(ledger_path=config_path.parent / ".usagebill" / "ledger.db")


def test_record_delivers_at_once_and_no_push_leaves_it_for_push(runner, alice):
    event = J(runner("record", "alice", "api_calls", "150", "--json"))
    assert event["delivery"] == {"status": "delivered"}
    later = J(runner("record", "alice", "api_calls", "5", "--no-push", "--json"))
    assert later["delivery"] == {"status": "pending"}
    assert J(runner("status", "--json")) == {
        "pending": 1, "delivered": 1, "failed": 0, "invoiced_late": 0, "not_in_stripe": {}, "failed_events": [],
        "late_items": []}
    pushed = J(runner("push", "--json"))
    assert {k: pushed[k] for k in ("delivered", "already_delivered", "failed", "still_pending", "requests")} == {
        "delivered": 1, "already_delivered": 0, "failed": 0, "still_pending": 0, "requests": 1}
    assert J(runner("status", "alice", "--json"))["delivered"] == 2
    lines = J(runner("reconcile", "--json"))
    assert [(x["user_id"], x["key"], x["ledger"], x["stripe"], x["difference"]) for x in lines] == [
        ("alice", "api_calls", 155, 155, 0)]
    r = runner("reconcile")
    assert r.exit_code == 0 and "Stripe matches the ledger" in r.stderr
    assert r.stdout.startswith("user_id\tkey\tperiod_start\tperiod_end\tstate\tledger\tstripe\tdifference\tpending\nalice\tapi_calls\t")


def test_stripe_down_record_is_kept_exits_4_and_push_delivers_it_later(runner, alice, monkeypatch):
    monkeypatch.setenv("USAGEBILL_SANDBOX_FAULTS", "5xx=1.0")
    r = runner("record", "alice", "api_calls", "7", "--id", "cron-1", "--json")
    assert r.exit_code == 4, r.output
    event = json.loads(r.stdout)
    assert event["delivery"]["status"] == "pending" and "500" in event["delivery"]["reason"]
    assert "usagebill push will retry" in r.stderr and "Traceback" not in r.output
    # a cron job that retries with the same --id records nothing twice
    again = runner("record", "alice", "api_calls", "7", "--id", "cron-1", "--json")
    assert again.exit_code == 4 and json.loads(again.stdout)["replayed"] is True
    r = runner("push")
    assert r.exit_code == 4 and "Error: meter event: Stripe said 500" in r.stderr
    assert "1 event(s) stay pending for the next usagebill push" in r.stderr
    monkeypatch.delenv("USAGEBILL_SANDBOX_FAULTS")
    r = runner("push")
    assert r.exit_code == 0, r.output
    assert r.stdout == "delivered\talready_delivered\tfailed\tpending\tinvoiced_late\trequests\tbatches\n1\t0\t0\t0\t0\t1\t0\n"
    assert J(runner("summary", "alice", "--key", "api_calls", "--json"))["features"][0]["total_amount"] == 7
    assert J(runner("reconcile", "--json"))[0]["stripe"] == 7


def test_a_refused_event_exits_4_and_status_lists_it_with_stripes_reason(runner, alice, config_path, monkeypatch):
    assert runner("customers", "add", "bob").exit_code == 0
    assert runner("subscribe", "bob", "Pro").exit_code == 0
    bob = J(runner("customers", "show", "bob", "--json"))["stripe_customer_id"]
    sandbox_conn(config_path).client.v1.customers.delete(bob)
    r = runner("record", "bob", "api_calls", "3", "--json")
    assert r.exit_code == 4
    event = json.loads(r.stdout)
    assert event["delivery"] == {"status": "failed",
                                 "reason": f"Stripe said 400 (resource_missing): No such customer: '{bob}'"}
    assert "Stripe refused it" in r.stderr
    status = J(runner("status", "--json"))
    assert (status["pending"], status["delivered"], status["failed"]) == (0, 0, 1)
    assert [(f["id"], f["user_id"], f["key"], f["amount"], f["reason"]) for f in status["failed_events"]] == [
        (event["id"], "bob", "api_calls", 3, event["delivery"]["reason"])]
    r = runner("status")
    assert r.exit_code == 0 and r.stdout == "pending\tdelivered\tfailed\tinvoiced_late\n0\t0\t1\t0\n"
    monkeypatch.setenv("USAGEBILL_FORCE_TTY", "200")
    r = runner("status")
    assert r.exit_code == 0 and "0 pending, 0 delivered, 1 failed" in r.stdout and "No such customer" in r.stdout


def test_push_reports_refusals_with_exit_4(runner, alice, config_path):
    assert runner("customers", "add", "bob").exit_code == 0
    assert runner("subscribe", "bob", "Pro").exit_code == 0
    J(runner("record", "bob", "api_calls", "3", "--no-push", "--json"))
    J(runner("record", "alice", "api_calls", "2", "--no-push", "--json"))
    bob = J(runner("customers", "show", "bob", "--json"))["stripe_customer_id"]
    sandbox_conn(config_path).client.v1.customers.delete(bob)
    r = runner("push", "--json")
    assert r.exit_code == 4 and "Error: Stripe refused 1 event(s): see usagebill status" in r.stderr
    out = json.loads(r.stdout)
    assert (out["delivered"], out["failed"], out["still_pending"]) == (1, 1, 0)


def test_push_coalesce(runner, alice):
    for amount in (1, 2, 3):
        J(runner("record", "alice", "api_calls", str(amount), "--no-push", "--json"))
    out = J(runner("push", "--coalesce", "--json"))
    assert (out["delivered"], out["batches"], out["requests"]) == (3, 1, 1)
    assert J(runner("reconcile", "alice", "--json"))[0]["stripe"] == 6


def test_reconcile_exits_1_on_a_difference(runner, alice, config_path):
    J(runner("record", "alice", "api_calls", "10", "--json"))
    cus = J(runner("customers", "show", "alice", "--json"))["stripe_customer_id"]
    sandbox_conn(config_path).client.v1.billing.meter_events.create(params={
        "event_name": "api_calls", "identifier": "extra-1", "payload": {"stripe_customer_id": cus, "value": "5"}})
    r = runner("reconcile", "--json")
    assert r.exit_code == 1 and "Error: 1 difference(s) between the ledger and Stripe" in r.stderr
    assert [(x["ledger"], x["stripe"], x["difference"]) for x in json.loads(r.stdout)] == [(10, 15, 5)]
    r = runner("reconcile")
    assert r.exit_code == 1 and "\t10\t15\t+5\t\n" in r.stdout


def test_charge_delivers_its_usage_part(runner, alice):
    r = J(runner("charge", "alice", "api_calls", "130", "--json"))
    assert (r["from_credits"], r["as_usage"], r["delivery"]) == (100, 30, {"status": "delivered"})
    assert J(runner("charge", "alice", "api_calls", "2", "--no-push", "--json"))["delivery"] == {"status": "pending"}
    assert J(runner("status", "--json"))["pending"] == 1


@pytest.mark.sqlite_only(reason="the record runs in a subprocess that opens the ledger by path")
def test_record_no_push_does_not_import_stripe(runner, alice, config_path):
    code = (
        "import sys; from usagebill.cli import cli\n"
        f"cli(['--config', {str(config_path)!r}, 'record', 'alice', 'api_calls', '2', '--no-push'], standalone_mode=False)\n"
        "print('stripe' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "False"
    assert J(runner("status", "--json"))["pending"] == 1
