"""The ledger itself under processes racing: an import and a ``record`` writing the same
idempotency keys at once (each key one event, the counts exact); a fresh ledger opened by
eight processes at once (migrated once)."""

import csv
import random

import pytest

from tests.race import workers
from usagebill import Billing

pytestmark = pytest.mark.own_backend

DAY = 86400
ROWS = 3000


def test_an_import_racing_a_record_with_the_same_keys_writes_each_key_once(race, config_path, target, tmp_path):
    with Billing.open(config_path, target) as b:
        now = b.now()
        b.customers.add("imp")
        b.subscriptions.start("imp", "Pro", "month", anchor=now - 2 * DAY)
    start = now - DAY
    path = tmp_path / "usage.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "key", "amount", "timestamp", "id"])
        for i in range(ROWS):
            w.writerow(["imp", "api_calls", 3, start + i, f"k{i}"])
    rng = random.Random(11)
    # keys from the whole file, the first and last rows among them, in an order of their own
    chosen = sorted({0, ROWS - 1, *rng.sample(range(ROWS), 400)}, key=lambda i: rng.random())
    keys = [(f"k{i}", start + i) for i in chosen]
    imported, recorded = race.run([
        (workers.import_file, (str(config_path), target, 2, str(path))),
        (workers.record_keys, (str(config_path), target, 2, "imp", keys)),
    ])
    with Billing.open(config_path, target) as b:
        rows = b.ledger.all("SELECT idempotency_key, id, amount FROM usage_events WHERE user_id = 'imp'")
    by_key = {}
    for key, event_id, amount in rows:
        assert key not in by_key, f"key {key} written twice"
        by_key[key] = event_id
        assert amount == 3
    assert len(rows) == ROWS and set(by_key) == {f"k{i}" for i in range(ROWS)}
    for key, event_id, replayed in recorded:
        assert by_key[key] == event_id  # record returned the one event of its key
    first_by_record = sum(not replayed for _, _, replayed in recorded)
    assert (imported["rows"], imported["rejected"], imported["errors"]) == (ROWS, 0, [])
    assert imported["imported"] == ROWS - first_by_record, (imported, first_by_record)
    assert imported["duplicates"] == first_by_record


def test_a_fresh_ledger_opened_by_eight_processes_at_once_is_migrated_once(race, config_path, target):
    from usagebill.ledger.migrations import MIGRATIONS

    names = sorted(fn.__name__ for fn in MIGRATIONS)
    seen = race.run([(workers.open_fresh, (str(config_path), target, 8))] * 8)
    assert all(s == names for s in seen), seen
    with Billing.open(config_path, target) as b:
        assert b.ledger.one("SELECT COUNT(*) FROM _migrations")[0] == len(names)
        b.customers.add("after")  # and it works
        assert [c.user_id for c in b.customers.list()] == ["after"]
