"""reconcile over many customers: one pass over the ledger and a pool of threads asking Stripe
give the same lines as reconciling each customer on its own, whatever the number of workers,
over HTTP too, through 429s; the pace spreads requests and a 429 pauses the whole pool;
--since and --customers-from bound the run; a progress bar for a person at a terminal only."""

from __future__ import annotations

import io
import json
import threading

import pytest

from usagebill.errors import StripeAPIError
from usagebill.gateway import meter_errors
from usagebill.gateway import reconcile as rec
from usagebill.gateway.accounts import add_customer, cancel
from usagebill.gateway.client import connect
from usagebill.gateway.clocks import advance_clock, create_clock
from usagebill.gateway.delivery import push
from usagebill.gateway.meter_sender import RetryPolicy
from usagebill.gateway.reconcile import Pace, reconcile
from usagebill.ledger import outbox
from usagebill.sandbox import Sandbox
from usagebill.sandbox.faults import FaultConfig, FaultInjector
from tests.lifecycle import JAN_1, app, on_clock  # noqa: F401 (app: a fixture)

USERS = ["alice", "bob", "carol", "dave", "erin"]
JAN, FEB = 1767225600, 1769904000


@pytest.fixture
def world(app):
    """Five customers on two test clocks, January closed (its invoices final), February open:
    usage delivered on its own and coalesced, pending in both periods, billed late, refused,
    and a meter event sent behind the ledger's back."""
    conn = app.connection
    clock_a = on_clock(app, "alice", "Team")
    on_clock(app, "bob", clock=clock_a)
    on_clock(app, "carol", clock=clock_a)
    clock_b = create_clock(app, conn, at=JAN_1).id
    on_clock(app, "dave", clock=clock_b)
    on_clock(app, "erin", clock=clock_b)
    app.usage.record("alice", "api_calls", 40)
    app.usage.record("alice", "ai_tokens", 1000)
    app.usage.record("bob", "api_calls", 4, push=False)
    app.usage.record("bob", "api_calls", 3, push=False)
    push(app, conn, user_id="bob", coalesce=True)
    app.usage.record("carol", "api_calls", 5)
    app.usage.record("carol", "api_calls", 3, push=False)  # still pending when January closes: at risk
    app.usage.record("dave", "api_calls", 10)
    dave = app.customers.get("dave").stripe_customer_id
    conn.client.v1.billing.meter_events.create(params={
        "event_name": "api_calls", "identifier": "behind-our-back", "payload": {"stripe_customer_id": dave, "value": "4"}})
    app.usage.record("erin", "api_calls", 6, push=False)  # billed late, after January closed
    for clock in (clock_a, clock_b):
        advance_clock(app, conn, clock, "+1month2h")
    push(app, conn, user_id="erin")
    app.usage.record("alice", "api_calls", 3)
    app.usage.record("bob", "api_calls", 2, push=False)
    refused = app.usage.record("dave", "api_calls", 2, push=False).id
    with app.ledger.transaction() as db:  # Stripe refused it (as a meter with an error would)
        db.execute("INSERT INTO event_delivery (event_id, seq, status, attempts, last_error, updated_at) "
                   "SELECT id, seq, 'failed', 1, 'refused', 0 FROM usage_events WHERE id = ? ON CONFLICT (event_id) "
                   "DO UPDATE SET status = 'failed', last_error = 'refused'", (refused,))
    return app


def key(r):
    return [(x.user_id, x.feature, x.state, x.period_start, x.ledger, x.stripe, x.pending, x.failed, x.late)
            for x in r.lines]


