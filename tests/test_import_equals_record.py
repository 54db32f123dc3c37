"""The importer and ``record`` use the same rules: for any values, ``import`` accepts a row
exactly when ``record`` accepts the same values (and stores the same event)."""

import csv
import io
import json
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from usagebill import Billing, UsagebillError

NOW = int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp())
ANCHOR = NOW - 20 * 86400

# valid values most of the time, so that the later rules (time, key) are reached often
users = st.sampled_from(["alice"] * 8 + ["tess", "nosub", "carol", " alice", "al\u202eice", "al\u200bice", "", 5])
keys = st.sampled_from(["api_calls"] * 8 + ["exports", "ai_tokens", "api_call", "", 7])
amounts = (
    st.sampled_from(["1"] * 6 + [7] * 6 + ["7", " 7", "0", "-1", "+3", "2.0", "2.5", "1e3", "1_000", "\u0663", "", "abc",
                     str(2**53), str(2**53 + 1), 2.0, 2.5, True])
    | st.integers(-3, 2**54)
    | st.text(alphabet="0123456789.-+e_ \u0661", max_size=6)
)
offsets = st.sampled_from([0, -60, -20 * 86400 - 1, -20 * 86400, -36 * 86400, 299, 301, 10**12])
times = (
    st.none()
    | offsets.map(lambda d: NOW + d)
    | offsets.map(lambda d: str(NOW + d))
    | offsets.filter(lambda d: d < 10**9).map(
        lambda d: datetime.fromtimestamp(NOW + d, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    | st.sampled_from(["2026-02-30T00:00:00Z", "2026-02-27", "2026-02-27T10:00:00+01:00", "yesterday", "1772323200.5",
                       "999999999999", "\u0661\u0667\u0667\u0662\u0663\u0662\u0663\u0662\u0660\u0660", "-5", 1.5])
)
ids = st.none() | st.sampled_from(["k1", "dup", "dup", "op-key", " ", "x" * 256, 17, [1]])


def ledger(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "equivalence.toml"
    if not path.exists():
        from tests.conftest import EXAMPLE

        path.write_text(EXAMPLE.read_text())
    b = Billing.open(path, ":memory:", clock=lambda: NOW)
    for user, plan in (("alice", "Pro"), ("tess", "Team")):
        b.customers.add(user)
        b.subscriptions.start(user, plan, "month", anchor=ANCHOR)
    b.customers.add("nosub")
    # an event under the key "dup", and a key used by another kind of write
    b.usage.record("alice", "api_calls", 7, at=NOW - 60, idempotency_key="dup")
    b.credits.grant("alice", "api_calls", 1, idempotency_key="op-key")
    return b


def as_file(row: dict, fmt: str) -> io.BytesIO:
    if fmt == "jsonl":
        return io.BytesIO((json.dumps({k: v for k, v in row.items() if v is not None}) + "\n").encode())
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(list(row))
    w.writerow(["" if v is None else v for v in row.values()])
    return io.BytesIO(out.getvalue().encode())


def stored(b):
    return [tuple(r) for r in b.ledger.all("SELECT user_id, feature, amount, timestamp FROM usage_events ORDER BY seq")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=users, key=keys, amount=amounts, at=times, idempotency_key=ids, fmt=st.sampled_from(["csv", "jsonl"]))
def test_import_accepts_a_row_exactly_when_record_accepts_it(tmp_path_factory, user, key, amount, at, idempotency_key,
                                                            fmt):
    if fmt == "csv":  # a CSV field is text: compare with record given the same text
        user, key, amount = str(user), str(key), str(amount)
        at = None if at is None else str(at)
        idempotency_key = None if idempotency_key is None else str(idempotency_key)
        if user == "" or key == "":  # an empty field is a missing value: record cannot be given one
            return
    row = {"user_id": user, "key": key, "amount": amount, "timestamp": at, "id": idempotency_key}
    if type(idempotency_key) is int:  # a JSON number as an id is that number's text (documented)
        idempotency_key = str(idempotency_key)
    by_record, by_import = ledger(tmp_path_factory), ledger(tmp_path_factory)
    try:
        try:
            event = by_record.usage.record(user, key, amount, at=at, idempotency_key=idempotency_key)
            recorded = "replayed" if event.replayed else "new"
        except UsagebillError:
            recorded = "refused"
        except TypeError:  # a JSON value record's signature cannot take (e.g. a list as the key)
            return
        r = by_import.usage.import_rows(as_file(row, fmt), fmt)
        imported = "new" if r.imported else "replayed" if r.duplicates else "refused"
        assert (recorded, imported) in (("new", "new"), ("replayed", "replayed"), ("refused", "refused")), \
            (recorded, imported, r.errors)
        if recorded == "new" and at is not None:
            assert stored(by_record) == stored(by_import)
    finally:
        by_record.close()
        by_import.close()
