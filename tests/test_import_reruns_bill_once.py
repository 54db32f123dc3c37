"""Rows without ids imported again and again (the same file, a grown one, a shuffled one),
through the range read that finds a re-run's holders (batches of at least 4 * _SAMPLE rows),
over two billing periods: each invoice bills each row of its period's largest file once, and
reconcile agrees."""

import random
from collections import Counter

from usagebill.gateway.clocks import advance_clock
from usagebill.gateway.reconcile import reconcile
from usagebill.importer.writing import _SAMPLE
from tests.lifecycle import app, invoices, on_clock  # noqa: F401 (app: a fixture)
from tests.test_import_keys import model_counts

HEADER = "user_id,key,amount,timestamp\n"
BATCH = 5 * _SAMPLE


def rows(rnd, n, month, days):
    """Rows of ``month`` on ``days``, some identical (the same customer, amount and time)."""
    return [f"{rnd.choice(['alice', 'bob'])},api_calls,{rnd.randrange(1, 30)},"
            f"2026-{month:02d}-{rnd.choice(days):02d}T10:00:00Z\n" for _ in range(n)]


def import_all(app, tmp_path, files, held):
    """Import each file (a list of lines) in turn; the model's counts for each; ``held`` after."""
    for i, lines in enumerate(files):
        f = tmp_path / f"{len(held)}-{i}.csv"
        f.write_text(HEADER + "".join(lines))
        r = app.usage.import_rows(f, batch_rows=BATCH)
        assert (r.imported, r.duplicates, r.rejected) == (*model_counts(held, lines), 0)
        assert r.delivery.status == "delivered"
        held |= Counter(lines)
    return held


def units_of(held):
    units = Counter()
    for line, n in held.items():
        user, _, amount, _ = line.split(",")
        units[user] += int(amount) * n
    return units


def test_files_imported_again_bill_each_row_once_on_each_invoice(app, tmp_path):
    clock = on_clock(app)
    on_clock(app, "bob", clock=clock)
    advance_clock(app, app.connection, clock, "2026-01-20T00:00:00Z")
    rnd = random.Random(7)
    first = rows(rnd, 900, 1, range(1, 20))
    grown = first[:400] + rows(rnd, 300, 1, range(1, 20)) + first[400:] + first[:100]  # new rows, more repeats
    january = import_all(app, tmp_path, [first, first, grown, rnd.sample(grown, len(grown)), grown], Counter())

    advance_clock(app, app.connection, clock, "2026-02-10T00:00:00Z")  # January's invoice is final
    feb = rows(rnd, 700, 2, range(2, 10))
    february = import_all(app, tmp_path, [feb, feb + feb[:200], rnd.sample(feb, len(feb))], Counter())
    advance_clock(app, app.connection, clock, "2026-03-01T02:00:00Z")

    for held, period in ((january, 0), (february, 1)):
        units = units_of(held)
        for user in ("alice", "bob"):
            inv = invoices(app, user)[period]
            assert [(x.description, x.quantity, x.amount) for x in inv.lines] == [
                ("Pro", 1, 2000), ("API Calls", units[user], 10 * units[user])]
            assert inv.total == 2000 + 10 * units[user]
    for user in ("alice", "bob"):
        assert [i.billing_reason for i in invoices(app, user, reason=None)] == [  # nothing billed late
            "subscription_create", "subscription_cycle", "subscription_cycle"]
    assert reconcile(app, app.connection, periods=2).ok
