"""Rows without ids imported again and again (the same file, a grown one, a shuffled one),
through the range read that finds a re-run's holders (batches of at least 4 * _SAMPLE rows):
Stripe's invoice bills each row of the largest file once, and reconcile agrees."""

import random
from collections import Counter

from usagebill.gateway.clocks import advance_clock
from usagebill.gateway.reconcile import reconcile
from usagebill.importer.writing import _SAMPLE
from tests.lifecycle import app, invoices, on_clock  # noqa: F401 (app: a fixture)
from tests.test_import_keys import model_counts

HEADER = "user_id,key,amount,timestamp\n"


def rows(rnd, n):
    """Rows of January, some identical (the same customer, amount and time)."""
    return [f"{rnd.choice(['alice', 'bob'])},api_calls,{rnd.randrange(1, 30)},2026-01-{rnd.randrange(1, 20):02d}T10:00:00Z\n"
            for _ in range(n)]


def test_files_imported_again_bill_each_row_once_on_the_invoice(app, tmp_path):
    clock = on_clock(app)
    on_clock(app, "bob", clock=clock)
    advance_clock(app, app.connection, clock, "2026-01-20T00:00:00Z")
    rnd = random.Random(7)
    first = rows(rnd, 900)
    grown = first[:400] + rows(rnd, 300) + first[400:] + first[:100]  # new rows, more repeats
    held: Counter = Counter()
    batch = 5 * _SAMPLE
    for i, lines in enumerate([first, first, grown, rnd.sample(grown, len(grown)), grown]):
        f = tmp_path / f"{i}.csv"
        f.write_text(HEADER + "".join(lines))
        r = app.usage.import_rows(f, batch_rows=batch)
        assert (r.imported, r.duplicates, r.rejected) == (*model_counts(held, lines), 0)
        assert r.delivery.status == "delivered"
        held |= Counter(lines)
    units = Counter()
    for line, n in held.items():
        user, _, amount, _ = line.split(",")
        units[user] += int(amount) * n
    advance_clock(app, app.connection, clock, "+1month2h")
    for user in ("alice", "bob"):
        (inv,) = invoices(app, user)
        assert [(x.description, x.quantity, x.amount) for x in inv.lines] == [
            ("Pro", 1, 2000), ("API Calls", units[user], 10 * units[user])]
        assert inv.total == 2000 + 10 * units[user]
    assert reconcile(app, app.connection).ok
