"""Derived keys (rows without an id): the same keys as every earlier version wrote, whatever the
batch size or the path a row takes through the checks, and occurrence numbers that the ledger
holds (no counting table): a taken key is this run's (the next number) or an earlier run's (a
duplicate, met once)."""

import hashlib
from collections import Counter
import random

import pytest

from usagebill import Billing
from usagebill.importer import writing
from usagebill.importer.writing import _SAMPLE
from tests.test_import import NOW, T1, T1_UNIX, b, events, setup_customers, write  # noqa: F401 (b: the fixture)

HEADER = "user_id,key,amount,timestamp\n"


def legacy_key(user, feature, amount, ts, n):
    """The derived key as the importer has always written it (ledgers hold these)."""
    digest = hashlib.blake2b(f"{user}\x1f{feature}\x1f{amount}\x1f{ts}".encode(), digest_size=16).hexdigest()
    return f"import:{digest}:{n}"


def keys_by_line(b):
    return [e[4] for e in events(b)]  # events() orders by id: the run's prefix, then the line


def test_derived_keys_are_the_documented_ones(b, tmp_path):
    f = write(tmp_path, "u.csv", HEADER + f"alice,api_calls,3,{T1}\nalice,api_calls,003,{T1_UNIX}\nbob,api_calls,1,{T1}\n")
    b.usage.import_rows(f)
    assert keys_by_line(b) == [legacy_key("alice", "api_calls", 3, T1_UNIX, 0),
                               legacy_key("alice", "api_calls", 3, T1_UNIX, 1),
                               legacy_key("bob", "api_calls", 1, T1_UNIX, 0)]


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 1000])
def test_keys_do_not_depend_on_batches_nor_on_which_rows_need_the_rules_themselves(config_path, tmp_path, batch):
    """Identical rows written several ways (" 7" and "2026-02-27T11:00:00+01:00" go to the rules
    one by one, "7" and T1 through the column twins), among bad rows, in any batch size."""
    rnd = random.Random(batch)
    forms = [("7", T1), (" 7", T1), ("7", str(T1_UNIX)), ("007", "2026-02-27T11:00:00+01:00"), ("8", T1)]
    lines = [f"alice,api_calls,{a},{t}" if rnd.random() > 0.1 else "carol,api_calls,1," + T1
             for a, t in (rnd.choice(forms) for _ in range(60))]
    f = write(tmp_path, "u.csv", HEADER + "\n".join(lines) + "\n")
    got = []
    for size in (batch, 1000):
        b = Billing.open(config_path, ":memory:", clock=lambda: NOW)
        setup_customers(b)
        r = b.usage.import_rows(f, batch_rows=size)
        got.append(keys_by_line(b))
        assert r.imported + r.rejected == 60 and r.duplicates == 0
        assert b.usage.import_rows(f, batch_rows=size + 1).duplicates == r.imported
        b.close()
    assert got[0] == got[1]
    sevens = [k for k in got[0] if k.startswith(legacy_key("alice", "api_calls", 7, T1_UNIX, 0)[:-1])]
    assert [k.rsplit(":", 1)[1] for k in sevens] == [str(n) for n in range(len(sevens))]


@pytest.mark.parametrize("batch", [1, 2, 1000])
def test_an_earlier_run_holds_some_occurrences(b, tmp_path, batch):
    """A row met as a duplicate of an earlier run's is met once: its next identical row of the
    file is the next occurrence (new), not the same duplicate again."""
    x, y = f"alice,api_calls,3,{T1}\n", f"bob,api_calls,1,{T1}\n"
    b.usage.import_rows(write(tmp_path, "a.csv", HEADER + x + y + y), batch_rows=batch)
    r = b.usage.import_rows(write(tmp_path, "b.csv", HEADER + y + x + y + x + y + x), batch_rows=batch)
    assert (r.imported, r.duplicates) == (3, 3)  # x: 1 old + 2 new; y: 2 old + 1 new
    r = b.usage.import_rows(write(tmp_path, "b.csv", HEADER + x * 3 + y * 3), batch_rows=batch)
    assert (r.imported, r.duplicates) == (0, 6)
    assert sorted(keys_by_line(b)) == sorted(
        [legacy_key("alice", "api_calls", 3, T1_UNIX, n) for n in range(3)]
        + [legacy_key("bob", "api_calls", 1, T1_UNIX, n) for n in range(3)])


def test_a_dry_run_counts_identical_rows_like_a_run(b, tmp_path):
    x = f"alice,api_calls,3,{T1}\n"
    b.usage.import_rows(write(tmp_path, "a.csv", HEADER + x))
    f = write(tmp_path, "b.csv", HEADER + x * 4)
    dry = b.usage.import_rows(f, dry_run=True, batch_rows=1, commit_rows=1)
    assert (dry.imported, dry.duplicates) == (3, 1)
    run = b.usage.import_rows(f, batch_rows=1, commit_rows=1)
    assert (run.imported, run.duplicates) == (3, 1)


