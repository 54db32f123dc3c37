"""The library delivers like the CLI: ``record``, ``charge`` and ``import_rows`` send their usage
to Stripe at once (``push=False`` defers), return the verdict, and Stripe bills it."""

import logging

from usagebill import Billing
from usagebill.gateway.clocks import advance_clock
from tests.lifecycle import app, invoices, on_clock  # noqa: F401 (app: a fixture)


def cycle_invoice(b: Billing, user_id: str = "alice"):
    (inv,) = invoices(b, user_id)
    return inv


def test_record_delivers_and_stripe_bills_the_docs_invoice(app):
    clock = on_clock(app)
    event = app.usage.record("alice", "api_calls", 250)  # 100 included credits do not apply to usage
    assert event.delivery.status == "delivered" and event.delivery.exit_code == 0
    assert app.connection.sandbox.store.db.execute(
        "SELECT identifier, value FROM meter_events").fetchall() == [(event.id, 250)]
    advance_clock(app, app.connection, clock, "+1month2h")
    inv = cycle_invoice(app)
    assert [(x.description, x.quantity, x.amount) for x in inv.lines] == [("Pro", 1, 2000), ("API Calls", 250, 2500)]
    assert inv.total == 4500 and inv.status != "draft"


def test_push_false_only_writes_the_ledger_and_push_later_bills_it(app):
    from usagebill.gateway.delivery import push

    clock = on_clock(app)
    event = app.usage.record("alice", "api_calls", 150, push=False)
    assert event.delivery.status == "pending"
    assert app.connection.sandbox.store.db.execute("SELECT COUNT(*) FROM meter_events").fetchone() == (0,)
    assert push(app, app.connection).delivered == 1
    advance_clock(app, app.connection, clock, "+1month2h")
    assert [(x.description, x.quantity) for x in cycle_invoice(app).lines] == [("Pro", 1), ("API Calls", 150)]


def test_charge_and_import_deliver_their_usage(app, tmp_path):
    clock = on_clock(app)
    r = app.charge("alice", "api_calls", 130)  # 100 from the included credits, 30 as usage
    assert (r.from_credits, r.as_usage, r.delivery.status) == (100, 30, "delivered")
    f = tmp_path / "u.csv"
    f.write_text("user_id,key,amount,timestamp,id\nalice,api_calls,12,2026-01-01T00:00:00Z,row-1\n")
    result = app.usage.import_rows(f)
    assert result.imported == 1 and result.delivery.status == "delivered" and result.delivery.push.delivered == 1
    again = app.usage.import_rows(f).delivery  # nothing new: it still finishes what is pending (none here)
    assert (again.status, again.pending, again.push) == ("delivered", 0, None)
    advance_clock(app, app.connection, clock, "+1month2h")
    assert [(x.description, x.quantity) for x in cycle_invoice(app).lines] == [("Pro", 1), ("API Calls", 42)]


def test_a_raising_callback_is_logged_and_record_returns(config_path, caplog):
    seen = []

    def callback(event):
        seen.append(event)
        raise RuntimeError("webhook down")

    with Billing.open(config_path, on_usage_recorded=callback) as b:
        on_clock(b)
        with caplog.at_level(logging.ERROR, logger="usagebill"):
            event = b.usage.record("alice", "api_calls", 5, idempotency_key="k1")
            r = b.charge("alice", "api_calls", 101)
        assert event.delivery.status == "delivered" and r.delivery.status == "delivered"
        assert [e.id for e in seen] == [event.id, r.usage_event_id]
        assert seen[0].delivery.status == "delivered"  # the callback sees the verdict
        assert caplog.text.count("on_usage_recorded raised RuntimeError: webhook down") == 2
        # a retry with the key records nothing twice (and the callback is not told again)
        assert b.usage.record("alice", "api_calls", 5, idempotency_key="k1").replayed
        assert len(seen) == 2
        assert b.ledger.one("SELECT SUM(amount) FROM usage_events")[0] == 5 + 1


def test_customers_not_in_stripe_stay_pending_without_loading_stripe(billing):
    billing.customers.add("local")
    billing.subscriptions.start("local", "Pro")
    event = billing.usage.record("local", "api_calls", 3)
    assert event.delivery.status == "pending" and "not in Stripe" in event.delivery.reason
    assert event.delivery.exit_code == 0 and billing._connection is None


def test_the_connection_is_chosen_as_the_cli_chooses(config_path, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_nope")
    with Billing.open(config_path) as b:
        b.customers.add("alice", stripe_customer_id="cus_x")
        b.subscriptions.start("alice", "Pro")
        event = b.usage.record("alice", "api_calls", 1)
        # recorded, not delivered: exit code 4 for a script, the reason in words
        assert (event.delivery.status, event.delivery.exit_code) == ("pending", 4)
        assert "live key: pass --live" in event.delivery.reason
    with Billing.open(config_path, api_key="") as b:  # an explicit key beats the environment
        assert b.connection.mode == "sandbox"
    with Billing.open(config_path, api_key="nonsense") as b:
        assert "not a secret or restricted key" in b.usage.record("alice", "api_calls", 1).delivery.reason
