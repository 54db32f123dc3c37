"""The outbox finds pending events in O(pending), not O(history): a watermark below which every
event has a delivery row, and indexes of the rows still pending (ledger/outbox.py). No path
may strand an event below the watermark: a test per path that makes an event pending again,
each checked against a full scan of the ledger, the way the outbox counted before."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import stripe

from usagebill.gateway.delivery import delivery_status, push
from usagebill.ledger import outbox
from usagebill.ledger.events import last_seq

from tests.lifecycle import app, on_clock  # noqa: F401 (app: a fixture)
from tests.gateway.metering import customer, ledger_totals, meter_rows, now, record_many, setup_stripe, stripe_totals

ROOT = Path(__file__).resolve().parents[2]
OPEN_STATES = ("queued", "sending", "batched", "late")


@pytest.fixture
def stripe_side(billing, conn):
    setup_stripe(billing, conn)
    return conn


def full_scan(ledger) -> dict:
    """What a push would find by reading every event ever recorded (the old way)."""
    marks = ", ".join(f"'{s}'" for s in OPEN_STATES)
    pending = ledger.one(f"SELECT COUNT(*) FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
                         f"WHERE d.event_id IS NULL OR d.status IN ({marks})")[0]
    counts = dict(ledger.all("SELECT status, COUNT(*) FROM event_delivery GROUP BY status"))
    return {"pending": pending, "delivered": counts.get("delivered", 0), "failed": counts.get("failed", 0),
            "invoiced": counts.get("invoiced", 0)}


def stranded(ledger) -> list[str]:
    """Events below the watermark without a delivery row: no push would ever look at them."""
    return [r[0] for r in ledger.all(
        "SELECT e.id FROM usage_events e WHERE e.seq < ? AND NOT EXISTS "
        "(SELECT 1 FROM event_delivery d WHERE d.event_id = e.id)", (outbox.watermark(ledger),))]


def consistent(billing) -> dict:
    """The indexed counts equal the full scan's, and nothing is stranded."""
    ledger = billing.ledger
    expected = full_scan(ledger)
    s = delivery_status(billing)
    assert (s.pending, s.delivered, s.failed, s.invoiced_late) == (
        expected["pending"], expected["delivered"], expected["failed"], expected["invoiced"])
    assert outbox.count_pending(ledger, outbox.Scope()) == expected["pending"]
    assert stranded(ledger) == []
    return expected


class Steps:
    """SQLite virtual machine steps run on a connection (hundreds), as a measure of work."""

    def __init__(self, conn):
        self.conn, self.n = conn, 0

    def __enter__(self):
        def tick():
            self.n += 1
            return 0

        self.conn.set_progress_handler(tick, 100)
        return self

    def __exit__(self, *exc):
        self.conn.set_progress_handler(None, 0)