def test_a_record_holding_a_derived_key_is_a_duplicate(b, tmp_path):
    """Whoever holds the key (here record --id with the very key), the row is not written twice."""
    key = legacy_key("alice", "api_calls", 3, T1_UNIX, 0)
    b.usage.record("alice", "api_calls", 3, at=T1, idempotency_key=key)
    r = b.usage.import_rows(write(tmp_path, "a.csv", HEADER + f"alice,api_calls,3,{T1}\n" * 2))
    assert (r.imported, r.duplicates) == (1, 1)


@pytest.mark.parametrize("batch", [2, 1000])
def test_the_first_row_of_an_id_is_the_event_whichever_path_it_takes(b, tmp_path, batch):
    """A row the column twins cannot vouch for (a time with an offset) is checked after the
    others of its block, but written in file order: it holds its id, the later row is refused."""
    f = write(tmp_path, "u.csv", "user_id,key,amount,timestamp,id\n"
              f"alice,api_calls,1,{T1},\nalice,api_calls,1,{T1},\n"
              "alice,api_calls,1,2026-02-28T23:00:00+01:00,a\n"
              f"alice,api_calls,1,{T1},a\n")
    r = b.usage.import_rows(f, batch_rows=batch)
    assert (r.imported, r.duplicates, r.rejected) == (3, 0, 1)
    assert r.errors[0].line == 5 and r.errors[0].column == "id"
    assert [e[3] for e in events(b, "alice") if e[4] == "a"] == [T1_UNIX + 36 * 3600]


# -- finding the holders of taken keys: by a range of seqs, or a look-up per key ------------------
# A batch of at least 4 * _SAMPLE (256) derived rows whose keys are mostly taken reads the range
# of seqs where a sample of look-ups found their holders (Writer._holders); the answers must be
# those of a look-up per key whatever the file's order, the batch size or who holds the keys.

def _contents(rnd, n, amounts=40):
    """n rows over two customers and ``amounts`` amounts: with repeats (occurrence numbers above
    0) unless the amounts are many."""
    return [f"{rnd.choice(['alice', 'bob'])},api_calls,{rnd.randrange(1, amounts)},{T1}\n" for _ in range(n)]


def model_counts(held: Counter, lines) -> tuple[int, int]:
    """The model's (imported, duplicates) of importing ``lines`` into a ledger that holds
    ``held[c]`` occurrences of each content c; the ledger holds ``held | Counter(lines)`` after."""
    k = Counter(lines)
    return sum(max(0, n - held[c]) for c, n in k.items()), sum(min(n, held[c]) for c, n in k.items())


@pytest.mark.parametrize("batch", [7, 4 * _SAMPLE, 5 * _SAMPLE, 1000])
def test_imports_in_any_order_match_a_model_of_occurrences(config_path, tmp_path, batch):
    """The model: after importing a file holding content c k times, the ledger holds occurrences
    0..k-1 of c (at least); an import adds max(0, k - held) of c and finds min(k, held) duplicates."""
    rnd = random.Random(batch)
    first = _contents(rnd, 600)
    shuffled = rnd.sample(first, len(first))
    grown = first[:300] + _contents(rnd, 150) + first[300:] + first[:50]  # new rows and more repeats
    b = Billing.open(config_path, tmp_path / "l.db", clock=lambda: NOW)
    setup_customers(b)
    held: Counter = Counter()
    for i, lines in enumerate([first, first, shuffled, grown, grown, first]):
        r = b.usage.import_rows(write(tmp_path, f"{i}.csv", HEADER + "".join(lines)), batch_rows=batch)
        assert (r.imported, r.duplicates, r.rejected) == (*model_counts(held, lines), 0), i
        held |= Counter(lines)
    got = Counter(keys_by_line(b))
    assert got == Counter(legacy_key(*c.strip().split(",")[:3], T1_UNIX, n) for c, k in held.items() for n in range(k))
    b.close()


def test_a_re_run_reads_its_holders_by_their_range_not_a_look_up_each(b, tmp_path, monkeypatch):
    batch = 5 * _SAMPLE
    f = write(tmp_path, "u.csv", HEADER + "".join(_contents(random.Random(1), 4 * batch, amounts=10**9)))
    b.usage.import_rows(f, batch_rows=batch)

    looked_up, ranges = [], []
    real_holders, real_between = writing.events.key_holders, writing.events.keys_between
    monkeypatch.setattr(writing.events, "key_holders", lambda l, rows, since: looked_up.append(len(rows)) or
                        real_holders(l, rows, since))
    monkeypatch.setattr(writing.events, "keys_between", lambda l, lo, hi, *more: ranges.append(hi - lo) or
                        real_between(l, lo, hi, *more))
    r = b.usage.import_rows(f, batch_rows=batch)
    assert (r.imported, r.duplicates) == (0, 4 * batch)
    assert len(ranges) == 4 and max(ranges) < 2 * batch  # one range a batch, about the batch's size
    assert sum(looked_up) < batch  # the samples, and the few holders outside the range


