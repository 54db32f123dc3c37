"""An event sent more than 23 hours ago and never confirmed (a push killed long ago) is not
re-sent blindly: Stripe keeps identifiers unique for 24 hours only, so a re-send could count
it twice. push compares Stripe's meter total for its minute with what the ledger delivered
there: Stripe has it -> confirmed without sending; Stripe has none -> re-sent, counted once;
doubt -> it stays pending, and push says so."""

import json
import time

import pytest

from tests.test_cli_stripe import J

from usagebill.gateway.client import connect
from usagebill.ledger import mapping
from usagebill.ledger.db import open_ledger



@pytest.fixture
def world(runner, tmp_path):
    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))["id"]
    J(runner("customers", "add", "alice", "--test-clock", clock, "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    J(runner("testclock", "advance", clock, "--to", "2026-01-10T00:00:00Z", "--json"))
    db = tmp_path / ".usagebill" / "ledger.db"
    return db, connect(ledger_path=db)


def sent_long_ago(db, event_ids):
    """As if a push sent these on their own 24 hours ago and was killed before the verdict."""
    ledger = open_ledger(db)
    with ledger.transaction() as c:
        for i in event_ids:
            c.execute("INSERT INTO event_delivery (event_id, status, attempts, updated_at, first_sent_at) "
                      "VALUES (?, 'sending', 1, ?, ?)", (i, int(time.time()) - 24 * 3600, int(time.time()) - 24 * 3600))
    ledger.close()


def stripe_total(db, conn, customer):
    ledger = open_ledger(db)
    meter = mapping.get(ledger, "meter:api_calls")
    ledger.close()
    t0 = 1767225600  # 2026-01-01
    page = conn.client.v1.billing.meters.event_summaries.list(
        meter, params={"customer": customer, "start_time": t0, "end_time": t0 + 40 * 86400})
    return sum(s.aggregated_value for s in page.auto_paging_iter())


def record(runner, n):
    return J(runner("record", "alice", "api_calls", str(n), "--no-push", "--json"))


def test_stripe_has_it_so_it_is_confirmed_not_sent_again(runner, world):
    db, conn = world
    e = record(runner, 7)
    customer = J(runner("customers", "show", "alice", "--json"))["stripe_customer_id"]
    conn.client.v1.billing.meter_events.create({  # the long-ago push did reach Stripe
        "event_name": "api_calls", "identifier": e["id"], "timestamp": 1768003200,
        "payload": {"stripe_customer_id": customer, "value": "7"}})
    sent_long_ago(db, [e["id"]])
    pushed = J(runner("push", "--json"))
    assert (pushed["delivered"], pushed["already_delivered"], pushed["still_pending"]) == (0, 1, 0)
    assert pushed["requests"] == 0  # confirmed from Stripe's totals, not sent again
    assert stripe_total(db, conn, customer) == 7  # once, not twice
    assert runner("reconcile").exit_code == 0


def test_stripe_has_none_so_it_is_sent_once(runner, world):
    db, conn = world
    e = record(runner, 9)
    customer = J(runner("customers", "show", "alice", "--json"))["stripe_customer_id"]
    sent_long_ago(db, [e["id"]])
    pushed = J(runner("push", "--json"))
    assert (pushed["delivered"], pushed["still_pending"]) == (1, 0)
    assert stripe_total(db, conn, customer) == 9
    assert runner("reconcile").exit_code == 0


def test_doubt_keeps_them_pending_and_says_so(runner, world):
    db, conn = world
    a, b = record(runner, 3), record(runner, 4)
    customer = J(runner("customers", "show", "alice", "--json"))["stripe_customer_id"]
    conn.client.v1.billing.meter_events.create({  # Stripe holds 5 units in that minute: neither 0 nor 7
        "event_name": "api_calls", "identifier": "someone-else", "timestamp": 1768003200,
        "payload": {"stripe_customer_id": customer, "value": "5"}})
    sent_long_ago(db, [a["id"], b["id"]])
    r = runner("push")
    assert "sent more than 23 hours ago" in r.stderr
    assert J(runner("status", "--json"))["pending"] == 2
    assert stripe_total(db, conn, customer) == 5  # nothing sent twice


def test_stripe_has_none_and_its_period_was_invoiced_so_it_is_billed_late(runner, world):
    db, conn = world
    e = record(runner, 6)
    sent_long_ago(db, [e["id"]])
    clock = J(runner("customers", "show", "alice", "--json"))["test_clock"]
    J(runner("testclock", "advance", clock, "--to", "2026-02-01T02:00:00Z", "--json"))  # January is final
    pushed = J(runner("push", "--json"))
    assert (pushed["delivered"], pushed["invoiced_late"], pushed["still_pending"]) == (0, 1, 0)
    J(runner("testclock", "advance", clock, "--to", "+1month", "--json"))
    cycles = [i for i in J(runner("invoices", "list", "alice", "--json")) if i["billing_reason"] == "subscription_cycle"]
    lines = J(runner("invoices", "show", cycles[0]["id"], "--json"))["lines"]
    assert ("API Calls (Jan 01-Feb 01, reported late)", 6, 60) in [(x["description"], x["quantity"], x["amount"]) for x in lines]
    assert runner("reconcile", "--closed-only").exit_code == 0
    assert runner("doctor", "--offline").exit_code == 0


def test_a_stale_batch_stripe_never_got_is_dissolved_and_its_events_sent(runner, world):
    from usagebill.ledger import outbox

    db, conn = world
    a, b = record(runner, 2), record(runner, 3)
    customer = J(runner("customers", "show", "alice", "--json"))["stripe_customer_id"]
    ledger = open_ledger(db)
    batches, _ = outbox.coalesce(ledger, outbox.Scope(), lambda row: ("alice", row["feature"]), after_seq=0, limit=10)
    assert len(batches) == 1  # written before sending, then the push was killed, a day ago
    with ledger.transaction() as c:
        c.execute("UPDATE delivery_batches SET created_at = ?", (int(time.time()) - 24 * 3600,))
    ledger.close()
    pushed = J(runner("push", "--json"))
    assert (pushed["delivered"], pushed["still_pending"], pushed["batches"]) == (2, 0, 0)
    assert stripe_total(db, conn, customer) == 5
    assert runner("doctor", "--offline").exit_code == 0
    assert runner("reconcile").exit_code == 0
