"""`testclock advance` is crash-safe and idempotent: a re-run after a kill or a failure
finishes the advance the first run recorded (never a second one), a target equal to the
clock's time refreshes the ledger, and commands that read a customer's "now" take a stale
clock's time from Stripe first, so no usage is stamped in a period Stripe already invoiced."""

import pytest

from tests.test_cli_stripe import J, on_clock  # noqa: F401  (alice on Pro, on a test clock at 2026-01-01)
from usagebill.gateway import clocks as gateway_clocks


def crash_once(monkeypatch, name, owner=gateway_clocks):
    """The next call of <owner>.<name> dies as a kill would (the ledger is not updated)."""
    real = getattr(owner, name)
    calls = []

    def dying(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, dying)


def killed_after_stripe_moved(monkeypatch):
    """The advance dies right after Stripe moved the clock: the ledger knows nothing of it."""
    from usagebill.customers import Customers

    crash_once(monkeypatch, "set_clock_time", Customers)


def cycle_invoices(runner):
    return [i for i in J(runner("invoices", "list", "alice", "--json")) if i["billing_reason"] == "subscription_cycle"]


@pytest.mark.parametrize("to", ["+1month2h", "2026-02-01T02:00:00Z"])
def test_killed_after_stripe_moved_the_clock_a_rerun_finishes_it_once(runner, on_clock, monkeypatch, to):
    killed_after_stripe_moved(monkeypatch)
    assert runner("testclock", "advance", on_clock, "--to", to).exit_code == 130
    clock = J(runner("testclock", "advance", on_clock, "--to", to, "--json"))
    assert clock["frozen_time"] == "2026-02-01T02:00:00Z"  # one month, not two
    s = J(runner("summary", "alice", "--key", "api_calls", "--json"))
    assert (s["period_start"], s["period_end"]) == ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    assert len(cycle_invoices(runner)) == 1


def test_killed_before_stripe_answered_a_rerun_advances_once(runner, on_clock, monkeypatch):
    crash_once(monkeypatch, "_move")  # dies after the target is recorded, before Stripe is asked
    assert runner("testclock", "advance", on_clock, "--to", "+1month2h").exit_code == 130
    assert J(runner("testclock", "advance", on_clock, "--to", "+1month2h", "--json"))["frozen_time"] == "2026-02-01T02:00:00Z"
    # that advance is finished: the next one is a new month
    assert J(runner("testclock", "advance", on_clock, "--to", "+1month", "--json"))["frozen_time"] == "2026-03-01T02:00:00Z"


def test_the_same_absolute_target_again_is_a_harmless_refresh(runner, on_clock):
    J(runner("testclock", "advance", on_clock, "--to", "2026-01-20T00:00:00Z", "--json"))
    again = J(runner("testclock", "advance", on_clock, "--to", "2026-01-20T00:00:00Z", "--json"))
    assert again["frozen_time"] == "2026-01-20T00:00:00Z" and again["status"] == "ready"
    r = runner("testclock", "advance", on_clock, "--to", "2026-01-10T00:00:00Z")
    assert r.exit_code == 1 and "only move forward" in r.stderr and "2026-01-20T00:00:00Z" in r.stderr


def test_a_refused_advance_leaves_nothing_to_finish(runner, on_clock):
    assert runner("testclock", "advance", on_clock, "--to", "+3month").exit_code == 4  # Stripe refuses
    assert J(runner("testclock", "advance", on_clock, "--to", "+1month2h", "--json"))["frozen_time"] == "2026-02-01T02:00:00Z"


def test_usage_after_a_killed_advance_is_stamped_in_the_new_period(runner, on_clock, monkeypatch):
    J(runner("record", "alice", "api_calls", "7", "--json"))  # January
    killed_after_stripe_moved(monkeypatch)
    assert runner("testclock", "advance", on_clock, "--to", "+1month2h").exit_code == 130
    # nobody re-ran the advance: record must not stamp 1,000 units in invoiced January
    event = J(runner("record", "alice", "api_calls", "1000", "--json"))
    assert event["timestamp"] == "2026-02-01T02:00:00Z"
    assert J(runner("summary", "alice", "--key", "api_calls", "--json"))["features"][0]["total_amount"] == 1000
    jan = cycle_invoices(runner)
    assert len(jan) == 1
    lines = J(runner("invoices", "show", jan[0]["id"], "--json"))["lines"]
    assert [(x["description"], x["quantity"]) for x in lines] == [("Pro", 1), ("API Calls", 7)]
    # and the next period's invoice bills the 1,000
    J(runner("testclock", "advance", on_clock, "--to", "+1month", "--json"))
    feb = [i for i in cycle_invoices(runner) if i["id"] != jan[0]["id"]]
    lines = J(runner("invoices", "show", feb[0]["id"], "--json"))["lines"]
    assert ("API Calls", 1000) in [(x["description"], x["quantity"]) for x in lines]