def test_all_customers_at_once_equal_each_customer_on_its_own(world):
    conn = world.connection
    each = [x for u in USERS for x in reconcile(world, conn, user_id=u).lines]
    for workers in (1, 4):
        r = reconcile(world, conn, workers=workers)
        assert r.lines == each and r.customers == 5
        # a page of invoices (with their lines) and of invoice items per customer, and one meter
        # total per open feature: no call per closed invoice for its lines
        assert r.requests == 5 * 2 + 2 + 4 and r.throttled == 0
    got = {(x.user_id, x.feature, x.state): (x.ledger, x.stripe, x.pending, x.failed, x.late) for x in each}
    assert got == {
        ("alice", "api_calls", "closed"): (40, 40, 0, 0, 0), ("alice", "ai_tokens", "closed"): (1000, 1000, 0, 0, 0),
        ("alice", "api_calls", "open"): (3, 3, 0, 0, 0), ("alice", "ai_tokens", "open"): (0, 0, 0, 0, 0),
        ("bob", "api_calls", "closed"): (7, 7, 0, 0, 0), ("bob", "api_calls", "open"): (0, 0, 2, 0, 0),
        ("carol", "api_calls", "closed"): (8, 5, 3, 0, 0), ("carol", "api_calls", "open"): (0, 0, 0, 0, 0),
        ("dave", "api_calls", "closed"): (10, 14, 0, 0, 0), ("dave", "api_calls", "open"): (0, 0, 0, 2, 0),
        ("erin", "api_calls", "closed"): (6, 6, 0, 0, 6), ("erin", "api_calls", "open"): (0, 0, 0, 0, 0),
    }
    assert [(x.user_id, x.state) for x in reconcile(world, conn).at_risk] == [("carol", "closed"), ("dave", "closed")]


def test_the_ledger_side_equals_the_per_customer_queries(world):
    """One statement over every window gives what the per-customer outbox queries give."""
    for x in reconcile(world, world.connection).lines:
        if x.state == "closed":
            u = outbox.units_in_window(world.ledger, x.user_id, x.feature, x.start_time, x.end_time)
            assert (x.ledger, x.pending, x.failed) == (u.total, u.pending, u.failed), x
        else:
            delivered, pending, _ = outbox.delivered_in_window(world.ledger, x.user_id, x.feature, x.start_time,
                                                               x.end_time, 0)
            failed = outbox.units_in_window(world.ledger, x.user_id, x.feature, x.period_start, x.period_end).failed
            assert (x.ledger, x.pending, x.failed) == (delivered, pending, failed), x


def test_closed_only_and_periods(world):
    conn = world.connection
    r = reconcile(world, conn, closed_only=True)
    assert {x.state for x in r.lines} == {"closed"} and r.requests == 5 * 2  # no meter totals asked for
    assert [x.user_id for x in reconcile(world, conn, periods=1).lines] == ["alice", "alice", "bob", "carol", "dave",
                                                                             "erin"]


def test_over_http_with_eight_workers(world, tmp_path):
    """The pool's threads share one StripeClient over real HTTP (a connection per thread)."""
    from usagebill.sandbox.server import serve

    expected = key(reconcile(world, world.connection))
    with serve(tmp_path / ".usagebill" / "sandbox.db") as server:
        conn = connect(ledger_path=world.db_path, sandbox_url=server.url)
        r = reconcile(world, conn, workers=8)
    assert key(r) == expected and r.requests == 16


def test_429s_pause_the_pool_and_change_nothing(world, monkeypatch):
    conn = world.connection
    expected = key(reconcile(world, conn))
    monkeypatch.setattr(meter_errors, "absorb", lambda ledger, conn: meter_errors.Absorbed())
    # most requests answered 429: the SDK retries those itself 3 times first (the sandbox says
    # they may be), then the pool pauses and tries again (30 rounds here: never giving up)
    monkeypatch.setattr(rec, "RetryPolicy", lambda **kwargs: RetryPolicy(rounds=30, base_delay=0.0))
    conn.sandbox.faults = FaultInjector(FaultConfig(rate_429=0.8, seed=5))
    r = reconcile(world, conn, workers=4)
    assert key(r) == expected and r.throttled > 0


def test_an_error_stops_the_run(world, monkeypatch):
    fetch = rec._fetch
    seen = []

    def failing(read, c, **kwargs):
        seen.append(c.user_id)
        if c.user_id == "carol":
            raise StripeAPIError("invoices of carol: Stripe said 500: boom")
        return fetch(read, c, **kwargs)

    monkeypatch.setattr(rec, "_fetch", failing)
    with pytest.raises(StripeAPIError, match="invoices of carol"):
        reconcile(world, world.connection, workers=1)
    assert seen[-1] == "carol" and "dave" not in seen  # the rest is not asked for
    assert not world.ledger.in_transaction


