"""The import on PostgreSQL goes by COPY (a staging table, then one INSERT ... SELECT), not a
statement per row; and duplicates within a file and against an earlier run come out the same
on both backends: the same counts, the same rejects, the first row of a key as the event."""

import pytest

from usagebill import Billing
from usagebill.ledger import totals
from tests.test_import import NOW, T1, T1_UNIX, setup_customers, write

# ids: "a" twice with the same content (a duplicate), "b" twice with other content (the second
# refused), "c" once; rows without an id: two identical (two events), one of them again later
ROWS = ("user_id,key,amount,timestamp,id\n"
        f"alice,api_calls,1,{T1},a\n"
        f"bob,api_calls,2,{T1},b\n"
        f"alice,api_calls,1,{T1},a\n"
        f"bob,api_calls,9,{T1},b\n"
        f"alice,api_calls,5,{T1},\n"
        f"alice,api_calls,5,{T1},\n"
        f"bob,api_calls,3,{T1_UNIX + 60},c\n"
        f"alice,api_calls,5,{T1},\n")


def outcome(b, f, batch):
    """What two imports of ``f`` did, and what the ledger holds after them."""
    runs = []
    for _ in range(2):
        r = b.usage.import_rows(f, batch_rows=batch)
        runs.append((r.imported, r.duplicates, r.rejected, [(e.line, e.column) for e in r.errors]))
    held = [tuple(r) for r in b.ledger.all(
        "SELECT user_id, amount, timestamp, idempotency_key FROM usage_events WHERE source = 'import' ORDER BY id")]
    window = [totals.window(b.ledger, u, "api_calls", T1_UNIX - 86400, T1_UNIX + 86400) for u in ("alice", "bob")]
    return runs, held, window


@pytest.mark.parametrize("batch", [2, 1000])
def test_duplicates_come_out_the_same_on_both_backends(config_path, tmp_path, pg_url, batch):
    f = write(tmp_path, "u.csv", ROWS)
    got = {}
    for name, target in (("sqlite", tmp_path / "ledger.db"), ("postgres", pg_url)):
        b = setup_customers(Billing.open(config_path, target, clock=lambda: NOW))
        try:
            got[name] = outcome(b, f, batch)
        finally:
            b.close()
    runs, held, window = got["sqlite"]
    assert runs == [(6, 1, 1, [(5, "id")]), (0, 7, 1, [(5, "id")])]  # the re-run imports nothing
    assert [(u, a, k) for u, a, _, k in held if k in ("a", "b")] == [("alice", 1, "a"), ("bob", 2, "b")]  # first wins
    assert window == [(16, 4), (5, 2)]  # the totals count each event once
    assert got["postgres"] == got["sqlite"]


def test_postgres_stages_the_rows_by_copy(config_path, tmp_path, pg_url, monkeypatch):
    """Every rows-sized statement of the import goes through ``PgLedger.staged`` (COPY);
    none through executemany (psycopg's: a statement per row)."""
    from usagebill.ledger.postgres import PgLedger

    many, staged = [], []
    real_many, real_staged = PgLedger.executemany, PgLedger.staged

    def executemany(self, sql, rows):
        rows = list(rows)
        many.append((sql, len(rows)))
        return real_many(self, sql, rows)

    def stage(self, table, columns, rows):
        staged.append((table, len(rows)))
        return real_staged(self, table, columns, rows)

    monkeypatch.setattr(PgLedger, "executemany", executemany)
    monkeypatch.setattr(PgLedger, "staged", stage)
    b = setup_customers(Billing.open(config_path, pg_url, clock=lambda: NOW))
    try:
        assert isinstance(b.ledger, PgLedger)
        many.clear()
        f = write(tmp_path, "u.csv", ROWS)
        first, again = b.usage.import_rows(f), b.usage.import_rows(f)
    finally:
        b.close()
    assert (first.imported, again.imported, again.duplicates) == (6, 0, 7)
    assert [sql for sql, _ in many if "usage_events" in sql or "import_rows" in sql] == []
    tables = {t for t, _ in staged}
    assert "staged_usage_events" in tables  # the insert
    assert "import_rows" in tables  # the look-ups (the re-run's keys)
    assert sum(n for t, n in staged if t == "staged_usage_events") >= 7  # each valid row of the file, at least once