@pytest.mark.sqlite_only(reason="counts SQLite virtual machine steps")
def test_an_idle_push_and_status_do_not_read_the_history(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    customer(billing, stripe_side, "bob", in_stripe=False)
    record_many(billing, "bob", 3)  # waiting for a Stripe id: pending all along

    def idle() -> tuple[int, int]:
        with Steps(billing.ledger.conn) as pushed:
            r = push(billing, stripe_side)
        assert (r.delivered, r.still_pending, r.requests) == (0, 3, 0)
        with Steps(billing.ledger.conn) as status:
            assert delivery_status(billing).pending == 3
        return pushed.n, status.n

    with billing.ledger.transaction():
        record_many(billing, "alice", 300)
    assert push(billing, stripe_side).delivered == 300
    small = idle()
    with billing.ledger.transaction():
        record_many(billing, "alice", 6000)
    assert push(billing, stripe_side).delivered == 6000
    large = idle()
    # 21 times the history, about the same work (a full scan would be ~20 times more)
    assert large[0] <= small[0] * 1.2 + 20, (small, large)
    assert large[1] <= small[1] * 1.2 + 20, (small, large)
    consistent(billing)


@pytest.mark.sqlite_only(reason="counts SQLite virtual machine steps")
def test_claiming_a_backlog_costs_the_same_per_event_however_long_it_is(billing, stripe_side):
    """Each page of a push is found from where the last one ended: claiming a backlog is linear
    in it. (Given the watermark and the page's start as two bounds, SQLite sought to the
    watermark and walked every event claimed so far again, page after page.)"""
    customer(billing, stripe_side, "alice")
    ledger = billing.ledger

    def claim_all(n: int) -> float:
        with ledger.transaction():
            record_many(billing, "alice", n)
        worker, cursor, claimed = outbox.Worker.new(), outbox.Cursor(), []
        with Steps(ledger.conn) as steps:
            while not cursor.done:
                claimed += [r["id"] for r in outbox.claim_events(
                    ledger, outbox.Scope(), worker, cursor, lambda user, feature: None, limit=100, sent_since=0).events]
        assert len(claimed) == n
        outbox.mark_events(ledger, claimed, {})
        return steps.n / n

    short = claim_all(500)
    long = claim_all(4000)  # eight times the backlog, above the same watermark
    assert long <= short * 1.3, (short, long)


def test_waiting_events_do_not_hold_the_watermark_back(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    billing.customers.add("bob")  # not in Stripe yet
    billing.subscriptions.start("bob", "Pro")
    early = record_many(billing, "bob", 2)
    record_many(billing, "alice", 5)
    r = push(billing, stripe_side)
    assert (r.delivered, r.still_pending) == (5, 2)
    seqs = [billing.ledger.one("SELECT seq FROM usage_events WHERE id = ?", (i,))[0] for i in early]
    assert outbox.watermark(billing.ledger) > max(seqs)  # passed them: they are queued rows now
    assert [outbox.event_state(billing.ledger, i)[0] for i in early] == ["pending"] * 2
    assert delivery_status(billing).not_in_stripe == {"bob": 2}
    consistent(billing)
    cus = stripe_side.client.v1.customers.create(params={"name": "bob"}).id
    billing.customers.update("bob", stripe_customer_id=cus)
    r = push(billing, stripe_side)
    assert (r.delivered, r.still_pending) == (2, 0)
    assert consistent(billing)["delivered"] == 7


def test_refused_events_queued_again_below_the_watermark_are_delivered(billing, stripe_side):
    from usagebill.gateway.retry import retry_failed

    customer(billing, stripe_side, "alice")
    billing.customers.add("bob", stripe_customer_id="cus_nobody")  # Stripe drops its events
    billing.subscriptions.start("bob", "Pro")
    bad = record_many(billing, "bob", 3)
    record_many(billing, "alice", 4)
    r = push(billing, stripe_side)
    assert (r.delivered, r.failed, r.still_pending) == (4, 3, 0)
    assert consistent(billing) == {"pending": 0, "delivered": 4, "failed": 3, "invoiced": 0}
    record_many(billing, "alice", 2)
    assert push(billing, stripe_side).delivered == 2  # the watermark is past the refused ones
    seq = billing.ledger.one("SELECT MAX(seq) FROM usage_events WHERE id IN (?, ?, ?)", bad)[0]
    assert outbox.watermark(billing.ledger) > seq
    cus = stripe_side.client.v1.customers.create(params={"name": "bob"}).id
    billing.customers.update("bob", stripe_customer_id=cus)
    requeued, r = retry_failed(billing, stripe_side, user_id="bob")
    assert (requeued, r.delivered, r.failed, r.still_pending) == (3, 3, 0, 0)
    assert consistent(billing) == {"pending": 0, "delivered": 9, "failed": 0, "invoiced": 0}
    assert stripe_totals(meter_rows(stripe_side.sandbox)) == ledger_totals(billing)


def sent_long_ago(billing, event_ids):
    """As if a push sent these delivered events on their own 24 hours ago and was killed
    before Stripe's verdict (and Stripe never got them)."""
    then = int(time.time()) - 24 * 3600
    with billing.ledger.transaction() as db:
        n = db.executemany("UPDATE event_delivery SET status = 'sending', attempts = 1, first_sent_at = ?, updated_at = ? "
                           "WHERE event_id = ? AND status = 'delivered'", [(then, then, i) for i in event_ids])
        db.execute("UPDATE delivery_totals SET events = events - ? WHERE status = 'delivered'", (n,))


def test_a_stale_send_stripe_never_got_below_the_watermark_is_sent_once(billing, stripe_side):
    cus = customer(billing, stripe_side, "alice")
    (lost,) = record_many(billing, "alice", 1, amount=lambda i: 9)
    record_many(billing, "alice", 1, amount=lambda i: 1)
    assert push(billing, stripe_side).delivered == 2
    stripe_side.sandbox.store.db.execute("DELETE FROM meter_events WHERE value = 9")
    sent_long_ago(billing, [lost])
    assert outbox.watermark(billing.ledger) > billing.ledger.one("SELECT seq FROM usage_events WHERE id = ?", (lost,))[0]
    assert consistent(billing)["pending"] == 1
    r = push(billing, stripe_side)  # Stripe has none of it: pending as if never sent, and sent now
    assert (r.delivered, r.still_pending) == (1, 0)
    assert stripe_totals(meter_rows(stripe_side.sandbox)) == {(cus, "api_calls"): 10}
    consistent(billing)


def test_a_dissolved_batch_below_the_watermark_is_sent_once(billing, stripe_side):
    cus = customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 3, amount=lambda i: 2)
    batches, _ = outbox.coalesce(billing.ledger, outbox.Scope(), lambda row: ("alice", row["feature"]),
                                 after_seq=0, limit=10)
    assert len(batches) == 1
    with billing.ledger.transaction() as db:  # written a day ago, then the push was killed
        db.execute("UPDATE delivery_batches SET created_at = ?", (int(time.time()) - 24 * 3600,))
    outbox.advance_watermark(billing.ledger, last_seq(billing.ledger) + 1)
    consistent(billing)
    r = push(billing, stripe_side)
    assert (r.delivered, r.batches, r.still_pending) == (3, 0, 0)
    assert billing.ledger.one("SELECT status FROM delivery_batches")[0] == "dissolved"
    assert stripe_totals(meter_rows(stripe_side.sandbox)) == {(cus, "api_calls"): 6}
    consistent(billing)


def test_a_late_item_that_fails_is_found_again(app, monkeypatch):
    from usagebill.gateway.clocks import advance_clock
    from usagebill.gateway.retry import retry_failed

    billing = app
    clock = on_clock(billing)
    billing.usage.record("alice", "api_calls", 40)
    billing.usage.record("alice", "api_calls", 5, push=False)  # Stripe was down, say
    advance_clock(billing, billing.connection, clock, "+1month2h")  # January's invoice is final
    items = billing.connection.client.v1.invoice_items
    real = items.create

    def down(*args, **kwargs):  # Stripe unavailable: the item stays pending (late), found again
        raise stripe.APIConnectionError("down", should_retry=False)

    monkeypatch.setattr(items, "create", down)
    r = push(billing, billing.connection, max_rounds=1)
    assert r.error and r.still_pending == 1
    billing.usage.record("alice", "api_calls", 1)  # the push of a new event: the watermark moves on
    push(billing, billing.connection, max_rounds=1)
    consistent(billing)

    def refused(*args, **kwargs):  # for good: failed, then retried
        raise stripe.InvalidRequestError("No such subscription", param="subscription")

    monkeypatch.setattr(items, "create", refused)
    r = push(billing, billing.connection)
    assert r.failed == 1 and r.still_pending == 0
    consistent(billing)
    monkeypatch.setattr(items, "create", real)
    requeued, r = retry_failed(billing, billing.connection)
    assert (requeued, r.invoiced_late, r.still_pending) == (1, 1, 0)
    assert consistent(billing)["invoiced"] == 1


@pytest.mark.sqlite_only(reason="a writer process opens the SQLite file by path (on PostgreSQL: the watermark's lock, tests/race)")
def test_events_recorded_while_pushes_run_are_never_stranded(tmp_path, config_path):
    """A second process records all the while (SQLite hands out seqs inside the writer's
    lock, so none can land below a watermark a push sets): nothing is left behind."""
    from usagebill import Billing
    from usagebill.gateway.client import connect

    db = tmp_path / "ledger.db"
    billing = Billing.open(config_path, db)
    conn = connect(ledger_path=db)
    setup_stripe(billing, conn)
    customer(billing, conn, "alice")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from usagebill import Billing\n"
         "b = Billing.open(sys.argv[1], sys.argv[2])\n"
         "for i in range(400):\n"
         "    b.usage.record('alice', 'api_calls', 1, push=False)\n", str(config_path), str(db)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)
    pushes = 0
    while writer.poll() is None:
        push(billing, conn)
        pushes += 1
        assert stranded(billing.ledger) == []
    assert writer.returncode == 0, writer.stderr.read()
    push(billing, conn)
    assert pushes >= 2
    assert consistent(billing) == {"pending": 0, "delivered": 400, "failed": 0, "invoiced": 0}
    assert stripe_totals(meter_rows(tmp_path / "sandbox.db")) == ledger_totals(billing)
    billing.close()


