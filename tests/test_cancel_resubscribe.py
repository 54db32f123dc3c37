"""Cancel and re-subscribe bill each unit once; periods are half-open ``[start, end)`` in the
ledger, the summary, the sandbox's invoices and reconcile."""

import json

import pytest

from usagebill import ValidationError
from usagebill.gateway.accounts import cancel, subscribe
from usagebill.gateway.clocks import advance_clock
from usagebill.gateway.reconcile import reconcile
from tests.lifecycle import app, invoices, lines, on_clock  # noqa: F401 (app: a fixture)


JAN_15 = 1768435200



def test_cancel_and_resubscribe_in_one_frozen_second_bill_each_unit_once(app):
    clock = on_clock(app)
    advance_clock(app, app.connection, clock, "+14d")  # Jan 15, frozen
    assert app.usage.record("alice", "api_calls", 42).timestamp == JAN_15
    cancel(app, app.connection, "alice")
    sub = subscribe(app, app.connection, "alice", "Pro")
    assert (sub.anchor, sub.usage_from) == (JAN_15, JAN_15 + 1)
    seven = app.usage.record("alice", "api_calls", 7)
    assert seven.timestamp == JAN_15 + 1 and seven.delivery.status == "delivered"
    assert app.usage.get_summary("alice", "api_calls").total_amount == 7
    with pytest.raises(ValidationError, match="previous subscription ended in"):
        app.usage.record("alice", "api_calls", 1, at=JAN_15)
    advance_clock(app, app.connection, clock, "+1month2h")
    final, renewal = invoices(app)
    assert final.period_end == JAN_15 and lines(final) == [("API Calls", 42, 420)]
    assert lines(renewal) == [("Pro", 1, 2000), ("API Calls", 7, 70)]
    r = reconcile(app, app.connection, periods=6)
    assert r.ok and sorted((x.state, x.ledger, x.stripe) for x in r.lines) == [
        ("closed", 7, 7), ("closed", 42, 42), ("open", 0, 0)]


def test_period_boundaries_are_half_open(app):
    clock = on_clock(app)
    advance_clock(app, app.connection, clock, "2026-01-31T23:59:59Z")
    app.usage.record("alice", "api_calls", 3)  # the period's last second
    advance_clock(app, app.connection, clock, "2026-02-01T00:00:00Z")
    app.usage.record("alice", "api_calls", 4)  # the next period's first second
    s = app.usage.get_summary("alice", "api_calls")
    assert (s.total_amount, s.period_start) == (4, 1769904000)
    advance_clock(app, app.connection, clock, "+1month2h")
    jan, feb = invoices(app)
    assert lines(jan)[-1] == ("API Calls", 3, 30) and lines(feb)[-1] == ("API Calls", 4, 40)
    assert reconcile(app, app.connection).ok


def test_cli_cancel_and_resubscribe(runner):
    def J(r):
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    assert runner("sync").exit_code == 0
    clock = J(runner("testclock", "create", "--at", "2026-01-01T00:00:00Z", "--json"))["id"]
    J(runner("customers", "add", "alice", "--test-clock", clock, "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    J(runner("testclock", "advance", clock, "--to", "+14d", "--json"))
    J(runner("record", "alice", "api_calls", "42", "--json"))
    J(runner("cancel", "alice", "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    J(runner("record", "alice", "api_calls", "7", "--json"))
    J(runner("testclock", "advance", clock, "--to", "+1month2h", "--json"))
    cycle = [i for i in J(runner("invoices", "list", "alice", "--json"))[::-1] if i["billing_reason"] == "subscription_cycle"]
    assert [[(x["description"], x["quantity"]) for x in i["lines"]] for i in cycle] == [
        [("API Calls", 42)], [("Pro", 1), ("API Calls", 7)]]
    r = runner("reconcile", "--closed-only")
    assert r.exit_code == 0, r.output