def test_since_leaves_out_the_periods_that_ended_before(world):
    conn = world.connection
    r = reconcile(world, conn, since="2026-02-01T00:00:00Z")  # January ends at that very second
    assert {(x.state, x.period_start) for x in r.lines} == {("open", FEB)}
    r = reconcile(world, conn, since="2026-01-31T23:59:59Z", periods=1)
    assert {(x.state, x.period_start) for x in r.lines} == {("open", FEB)}  # still the newest period only


def test_since_skips_a_subscription_that_ended_before_it(app):
    conn = app.connection
    on_clock(app, "frank")
    cancel(app, conn, "frank")
    assert reconcile(app, conn).customers == 1
    r = reconcile(app, conn, since="2026-01-02T00:00:00Z")
    assert (r.customers, r.lines, r.requests) == (0, [], 0)


# -- the pace ---------------------------------------------------------------------------------

class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.lock = threading.Lock()

    def clock(self):
        return self.now

    def sleep(self, seconds):
        with self.lock:
            self.now += seconds


def test_the_pace_spaces_requests_over_the_pool_and_per_endpoint():
    t = FakeTime()
    pace = Pace(10, per_endpoint=2, clock=t.clock, sleep=t.sleep)
    at = []
    for endpoint in ("invoices", "invoices", "summaries", "summaries", "invoices"):
        pace.call(endpoint, lambda: at.append(round(t.now - 100, 3)))
    # 0.1 s apart in all, 0.5 s apart to one endpoint
    assert at == [0.0, 0.5, 0.6, 1.1, 1.2] and pace.requests == 5


def test_a_429_pauses_every_worker_then_the_request_is_tried_again():
    import stripe

    t = FakeTime()
    pace = Pace(None, policy=RetryPolicy(rounds=3, base_delay=2.0, max_delay=2.0), clock=t.clock, sleep=t.sleep)
    answers = [stripe.RateLimitError("slow down", http_status=429), "ok"]

    def flaky():
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert pace.call("invoices", flaky) == "ok"
    assert pace.throttled == 1 and 101.0 <= t.now <= 102.0  # paused 1 to 2 s (back-off with jitter)
    pace.paused_until = t.now + 5  # another worker's 429: this one waits too, whatever its endpoint
    pace.call("summaries", lambda: None)
    assert t.now >= pace.paused_until
    with pytest.raises(stripe.RateLimitError):  # still 429 after every round: Stripe's error
        pace.call("invoices", lambda: (_ for _ in ()).throw(stripe.RateLimitError("no", http_status=429)))
    assert pace.requests == 2 + 1 + 3


def test_default_rates_follow_stripe_s_documented_read_limits():
    class Conn:
        def __init__(self, mode):
            self.mode = mode

    assert [rec.default_rate(Conn(m)) for m in ("sandbox", "test", "live")] == [None, 20.0, 80.0]
    assert [rec.default_endpoint_rate(Conn(m)) for m in ("sandbox", "test", "live")] == [None, None, 20.0]


# -- the command ------------------------------------------------------------------------------

def J(r, exit_code: int = 0):
    assert r.exit_code == exit_code, r.output
    return json.loads(r.stdout)


def test_customers_from_a_file_or_stdin(world, runner, tmp_path):
    f = tmp_path / "big.txt"
    f.write_text("# the big accounts\n\ncarol\n  dave  \ncarol\n", encoding="utf-8")
    lines = J(runner("reconcile", "--customers-from", str(f), "--closed-only", "--json"), 1)  # both at risk
    assert [(x["user_id"], x["at_risk"]) for x in lines] == [("carol", True), ("dave", True)]
    lines = J(runner("reconcile", "--customers-from", "-", "--json", input="erin\n"))
    assert {x["user_id"] for x in lines} == {"erin"}