@pytest.mark.sqlite_only(reason="edits the SQLite file with sqlite3")
def test_doctor_finds_an_event_below_the_watermark_without_a_row(runner, tmp_path):
    from tests.test_cli_stripe import J

    assert runner("sync").exit_code == 0
    J(runner("customers", "add", "alice", "--json"))
    J(runner("subscribe", "alice", "Pro", "--json"))
    e = J(runner("record", "alice", "api_calls", "3", "--json"))
    assert runner("push").exit_code == 0 and runner("doctor", "--offline").exit_code == 0
    import sqlite3

    c = sqlite3.connect(tmp_path / ".usagebill" / "ledger.db")
    c.execute("DELETE FROM event_delivery WHERE event_id = ?", (e["id"],))
    c.commit()
    c.close()
    r = runner("doctor", "--offline")
    assert r.exit_code == 1 and "below the delivery watermark" in r.stderr and e["id"] in r.stderr


@pytest.mark.sqlite_only(reason="builds a SQLite ledger of before m010")
def test_an_older_ledger_is_migrated_with_its_watermark_and_totals(tmp_path):
    """A ledger made before m010: its pending, failed and delivered events are where they were."""
    import sqlite3

    import sqlite_utils

    from usagebill.ledger import migrations
    from usagebill.ledger.db import open_ledger

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    db["_migrations"].create({"name": str, "applied_at": int}, pk="name")
    for fn in migrations.MIGRATIONS:
        if fn.__name__.startswith("m010"):
            break
        fn(db)
        db["_migrations"].insert({"name": fn.__name__, "applied_at": 0})
    t = now()
    for i in range(1, 9):
        conn.execute("INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, source) "
                     "VALUES (?, 'alice', 'api_calls', ?, ?, ?, 'record')", (f"ube_{i}", i, t, t))
    for i, status in ((1, "delivered"), (2, "delivered"), (3, "failed"), (4, "sending"), (6, "delivered")):
        conn.execute("INSERT INTO event_delivery (event_id, status, attempts, updated_at) VALUES (?, ?, 1, ?)",
                     (f"ube_{i}", status, t))
    conn.close()
    ledger = open_ledger(path)
    assert outbox.watermark(ledger) == 5  # ube_5 was never sent: the first event without a row
    assert dict(ledger.all("SELECT status, events FROM delivery_totals")) == {"delivered": 3, "invoiced": 0}
    assert outbox.count_pending(ledger, outbox.Scope()) == 4  # ube_4 (sending), 5, 7, 8
    assert [r[0] for r in ledger.all("SELECT seq FROM event_delivery WHERE status IN ('failed', 'sending') "
                                     "ORDER BY seq")] == [3, 4]
    assert stranded(ledger) == []
    ledger.close()


