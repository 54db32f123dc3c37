"""usage_totals (ledger/totals.py): the hourly and daily totals that summary reads equal the
sum of the events after every insert path (record, charge, import, and the migration that
counts the events already there), and any window read through them equals the events' sum."""

import random
import shutil
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usagebill import Billing
from usagebill.ledger import db as ledger_db
from usagebill.ledger import migrations, totals

from tests.conftest import EXAMPLE

# SQLite's opener, taken before any test runs (a PostgreSQL pass of the suite turns ledgers
# opened by path into PostgreSQL databases): the migration's count is checked on a SQLite file
_open_sqlite = ledger_db._open_sqlite


def ts(*a):
    return int(datetime(*a, tzinfo=timezone.utc).timestamp())


ANCHOR = ts(2026, 1, 1, 0, 0, 7)  # not on an hour: the period's first hour is a partial one
NOW = ts(2026, 1, 20, 15, 42, 13)


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def brute(ledger, user_id, feature, start, end):
    row = ledger.one("SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM usage_events WHERE user_id = ? AND feature = ? "
                     "AND timestamp >= ? AND timestamp < ?", (user_id, feature, start, end))
    return int(row[0]), int(row[1])


def assert_totals_are_the_events(ledger):
    """Every usage_totals row is its hour's or day's events, and no events lack a row."""
    got = {(r[0], r[1], r[2], r[3]): (int(r[4]), int(r[5])) for r in ledger.all(
        "SELECT user_id, feature, span, since, units, events FROM usage_totals")}
    want = {}
    for r in ledger.all("SELECT user_id, feature, timestamp, amount FROM usage_events"):
        for span in totals.SPANS:
            key = (r[0], r[1], span, r[2] - r[2] % span)
            units, n = want.get(key, (0, 0))
            want[key] = (units + r[3], n + 1)
    assert got == want


@pytest.fixture
def team(tmp_path):
    """Two customers on Team (api_calls, ai_tokens by usage; exports by credits and wallet)."""
    shutil.copy(EXAMPLE, tmp_path / "billing.toml")
    clock = Clock(NOW)
    b = Billing.open(tmp_path / "billing.toml", clock=clock)
    for user in ("ann", "bob"):
        b.customers.add(user)
        b.subscriptions.start(user, "Team", "month", anchor=ANCHOR)
    b.clock = clock
    yield b
    b.close()


def some_times(rng, n):
    # hour and day boundaries, their neighbours, and random seconds in the period so far
    edges = [t for d in range(1, 20) for t in (ts(2026, 1, d), ts(2026, 1, d, 13)) for t in (t - 1, t, t + 1)
             if ANCHOR <= t < NOW]
    return [rng.choice(edges) if rng.random() < 0.3 else rng.randrange(ANCHOR, NOW) for _ in range(n)]


def test_record_charge_and_import_keep_the_totals(team, tmp_path):
    rng = random.Random(7)
    for i, t in enumerate(some_times(rng, 60)):
        team.usage.record(rng.choice(["ann", "bob"]), rng.choice(["api_calls", "ai_tokens"]), rng.randint(1, 9),
                          at=t, idempotency_key=f"r{i % 50}" if i % 3 else None, push=False)  # some replays
    assert_totals_are_the_events(team.ledger)
    charges = [(rng.choice(["ann", "bob"]), rng.randint(300, 900), f"c{i}") for i in range(15)]  # past the wallet
    for user, units, key in charges + charges[:5]:  # the last 5 replay their keys: no new usage
        team.clock.t = NOW - rng.randrange(0, 3 * 86400)  # charges are stamped with the customer's now
        team.charge(user, "ai_tokens", units, idempotency_key=key, push=False)
    team.clock.t = NOW
    assert team.ledger.one("SELECT COUNT(*) FROM usage_events WHERE source = 'charge'")[0] > 0
    assert_totals_are_the_events(team.ledger)
    lines = ["user_id,key,amount,timestamp,id"]
    for i, t in enumerate(some_times(rng, 80)):
        when = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{rng.choice(['ann', 'bob'])},{rng.choice(['api_calls', 'ai_tokens'])},{rng.randint(1, 9)},"
                     f"{when},{f'i{i}' if i % 4 else ''}")
    (tmp_path / "usage.csv").write_text("\n".join(lines) + "\n")
    first = team.usage.import_rows(tmp_path / "usage.csv", push=False)
    assert first.imported == 80
    assert_totals_are_the_events(team.ledger)
    # again, with 10 new rows: the 80 known are skipped and not counted twice
    lines += [f"ann,api_calls,3,2026-01-{d:02d}T10:00:00Z,new{d}" for d in range(2, 12)]
    (tmp_path / "usage.csv").write_text("\n".join(lines) + "\n")
    again = team.usage.import_rows(tmp_path / "usage.csv", push=False, batch_rows=7)
    assert (again.imported, again.duplicates) == (10, 80)
    assert_totals_are_the_events(team.ledger)
    dry = team.usage.import_rows(tmp_path / "usage.csv", push=False, dry_run=True)
    assert dry.dry_run
    assert_totals_are_the_events(team.ledger)
    for user in ("ann", "bob"):
        for key in ("api_calls", "ai_tokens"):
            s = team.usage.get_summary(user, key)
            assert (s.total_amount, s.events) == brute(team.ledger, user, key, ANCHOR, s.period_end)


def test_a_failed_write_leaves_no_totals(team):
    team.usage.record("ann", "api_calls", 5, at=NOW - 100, push=False)
    with pytest.raises(Exception):
        with team.ledger.transaction():
            team.usage.record("ann", "api_calls", 7, at=NOW - 50, push=False)
            raise RuntimeError("the caller's transaction fails after the insert")
    assert_totals_are_the_events(team.ledger)
    assert team.usage.get_summary("ann", "api_calls").total_amount == 5