def test_customers_from_names_the_unknown_ones_by_line(world, runner, tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("carol\nzed\n# yan\nyan\nbob\n", encoding="utf-8")
    r = runner("reconcile", "--customers-from", str(f))
    assert r.exit_code == 1 and "Traceback" not in r.output
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("Error")]
    assert line == f"Error: {f}, line 2: unknown customer 'zed' (and 1 more unknown: line 4)"
    f.write_text("carol\nbad\u200bid\n", encoding="utf-8")
    r = runner("reconcile", "--customers-from", str(f))
    assert r.exit_code == 1 and f"{f}, line 2: user id" in r.stderr
    r = runner("reconcile", "--customers-from", str(tmp_path / "missing.txt"))
    assert r.exit_code == 1 and "missing.txt: cannot read it: No such file or directory" in r.stderr
    r = runner("reconcile", "alice", "--customers-from", str(f))
    assert r.exit_code == 2 and "not both" in r.stderr


def test_customers_from_with_one_not_in_stripe(world, runner, tmp_path):
    world.customers.add("local")
    f = tmp_path / "c.txt"
    f.write_text("local\nerin\n", encoding="utf-8")
    r = runner("reconcile", "--customers-from", str(f), "--json")
    assert {x["user_id"] for x in J(r)} == {"erin"}
    assert f"Note: nothing to compare for 1 customer(s) of {f}: local (not in Stripe)" in r.stderr


def test_bad_options_are_one_line_usage_errors(runner):
    for args, what in ((["--rate", "0"], "--rate"), (["--rate", "nan"], "--rate"), (["--rate", "inf"], "--rate"),
                       (["--rate", "fast"], "--rate"), (["--workers", "0"], "--workers"),
                       (["--workers", "65"], "--workers"), (["--workers", "2.5"], "--workers")):
        r = runner("reconcile", *args)
        assert r.exit_code == 2 and f"Invalid value for '{what}'" in r.stderr and "Traceback" not in r.output, args
    r = runner("reconcile", "--since", "last tuesday")
    assert r.exit_code == 1 and "--since: 'last tuesday' is not a time" in r.stderr


def test_the_command_takes_since_rate_and_workers(world, runner):
    lines = J(runner("reconcile", "--since", "2026-02-01", "--rate", "500", "--workers", "3", "--json"), 1)
    assert {(x["state"], x["period_start"]) for x in lines} == {("open", "2026-02-01T00:00:00Z")}


@pytest.fixture
def watched(monkeypatch):
    """stderr as a person's terminal, for the progress bar (what it drew, in a buffer)."""
    from rich.console import Console

    from usagebill.cli import reconcile_cmd

    drawn = io.StringIO()
    monkeypatch.setattr(reconcile_cmd, "progress_console",
                        lambda: Console(file=drawn, force_terminal=True, color_system=None, width=100, markup=False,
                                        highlight=False))
    return drawn


def test_a_progress_bar_on_a_terminal_only(world, runner, watched):
    r = runner("reconcile", "--closed-only")
    assert r.exit_code == 1
    assert "reconciling" in watched.getvalue() and "5/5 customers" in watched.getvalue()
    assert "reconciling" not in r.stderr and "reconciling" not in r.stdout
    watched.seek(0), watched.truncate()
    J(runner("reconcile", "--json"), 1)
    assert watched.getvalue() == ""  # not with --json


def test_no_progress_bar_in_a_pipe(world, runner, monkeypatch):
    monkeypatch.setenv("USAGEBILL_FORCE_TTY", "100")  # stdout a terminal; stderr still a pipe
    r = runner("reconcile", "--closed-only")
    assert "reconciling" not in r.stderr and "━" not in r.stderr


class FakeReader:
    """Stripe's lists by path (what ``_Reader.each`` yields), and the paths asked for."""

    def __init__(self, lists):
        self.lists, self.asked = lists, []

    def each(self, endpoint, path, params):
        self.asked.append(path)
        return iter(self.lists[path])