# -- several workers: leases -----------------------------------------------------------------

def test_a_live_workers_claims_are_not_sent_by_another(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    ids = record_many(billing, "alice", 5)
    other = outbox.Worker.new()
    claim = outbox.claim_events(billing.ledger, outbox.Scope(), other, outbox.Cursor(), lambda user, feature: None,
                                limit=3, sent_since=0)
    assert [r["id"] for r in claim.events] == ids[:3]  # oldest first
    r = push(billing, stripe_side)
    assert (r.delivered, r.still_pending) == (2, 3)  # the other push is on those three
    assert {i for i, *_ in meter_rows(stripe_side.sandbox)} == set(ids[3:])
    outbox.release(billing.ledger, other)
    r = push(billing, stripe_side)
    assert (r.delivered, r.still_pending) == (3, 0)
    consistent(billing)


def test_a_killed_workers_claims_are_taken_over_at_once(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    ids = record_many(billing, "alice", 4)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = outbox.Worker(f"{os.uname().nodename}:{gone.pid}:deadbeef")
    outbox.claim_events(billing.ledger, outbox.Scope(), dead, outbox.Cursor(), lambda user, feature: None, limit=4, sent_since=0)
    r = push(billing, stripe_side)
    assert (r.delivered, r.still_pending) == (4, 0)
    assert sorted(i for i, *_ in meter_rows(stripe_side.sandbox)) == sorted(ids)


def test_an_expired_lease_is_taken_over(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 2)
    far = outbox.Worker("elsewhere:1:cafe", lease=-1)  # another host's worker, its lease run out
    outbox.claim_events(billing.ledger, outbox.Scope(), far, outbox.Cursor(), lambda user, feature: None, limit=2, sent_since=0)
    assert push(billing, stripe_side).delivered == 2


def test_verdicts_by_seq_range_touch_only_the_rows_the_worker_still_holds(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    ids = record_many(billing, "alice", 6)
    ledger = billing.ledger
    me, other = outbox.Worker.new(), outbox.Worker("elsewhere:1:beef", lease=-1)
    outbox.claim_events(ledger, outbox.Scope(), other, outbox.Cursor(), lambda user, feature: None, limit=1,
                        sent_since=0)  # ids[0]: another push's, lease run out
    claim = outbox.claim_events(ledger, outbox.Scope(), me, outbox.Cursor(), lambda user, feature: None, limit=6,
                                sent_since=0)
    assert [r["id"] for r in claim.events] == ids  # took ids[0] over
    seqs = {r["id"]: r["seq"] for r in claim.events}
    # meanwhile a third push took ids[2] over from me (my lease ran out, say)
    ledger.execute("UPDATE event_delivery SET claimed_by = 'third:1:cafe' WHERE event_id = ?", (ids[2],))
    outbox.mark_events(ledger, ids[:4], {}, held=(me.id, seqs[ids[0]], seqs[ids[3]]))
    states = dict(ledger.all("SELECT event_id, status FROM event_delivery"))
    assert [states[i] for i in ids] == ["delivered"] * 4 + ["sending"] * 2  # ids[2] too: by id, as without held
    assert dict(ledger.all("SELECT status, events FROM delivery_totals"))["delivered"] == 4
    # a range holding more than was delivered is a bug: refused, nothing written
    with pytest.raises(RuntimeError, match="2 rows held"):
        outbox.mark_events(ledger, ids[4:5], {}, held=(me.id, seqs[ids[4]], seqs[ids[5]]))
    assert [states[i] for i in ids] == [dict(ledger.all("SELECT event_id, status FROM event_delivery"))[i] for i in ids]
    outbox.mark_events(ledger, ids[4:], {}, held=(me.id, seqs[ids[4]], seqs[ids[5]]))
    assert outbox.count_pending(ledger, outbox.Scope()) == 0
    consistent(billing)


def test_a_live_workers_batch_is_not_sent_by_another(billing, stripe_side):
    customer(billing, stripe_side, "alice")
    record_many(billing, "alice", 3)
    other = outbox.Worker.new()
    (batch,), _ = outbox.coalesce(billing.ledger, outbox.Scope(), lambda row: ("alice", row["feature"]),
                                  after_seq=0, limit=10, worker=other)
    r = push(billing, stripe_side)
    assert (r.delivered, r.still_pending, r.requests) == (0, 3, 0)
    outbox.release(billing.ledger, other)
    r = push(billing, stripe_side)
    assert (r.delivered, r.batches, r.still_pending) == (3, 1, 0)
    assert [i for i, *_ in meter_rows(stripe_side.sandbox)] == [batch.id]