def test_any_window_is_the_sum_of_its_events(team):
    rng = random.Random(11)
    for t in some_times(rng, 300):
        team.usage.record("ann", "api_calls", rng.randint(1, 100), at=t, push=False)
    ledger = team.ledger
    lo, hi = ANCHOR - 2 * 86400, NOW + 86400

    @given(st.integers(lo, hi), st.integers(lo, hi))
    @settings(max_examples=300, deadline=None)
    def check(a, b):
        assert totals.window(ledger, "ann", "api_calls", a, b) == brute(ledger, "ann", "api_calls", a, b)

    check()
    for day in (3, 10):  # aligned to hours and days exactly
        a, b = ts(2026, 1, day), ts(2026, 1, day + 5, 7)
        assert totals.window(ledger, "ann", "api_calls", a, b) == brute(ledger, "ann", "api_calls", a, b)


@given(st.integers(0, 10**10), st.integers(0, 10**10))
def test_cover_splits_a_window_into_whole_buckets_and_short_ends(a, b):
    parts = totals.cover(a, b)
    if a >= b:
        assert parts == []
        return
    assert parts[0][1] == a and parts[-1][2] == b
    assert all(x[2] == y[1] for x, y in zip(parts, parts[1:]))  # contiguous, in order
    for span, lo, hi in parts:
        assert lo < hi
        if span:
            assert lo % span == 0 and hi % span == 0
        else:
            assert hi - lo < 2 * totals.HOUR  # the events read are the ends under an hour
    assert len(parts) <= 5


@pytest.mark.parametrize("by", ["hour", "day", "week"])
def test_summary_buckets_are_the_events(team, by):
    from usagebill.ledger import reports as queries
    from usagebill.reports import BUCKETS

    rng = random.Random(3)
    for t in some_times(rng, 200):
        team.usage.record("bob", "ai_tokens", rng.randint(1, 50), at=t, push=False)
    size, offset = BUCKETS[by]
    start, end = ANCHOR, NOW + 1
    want = {}
    for t, amount in team.ledger.all("SELECT timestamp, amount FROM usage_events WHERE user_id = 'bob'"):
        k = offset + (t - offset) // size * size
        want[k] = want.get(k, 0) + amount
    assert queries.usage_buckets(team.ledger, "bob", "ai_tokens", start, end, size, offset) == want


def test_the_migration_counts_the_events_already_there(tmp_path, monkeypatch):
    """A SQLite ledger made before m011, with events: migrating it counts them."""
    every = migrations.MIGRATIONS
    monkeypatch.setattr(migrations, "MIGRATIONS", [fn for fn in every if fn.__name__ != "m011_usage_totals"])
    ledger = _open_sqlite(str(tmp_path / "old.db"))
    rng = random.Random(5)
    with ledger.transaction():
        ledger.executemany(
            "INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, idempotency_key, source) "
            "VALUES (?, ?, ?, ?, ?, 0, NULL, 'record')",
            [(f"ube_{i}", rng.choice("xyz"), rng.choice(["f", "g"]), rng.randint(1, 99), rng.randrange(ANCHOR, NOW))
             for i in range(500)])
    assert not ledger.table_exists("usage_totals")
    ledger.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", every)
    ledger = _open_sqlite(str(tmp_path / "old.db"))
    assert_totals_are_the_events(ledger)
    assert ledger.one("SELECT COUNT(*) FROM usage_totals")[0] > 0
    ledger.close()


def test_an_import_batch_with_known_keys_counts_only_the_rows_it_inserted(team):
    from usagebill.ledger import events

    def row(i, key, amount):
        return (f"ube_t{i}", "ann", "api_calls", amount, ANCHOR + 3600 * i, NOW, key)

    ledger = team.ledger
    with ledger.transaction():
        assert events.insert_imported(ledger, [row(1, "k1", 10), row(2, "k2", 20), row(3, "k3", 30)]) == 3
    assert_totals_are_the_events(ledger)
    with ledger.transaction():  # k1 and k2 known, k4 new, k5 new twice in the batch
        batch = [row(4, "k1", 10), row(5, "k4", 40), row(6, "k2", 20), row(7, "k5", 50), row(8, "k5", 50)]
        assert events.insert_imported(ledger, batch) == 2
    assert_totals_are_the_events(ledger)
    assert totals.window(ledger, "ann", "api_calls", ANCHOR, NOW) == (150, 5)


def test_windows_of_many_customers_are_the_sums_of_their_events(team):
    """top's read: every customer and feature in its own window."""
    from usagebill.ledger import reports as queries

    rng = random.Random(17)
    for t in some_times(rng, 300):
        team.usage.record(rng.choice(["ann", "bob"]), rng.choice(["api_calls", "ai_tokens"]), rng.randint(1, 40),
                          at=t, push=False)
    windows = []
    for user in ("ann", "bob"):
        for key in ("api_calls", "ai_tokens", "exports"):
            a, b = sorted(rng.randrange(ANCHOR - 86400, NOW + 86400) for _ in range(2))
            windows.append((user, key, a, b))
    windows.append(("ann", "no_such_feature", ANCHOR, ANCHOR + 86400 * 3))  # no events
    want = {(u, f): brute(team.ledger, u, f, a, b) for u, f, a, b in windows}
    assert queries.usage_in_windows(team.ledger, windows) == {k: v for k, v in want.items() if v[1]}
