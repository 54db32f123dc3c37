"""Derived keys (rows without an id): the same keys as every earlier version wrote, whatever the
batch size or the path a row takes through the checks, and occurrence numbers that the ledger
holds (no counting table): a taken key is this run's (the next number) or an earlier run's (a
duplicate, met once)."""

import hashlib
import random

import pytest

from usagebill import Billing
from tests.test_import import NOW, T1, T1_UNIX, events, setup_customers, write

HEADER = "user_id,key,amount,timestamp\n"


@pytest.fixture
def b(config_path):
    billing = Billing.open(config_path, clock=lambda: NOW)
    setup_customers(billing)
    yield billing
    billing.close()


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
