"""Late usage is never silently lost: usage for a period whose invoice Stripe has finalized is
refused when it is new, and billed on the next invoice (as an invoice item that says so) when
it was already pending; within the grace hour it still makes the draft."""

import json

import pytest

from usagebill import ValidationError
from usagebill.gateway.clocks import advance_clock
from usagebill.gateway.delivery import delivery_status, push
from tests.lifecycle import app, invoices, lines, on_clock  # noqa: F401 (app: a fixture)


LATE = "API Calls (Jan 01-Feb 01, reported late)"



def test_pending_usage_of_a_finalized_period_is_billed_once_on_the_next_invoice(app):
    clock = on_clock(app)
    app.usage.record("alice", "api_calls", 40)
    app.usage.record("alice", "api_calls", 5, push=False)  # Stripe was down, say
    app.usage.record("alice", "api_calls", 2, push=False)
    advance_clock(app, app.connection, clock, "+1month2h")  # Jan's invoice finalized at Feb 1 01:00
    (jan,) = invoices(app)
    assert jan.status != "draft" and lines(jan) == [("Pro", 1, 2000), ("API Calls", 40, 400)]

    r = push(app, app.connection)
    assert (r.delivered, r.invoiced_late, r.still_pending, r.error) == (0, 2, 0, None)
    assert app.connection.sandbox.store.db.execute("SELECT SUM(value) FROM meter_events").fetchone() == (40,)
    again = push(app, app.connection)  # nothing twice
    assert (again.delivered, again.invoiced_late, again.requests) == (0, 0, 0)

    s = delivery_status(app)
    assert (s.pending, s.delivered, s.invoiced_late) == (0, 1, 2)
    (item,) = s.late_items
    assert (item.description, item.quantity, item.missed_invoice, item.status) == (LATE, 7, jan.id, "created")

    advance_clock(app, app.connection, clock, "+1month")
    jan, feb = invoices(app)
    assert lines(feb) == [(LATE, 7, 70), ("Pro", 1, 2000), ("API Calls", 0, 0)] and feb.total == 2070
    assert lines(jan) == [("Pro", 1, 2000), ("API Calls", 40, 400)]  # unchanged


def test_new_usage_for_a_finalized_period_is_refused_naming_the_invoice(app, tmp_path):
    clock = on_clock(app)
    advance_clock(app, app.connection, clock, "+1month2h")
    (jan,) = invoices(app)
    with pytest.raises(ValidationError) as e:
        app.usage.record("alice", "api_calls", 3, at="2026-01-20T00:00:00Z")
    assert jan.id in str(e.value) and "already invoiced" in str(e.value) and "without --at" in str(e.value)
    f = tmp_path / "u.csv"
    f.write_text("user_id,key,amount,timestamp\nalice,api_calls,1,2026-01-31T23:00:00Z\n"
                 "alice,api_calls,2,2026-02-01T00:00:00Z\n")
    r = app.usage.import_rows(f)
    assert (r.imported, r.rejected) == (1, 1)
    (err,) = r.errors
    assert (err.line, err.column) == (2, "timestamp") and jan.id in err.reason
    # the period's first second is the new period's: half-open [start, end)
    assert app.usage.get_summary("alice", "api_calls").total_amount == 2


def test_usage_sent_in_the_grace_hour_makes_the_draft(app):
    clock = on_clock(app)
    app.usage.record("alice", "api_calls", 10)
    advance_clock(app, app.connection, clock, "+1month30m")  # Feb 1 00:30: the renewal is a draft
    (jan,) = invoices(app)
    assert jan.status == "draft"
    late = app.usage.record("alice", "api_calls", 5, at="2026-01-31T23:50:00Z")
    assert late.delivery.status == "delivered"  # a meter event: the draft is still open to it
    advance_clock(app, app.connection, clock, "+1h")
    (jan,) = invoices(app)
    assert jan.status != "draft" and lines(jan) == [("Pro", 1, 2000), ("API Calls", 15, 150)]
    assert delivery_status(app).late_items == []


def test_push_in_the_grace_hour_still_makes_the_draft(app):
    clock = on_clock(app)
    app.usage.record("alice", "api_calls", 8, push=False)  # pending when the period ends
    advance_clock(app, app.connection, clock, "+1month20m")
    r = push(app, app.connection)
    assert (r.delivered, r.invoiced_late) == (1, 0)
    advance_clock(app, app.connection, clock, "+1h")
    (jan,) = invoices(app)
    assert jan.status != "draft" and lines(jan) == [("Pro", 1, 2000), ("API Calls", 8, 80)]


def test_a_late_item_cut_short_is_sent_again_with_the_same_key(app, monkeypatch):
    from usagebill.ledger import outbox

    clock = on_clock(app)
    app.usage.record("alice", "api_calls", 4, push=False)
    advance_clock(app, app.connection, clock, "+1month2h")
    monkeypatch.setattr(outbox, "mark_late_item", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed after Stripe made the item, before the ledger knew
        push(app, app.connection)
    monkeypatch.undo()
    assert push(app, app.connection).invoiced_late == 1
    items = app.connection.client.v1.invoice_items.list(params={"customer": app.customers.get("alice").stripe_customer_id})
    assert [(i.description, i.quantity) for i in items.data] == [(LATE, 4)]


def test_cli_status_and_record_say_what_happened_to_late_usage(runner, monkeypatch):
    def J(r, code=0):
        assert r.exit_code == code, r.output
        return json.loads(r.stdout)

    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))["id"]
    J(runner("customers", "add", "alice", "--test-clock", clock, "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    J(runner("record", "alice", "api_calls", "6", "--no-push", "--json"))
    J(runner("testclock", "advance", clock, "--to", "+1month2h", "--json"))
    r = runner("record", "alice", "api_calls", "1", "--at", "2026-01-31T00:00:00Z")
    assert r.exit_code == 1 and "already invoiced" in r.stderr and "Traceback" not in r.output
    pushed = J(runner("push", "--json"))
    assert (pushed["delivered"], pushed["invoiced_late"]) == (0, 1)
    r = runner("push")
    assert r.exit_code == 0
    status = J(runner("status", "--json"))
    assert (status["pending"], status["invoiced_late"]) == (0, 1)
    assert [(i["description"], i["quantity"], i["amount"], i["status"]) for i in status["late_items"]] == [
        (LATE, 6, 60, "created")]
    r = runner("status")  # piped: the counts on stdout, a note on stderr
    assert r.stdout.splitlines()[-1].split("\t")[-1] == "1" and "1 late-usage invoice item(s)" in r.stderr
    monkeypatch.setenv("USAGEBILL_FORCE_TTY", "160")  # a person's terminal: the items, by name
    r = runner("status")
    assert "1 billed late" in r.stdout and LATE in r.stdout