def test_another_customer_holding_the_same_key_text_in_the_range_is_not_the_holder(b, tmp_path):
    """bob's event whose key is the text of alice's derived key sits among the holders read by
    range: alice's row is new all the same."""
    batch = 5 * _SAMPLE
    lines = [f"{u},api_calls,{n + 100},{T1}\n" for n, u in enumerate(["alice", "bob"] * batch)]
    b.usage.import_rows(write(tmp_path, "a.csv", HEADER + "".join(lines)), batch_rows=batch)
    b.usage.record("bob", "api_calls", 1, at=T1, idempotency_key=legacy_key("alice", "api_calls", 99, T1_UNIX, 0))
    again = lines[:batch + 100] + [f"alice,api_calls,99,{T1}\n"] + lines[batch + 100:]
    r = b.usage.import_rows(write(tmp_path, "b.csv", HEADER + "".join(again)), batch_rows=batch)
    assert (r.imported, r.duplicates) == (1, 2 * batch)
    assert legacy_key("alice", "api_calls", 99, T1_UNIX, 0) in [e[4] for e in events(b, "alice")]


def test_an_import_running_meanwhile_holds_keys_written_after_this_run_began(config_path, tmp_path):
    """Another import of the same file commits while this one is between transactions: the keys
    it wrote are its own (duplicates here), not this run's (which would take the next number and
    bill each row twice)."""
    batch = 5 * _SAMPLE
    lines = _contents(random.Random(2), 4 * batch, amounts=400)
    f = write(tmp_path, "u.csv", HEADER + "".join(lines))
    db = tmp_path / "l.db"
    a = Billing.open(config_path, db, clock=lambda: NOW)
    setup_customers(a)
    other = []

    def meanwhile(done, total, rows):
        if rows and not other:  # after this run's first transaction
            with Billing.open(config_path, db, clock=lambda: NOW) as b:
                other.append(b.usage.import_rows(f, batch_rows=batch, push=False))

    r = a.usage.import_rows(f, batch_rows=batch, commit_rows=batch, on_progress=meanwhile, push=False)
    assert (r.imported, r.duplicates) == (batch, 3 * batch)
    assert (other[0].imported, other[0].duplicates) == (3 * batch, batch)
    assert Counter(keys_by_line(a)) == Counter(
        legacy_key(*c.strip().split(",")[:3], T1_UNIX, n) for c, k in Counter(lines).items() for n in range(k))
    a.close()


def test_derived_keys_of_contents_holding_a_line_end_are_the_same_keys():
    """The contents are hashed one by one when one holds a line end (no customer's id does, but
    the function does not rely on it)."""
    users, features, amounts, times = ["a\nb", "c", ""], ["api_calls"] * 3, [1, 2, 3], [T1_UNIX] * 3
    assert writing.derived_keys(users, features, amounts, times) == [
        legacy_key(u, f, a, t, 0) for u, f, a, t in zip(users, features, amounts, times)]
    assert writing.derived_keys(users[1:], features[1:], amounts[1:], times[1:]) == [
        legacy_key(u, f, a, t, 0) for u, f, a, t in zip(users[1:], features[1:], amounts[1:], times[1:])]
    assert writing.derived_keys([], [], [], []) == []


def _id_rows(rnd, n, start=0):
    return [[f"{rnd.choice(['alice', 'bob'])}", "api_calls", str(rnd.randrange(1, 10**6)), T1, f"r-{i}"]
            for i in range(start, start + n)]


def test_ids_run_again_give_the_same_verdicts_through_the_range_as_by_look_ups(config_path, tmp_path, monkeypatch):
    """A file with ids run again with some rows changed: an id naming other content (refused),
    a row without its time (the same event: a row without a time matches any), new ids. Batches
    big enough to read the holders' range give what batches too small to do so give."""
    rnd, batch = random.Random(5), 5 * _SAMPLE
    first = _id_rows(rnd, 3 * batch)
    second = [list(r) for r in first]
    for r in rnd.sample(second[2 * batch + 50:], 12):  # in the last batch, where every row has its time
        r[2] = str(int(r[2]) + 1)  # the id now names another amount
    for r in rnd.sample(second[:batch - 50], 12):
        r[3] = ""  # no time: matches the event's
    second[100:100] = _id_rows(rnd, 30, start=10**6)
    text = lambda rows: "user_id,key,amount,timestamp,id\n" + "".join(",".join(r) + "\n" for r in rows)  # noqa: E731
    compared = []
    real_compare = writing.Writer._compare
    monkeypatch.setattr(writing.Writer, "_compare", lambda self, rows: compared.append(len(rows)) or
                        real_compare(self, rows))
    verdicts = []
    for size in (7, batch):
        b = Billing.open(config_path, tmp_path / f"{size}.db", clock=lambda: NOW)
        setup_customers(b)
        b.usage.import_rows(write(tmp_path, "a.csv", text(first)), batch_rows=size)
        compared.clear()
        r = b.usage.import_rows(write(tmp_path, "b.csv", text(second)), batch_rows=size)
        verdicts.append(((r.imported, r.duplicates, r.rejected), [(e.line, e.column) for e in r.errors],
                         sorted(events(b))))
        b.close()
    assert verdicts[0][0] == (30, len(first) - 12, 12)
    assert verdicts[0] == verdicts[1]
    assert sum(compared) < 200  # with the range read: the changed and new rows, and holders outside it