def test_lines_beyond_an_invoice_s_first_page_are_read_and_open_periods_ask_the_meter():
    from tests.conftest import EXAMPLE
    from usagebill.config import load_config
    from usagebill.context import Subscription

    config = load_config(EXAMPLE)
    sub = Subscription(id=1, user_id="alice", plan_key="pro", interval="month", currency="usd", anchor=JAN,
                       status="active", created_at=JAN, stripe_subscription_id="sub_1", config=config)
    customer = rec._Customer("alice", "cus_1", FEB + 9 * 86400 + 30, (sub,), ())

    def line(quantity, product="prod_api"):
        return {"pricing": {"price_details": {"product": product}}, "quantity": quantity}

    invoice = {"id": "in_1", "billing_reason": "subscription_cycle", "period_start": JAN, "period_end": FEB,
               "status": "open", "status_transitions": {"finalized_at": FEB + 3600}, "created": FEB,
               "lines": {"data": [line(5)], "has_more": True}}
    first = dict(invoice, id="in_0", billing_reason="subscription_create", period_end=JAN)
    read = FakeReader({"/v1/invoices": [invoice, first], "/v1/invoiceitems": [],
                       "/v1/invoices/in_1/lines": [line(5), line(7), line(1, "prod_base"), {"quantity": 2}],
                       "/v1/billing/meters/mtr_api/event_summaries": [{"aggregated_value": 3.0}]})
    got = rec._fetch(read, customer, count=3, since=None, closed_only=False, metered={"api_calls": "mtr_api"},
                     products={"api_calls": "prod_api"})
    assert [(p.start, p.closed, p.invoice_id) for p in got.periods] == [(FEB, False, None), (JAN, True, "in_1")]
    assert got.billed == {("in_1", "api_calls"): 12}  # every page, only the feature's product
    assert got.meter == {(0, "api_calls"): (FEB, customer.now + 300 - 30 + 60, 3)}
    assert read.asked == ["/v1/invoices", "/v1/invoiceitems", "/v1/invoices/in_1/lines",
                          "/v1/billing/meters/mtr_api/event_summaries"]
    assert [p.invoice_id for p in got.invoices] == ["in_1"]  # what is mirrored: the period's invoice only


def test_subscriptions_and_clocks_read_for_many_customers_at_once_equal_one_by_one(world):
    from usagebill.gateway.accounts import subscribe
    from usagebill.ledger import clocks as ledger_clocks
    from usagebill.ledger import reconcile_reads as reads

    conn = world.connection
    cancel(world, conn, "bob")
    subscribe(world, conn, "bob", "Team", "month")  # two subscriptions: the second one's usage starts after the first
    add_customer(world, conn, "rt")  # real time, no test clock
    subscribe(world, conn, "rt", "Pro", "month")
    users = USERS + ["rt", "nobody"]
    many = world.subscriptions.all_of_many(users)
    assert many["nobody"] == [] and len(many["bob"]) == 2
    for u in USERS + ["rt"]:
        one = world.subscriptions.all_of(u)
        assert many[u] == one and [s.priced_since for s in many[u]] == [s.priced_since for s in one], u
    assert many["alice"][0].closed_until == FEB and many["bob"][1].usage_from == many["bob"][0].canceled_at + 1
    clock = world.customers.get("alice").test_clock
    ledger_clocks.start_advance(world.ledger, clock, JAN, FEB + 7200, "+1month2h", 0)  # unfinished: now_for asks Stripe
    assert [c.user_id for c in reads.customers(world.ledger) if c.advancing] == ["alice", "bob", "carol"]
    for c in reads.customers(world.ledger, users):
        assert abs(rec._now(world, c) - world.now_for(c.user_id)) <= 1, c  # the first one finished the advance


def test_every_ledger_access_is_on_the_calling_thread(world, monkeypatch):
    """The SQLite connection is shared: the pool's threads only talk to Stripe."""
    ledger, threads = world.ledger, set()
    for name in ("execute", "executemany"):
        original = getattr(ledger, name)

        def spy(*args, _original=original, **kwargs):
            threads.add(threading.current_thread().name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(ledger, name, spy)
    r = reconcile(world, world.connection, workers=4)
    assert len(r.lines) == 12 and threads == {threading.main_thread().name}
