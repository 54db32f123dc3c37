import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usagebill import Billing, ValidationError
from usagebill.importer import ImportFileError, RowError

NOW = int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp())
ANCHOR = NOW - 20 * 86400
T1 = "2026-02-27T10:00:00Z"
T1_UNIX = int(datetime(2026, 2, 27, 10, tzinfo=timezone.utc).timestamp())


def setup_customers(b: Billing) -> Billing:
    for user, plan in (("alice", "Pro"), ("bob", "Pro"), ("tess", "Team")):
        b.customers.add(user)
        b.subscriptions.start(user, plan, "month" if plan == "Team" else None, anchor=ANCHOR)
    b.customers.add("nosub")
    return b


@pytest.fixture
def b(config_path):
    """A ledger whose "now" is NOW, with alice and bob on Pro, tess on Team, nosub unsubscribed."""
    billing = Billing.open(config_path, clock=lambda: NOW)
    setup_customers(billing)
    yield billing
    billing.close()


def events(b, user=None):
    sql = "SELECT user_id, feature, amount, timestamp, idempotency_key FROM usage_events WHERE source = 'import'"
    rows = b.ledger.all(sql + (" AND user_id = ?" if user else "") + " ORDER BY id", (user,) if user else ())  # id: run + line
    return [tuple(r) for r in rows]


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return p


# -- idempotency -----------------------------------------------------------------------------

def test_importing_the_same_file_twice_records_nothing_the_second_time(b, tmp_path):
    f = write(tmp_path, "u.csv", f"user_id,key,amount,timestamp\nalice,api_calls,3,{T1}\nbob,api_calls,4,{T1_UNIX}\n")
    r = b.usage.import_rows(f)
    assert (r.rows, r.imported, r.duplicates, r.rejected, r.ok) == (2, 2, 0, 0, True)
    again = b.usage.import_rows(f)
    assert (again.rows, again.imported, again.duplicates, again.rejected) == (2, 0, 2, 0)
    assert [e[:4] for e in events(b)] == [("alice", "api_calls", 3, T1_UNIX), ("bob", "api_calls", 4, T1_UNIX)]
    # new events are pending delivery: no delivery row yet
    assert b.ledger.one("SELECT COUNT(*) FROM event_delivery")[0] == 0


def test_identical_rows_are_distinct_events_and_reimport_is_a_no_op(b, tmp_path):
    row = f"alice,api_calls,3,{T1}\n"
    f = write(tmp_path, "u.csv", "user_id,key,amount,timestamp\n" + row * 3 + f"alice,api_calls,3,{T1_UNIX}\n")
    r = b.usage.import_rows(f)
    assert (r.imported, r.duplicates) == (4, 0)  # the same time written two ways is still the same row
    keys = [e[4] for e in events(b)]
    assert len(set(keys)) == 4 and all(k.startswith("import:") for k in keys)
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == ["0", "1", "2", "3"]
    r = b.usage.import_rows(f)
    assert (r.imported, r.duplicates) == (0, 4)
    # a file with one more identical row adds exactly one
    f2 = write(tmp_path, "u2.csv", "user_id,key,amount,timestamp\n" + row * 5)
    r = b.usage.import_rows(f2)
    assert (r.imported, r.duplicates) == (1, 4)


def test_occurrences_are_counted_across_batches(b, tmp_path):
    rows = [f"alice,api_calls,{1 + i % 2},{T1}\n" for i in range(25)]
    f = write(tmp_path, "u.csv", "user_id,key,amount,timestamp\n" + "".join(rows))
    assert b.usage.import_rows(f, batch_rows=4).imported == 25
    assert b.usage.import_rows(f, batch_rows=7).duplicates == 25  # batch size does not change the keys
    assert b.usage.import_rows(f).duplicates == 25


def test_rows_with_ids(b, tmp_path):
    b.usage.record("alice", "api_calls", 5, at=T1, idempotency_key="r-1")
    f = write(tmp_path, "u.csv", (
        "id,user_id,key,amount,timestamp\n"
        f"r-1,alice,api_calls,5,{T1}\n"         # 2: recorded already with the same content: duplicate
        f"r-2,alice,api_calls,6,{T1}\n"         # 3: new
        f"r-2,alice,api_calls,6,{T1}\n"         # 4: repeated in the file: duplicate
        f"r-2,alice,api_calls,7,{T1}\n"         # 5: same id, other content: rejected
        f"r-2,bob,api_calls,7,{T1}\n"           # 6: ids are per customer: new
        "r-3,alice,api_calls,8,\n"              # 7: no timestamp: now
        f"r-1,alice,api_calls,9,{T1}\n"         # 8: the key of the recorded event, other amount
    ))
    r = b.usage.import_rows(f)
    assert (r.imported, r.duplicates, r.rejected) == (3, 2, 2)
    assert [(e.line, e.column) for e in r.errors] == [(5, "id"), (8, "id")]
    assert "idempotency key 'r-2' was already used by 'alice' for 6 api_calls at 2026-02-27T10:00:00Z" in r.errors[0].reason
    assert [e[:5] for e in events(b)] == [
        ("alice", "api_calls", 6, T1_UNIX, "r-2"), ("bob", "api_calls", 7, T1_UNIX, "r-2"),
        ("alice", "api_calls", 8, NOW, "r-3"),
    ]
    # re-run: rows without timestamp but with an id are recognised although "now" moved on
    later = Billing(b.config, b.ledger, clock=lambda: NOW + 60)
    r = later.usage.import_rows(f)
    assert (r.imported, r.duplicates, r.rejected) == (0, 5, 2)
    # and record() sees the imported keys
    assert b.usage.record("alice", "api_calls", 6, at=T1, idempotency_key="r-2").replayed


def test_an_id_used_by_another_operation_is_rejected(b, tmp_path):
    b.credits.grant("alice", "api_calls", 5, idempotency_key="g-1")
    f = write(tmp_path, "u.csv", f"user_id,key,amount,timestamp,id\nalice,api_calls,1,{T1},g-1\nalice,api_calls,1,{T1},g-2\n")
    r = b.usage.import_rows(f)
    assert (r.imported, r.rejected) == (1, 1)
    assert r.errors == [RowError(2, "id", "idempotency key 'g-1' was already used by 'alice' for another operation")]


# -- bad rows --------------------------------------------------------------------------------

BAD_ROWS = [
    # (row, column, reason fragment)
    (f"carol,api_calls,1,{T1},", "user_id", "unknown customer 'carol'"),
    (f"nosub,api_calls,1,{T1},", "user_id", "customer 'nosub' has no active subscription"),
    (f",api_calls,1,{T1},", "user_id", "user_id is missing"),
    (f"al\tice,api_calls,1,{T1},", "user_id", "user ids must be printable characters"),
    (f"al\u202eice,api_calls,1,{T1},", "user_id", "invisible or control character U+202E"),
    (f"al\u200bice,api_calls,1,{T1},", "user_id", "invisible or control character U+200B"),
    (f"alice,api_call,1,{T1},", "key", "unknown feature 'api_call' (did you mean 'api_calls'?)"),
    (f"alice,ai_tokens,1,{T1},", "key", "plan 'Pro' of customer 'alice' has no feature 'ai_tokens'"),
    (f"tess,exports,1,{T1},", "key", "feature 'exports' of plan 'Team' does not track usage"),
    (f"alice,,1,{T1},", "key", "key is missing"),
    (f"alice,api_calls,0,{T1},", "amount", "amount must be positive, not 0"),
    (f"alice,api_calls,-2,{T1},", "amount", "amount must be positive, not -2"),
    (f"alice,api_calls,1.5,{T1},", "amount", "record in a smaller unit"),
    (f"alice,api_calls,ten,{T1},", "amount", "amount must be a positive whole number, not 'ten'"),
    (f"alice,api_calls,,{T1},", "amount", "amount is missing"),
    (f"alice,api_calls,{2**53 + 1},{T1},", "amount", "is too large"),
    (f"alice,api_calls,2.0,{T1},", "amount", "without a decimal point"),
    (f"alice,api_calls,1e3,{T1},", "amount", "digits 0-9 only"),
    (f"alice,api_calls,1_000,{T1},", "amount", "digits 0-9 only"),
    (f"alice,api_calls,\u0663,{T1},", "amount", "digits 0-9 only"),
    ("alice,api_calls,1,999999999999,", "timestamp", "out of range"),
    ("alice,api_calls,1,\u0661\u0667\u0667\u0662\u0663\u0662\u0663\u0662\u0660\u0660,", "timestamp", "is not a time"),
    ("alice,api_calls,1,yesterday,", "timestamp", "timestamp: 'yesterday' is not a time"),
    ("alice,api_calls,1,2026-02-30T00:00:00Z,", "timestamp", "is not a time"),
    ("alice,api_calls,1,1772323200.5,", "timestamp", "Unix times are whole seconds"),
    (f"alice,api_calls,1,{NOW + 301},", "timestamp", "more than 5 minutes after the customer's now (2026-03-01T00:00:00Z)"),
    ("alice,api_calls,1,2026-02-01T00:00:00Z,", "timestamp", "is before 'alice''s subscription started"),
    (f"alice,api_calls,1,{T1}," + "x" * 256, "id", "idempotency key must be 1 to 255 characters"),
    (f"alice,api_calls,1,{T1},   ", "id", "idempotency key must be 1 to 255 characters"),
]


def test_bad_rows_of_every_kind_are_reported_with_line_and_column(b, tmp_path):
    good = f"alice,api_calls,1,{T1},"
    lines = ["user_id,key,amount,timestamp,id"]
    expected = []
    for row, column, reason in BAD_ROWS:
        lines.append(good + "ok-" + str(len(lines)))
        lines.append(row)
        expected.append((len(lines), column, reason))
    f = write(tmp_path, "u.csv", "\n".join(lines) + "\n")
    seen = []
    r = b.usage.import_rows(f, on_reject=seen.append)
    assert (r.imported, r.rejected) == (len(BAD_ROWS), len(BAD_ROWS))
    assert seen == r.errors
    assert [(e.line, e.column) for e in r.errors] == [(line, col) for line, col, _ in expected]
    for e, (_, _, reason) in zip(r.errors, expected):
        assert reason in e.reason, (e, reason)
    assert str(r.errors[0]) == "line 3, column user_id: unknown customer 'carol' (add it with: usagebill customers add carol)"


def test_timestamp_window_follows_the_customers_test_clock(b, tmp_path):
    clock_time = NOW + 40 * 86400
    b.customers.add("clocked", test_clock="clock_1")
    b.customers.set_clock_time("clock_1", clock_time)
    b.subscriptions.start("clocked", "Pro", anchor=NOW)
    f = write(tmp_path, "u.csv", (
        "user_id,key,amount,timestamp\n"
        f"clocked,api_calls,1,{clock_time - 100}\n"          # fine in the clock's time (in the future for us)
        f"clocked,api_calls,2,{clock_time + 301}\n"          # 5 minutes after the clock
        "clocked,api_calls,3,\n"                              # no time: the clock's time
        f"alice,api_calls,4,{clock_time - 100}\n"            # alice lives in real time (NOW)
    ))
    r = b.usage.import_rows(f)
    assert (r.imported, r.rejected) == (2, 2)
    assert [(e.line, e.column) for e in r.errors] == [(3, "timestamp"), (5, "timestamp")]
    assert [e[2:4] for e in events(b, "clocked")] == [(1, clock_time - 100), (3, clock_time)]


def test_quoted_fields_and_multiline_records_keep_line_numbers(b, tmp_path):
    f = write(tmp_path, "u.csv", (
        "user_id,key,amount,timestamp,id\n"
        f'"alice","api_calls","2","{T1}","a,1"\n'
        f'alice,api_calls,3,{T1},"multi\nline id"\n'
        f"alice,api_calls,0,{T1},x\n"
    ))
    r = b.usage.import_rows(f, reject_file=tmp_path / "rej.csv")
    assert (r.imported, r.rejected) == (2, 1)
    assert r.errors[0].line == 5
    assert [e[4] for e in events(b)] == ["a,1", "multi\nline id"]


# -- reject file -----------------------------------------------------------------------------

def test_reject_file_round_trip(b, tmp_path):
    header = "user_id,key,amount,timestamp,id\r\n"
    bad1 = f'bob2,api_calls,2,{T1},"k, 1"\r\n'
    bad2 = f"alice,api_calls,1.5,{T1},k2\r\n"
    text = header + f"alice,api_calls,1,{T1},k0\r\n" + bad1 + bad2 + f"bob,api_calls,1,{T1},k3"
    f = write(tmp_path, "u.csv", "\ufeff" + text)
    rej = tmp_path / "rejects.csv"
    r = b.usage.import_rows(f, reject_file=rej)
    assert (r.imported, r.rejected, r.reject_file) == (2, 2, str(rej))
    assert rej.read_bytes() == ("\ufeff" + header + bad1 + bad2).encode()  # byte for byte, with the header
    assert not (tmp_path / "rejects.csv.partial").exists()
    # fix them: add the customer, make the amount whole; import the reject file
    b.customers.add("bob2")
    b.subscriptions.start("bob2", "Pro", anchor=ANCHOR)
    rej.write_bytes(rej.read_bytes().replace(b"1.5", b"2"))
    rej2 = tmp_path / "rejects2.csv"
    r = b.usage.import_rows(rej, reject_file=rej2)
    assert (r.imported, r.rejected) == (2, 0)
    assert rej2.read_bytes() == ("\ufeff" + header).encode()
    assert sorted(e[4] for e in events(b)) == ["k, 1", "k0", "k2", "k3"]
    # and the original file is now fully imported
    r = b.usage.import_rows(f)
    assert (r.imported, r.duplicates, r.rejected) == (0, 3, 1)


def test_reject_file_for_jsonl_and_a_last_line_without_newline(b, tmp_path):
    f = write(tmp_path, "u.jsonl", (
        '{"user_id": "alice", "key": "api_calls", "amount": 0}\n'
        f'{{"user_id": "alice", "key": "api_calls", "amount": 1, "timestamp": "{T1}"}}\n'
        '{"user_id": "carol", "key": "api_calls", "amount": 1}'
    ))
    rej = tmp_path / "rej.jsonl"
    r = b.usage.import_rows(f, reject_file=rej)
    assert (r.imported, r.rejected) == (1, 2)
    assert rej.read_text() == (
        '{"user_id": "alice", "key": "api_calls", "amount": 0}\n{"user_id": "carol", "key": "api_calls", "amount": 1}'
    )


# -- formats ---------------------------------------------------------------------------------

def test_json_lines(b, tmp_path):
    f = write(tmp_path, "u.ndjson", "\n".join([
        json.dumps({"user_id": "alice", "key": "api_calls", "amount": 2, "timestamp": T1, "id": 17}),
        json.dumps({"key": "api_calls", "amount": "3", "timestamp": T1_UNIX, "user_id": "bob"}),
        "",
        json.dumps({"user_id": "alice", "key": "api_calls", "amount": 2.0, "timestamp": T1}),
        json.dumps({"user_id": "alice", "key": "api_calls", "amount": 2.5}),
        json.dumps({"user_id": "alice", "key": "api_calls"}),
        json.dumps({"user_id": 5, "key": "api_calls", "amount": 1}),
        json.dumps({"user_id": "alice", "key": "api_calls", "amount": 1, "timestamp": 1.5}),
        json.dumps({"user_id": "alice", "key": "api_calls", "amount": 1, "id": [1]}),
        json.dumps({"user_id": "alice", "key": ["api_calls"], "amount": 1}),
        json.dumps({"user_id": "alice", "key": "api_calls", "amount": True, "timestamp": T1}),
    ]) + "\n")
    r = b.usage.import_rows(f)
    assert (r.format, r.rows, r.imported, r.rejected) == ("jsonl", 10, 2, 8)
    assert [(e.line, e.column) for e in r.errors] == [
        (4, "amount"), (5, "amount"), (6, "amount"), (7, "user_id"), (8, "timestamp"), (9, "id"), (10, "key"), (11, "amount"),
    ]
    assert r.errors[0].reason == "amount must be a whole number written without a decimal point, not 2.0"
    assert r.errors[2].reason == "amount is missing"
    assert [e[2:5] for e in events(b)][0] == (2, T1_UNIX, "17")
    assert b.usage.import_rows(f).duplicates == 2


@pytest.mark.parametrize("text, message", [
    ('{"user_id": "alice", "key": "api_calls", "amount": 1}\n{"user_id": "alice", "amount": 1,}\n',
     "line 2, column 34: JSON syntax: Expecting property name enclosed in double quotes"),
    ('{"user_id": "alice", "key": "api_calls", "amount": 1}\n[1, 2]\n', "line 2, column 1: expected a JSON object with user_id, key, amount, found an array"),
    ('{"user_id": "alice", "key": "api_calls", "qty": 1}\n', "line 1: unknown key 'qty' (keys: user_id, key, amount, timestamp, id)"),
    ('{"user_id": "alice", "key": "api_calls", "amount": 1, "timestmp": 1}\n',
     "line 1: unknown key 'timestmp' (did you mean 'timestamp'?) (keys: user_id, key, amount, timestamp, id)"),
])
def test_malformed_json_lines_import_nothing(b, tmp_path, text, message):
    f = write(tmp_path, "u.jsonl", text)
    with pytest.raises(ImportFileError) as e:
        b.usage.import_rows(f)
    assert str(e.value) == f"{f}: {message}; nothing was imported"
    assert events(b) == []


@pytest.mark.parametrize("text, message", [
    ("", "line 1: no header"),
    (f"alice,api_calls,1,{T1}\n", "line 1: no header: the first line must name the columns"),
    (f"user_id,key,timestamp\nalice,api_calls,{T1}\n", "line 1: missing column amount (the header has user_id, key, timestamp)"),
    (f"user_id,key,amount,timestmp\nalice,api_calls,1,{T1}\n",
     "line 1, column 4: unknown column 'timestmp' (did you mean 'timestamp'?)"),
    ("user_id,key,amount,key\n", "line 1, column 4: column 'key' appears twice"),
    (f"user_id,key,amount,timestamp\nalice,api_calls,1,{T1}\nalice,api_calls,1,{T1},x\n",
     "line 3: 5 fields, but the header has 4 (user_id, key, amount, timestamp)"),
    ("user_id,key,amount\nalice,api_calls,1\nalice,api_calls\n", "line 3: 2 fields, but the header has 3"),
    ('user_id,key,amount\nalice,api_calls,1\nalice,"api"_calls,1\n', "line 3: CSV syntax: ',' expected after '\"'"),
    ('user_id,key,amount\nalice,api_calls,1\nalice,"api_calls,1\n', "line 3: CSV syntax: unexpected end of data"),
    (b"user_id,key,amount\nalice,api_calls,1\n\xc3\xa9b\xe9,api_calls,1\n", "line 3, column 3: not UTF-8 (byte 0xe9)"),
])
def test_malformed_csv_imports_nothing(b, tmp_path, text, message):
    f = write(tmp_path, "u.csv", text)
    rej = tmp_path / "rej.csv"
    with pytest.raises(ImportFileError) as e:
        b.usage.import_rows(f, reject_file=rej)
    assert str(e.value).startswith(f"{f}: {message}")
    assert str(e.value).endswith("; nothing was imported")
    assert events(b) == [] and not rej.exists()


def test_bom_and_crlf(b, tmp_path):
    f = write(tmp_path, "u.csv", f"\ufeffuser_id,key,amount,timestamp\r\nalice,api_calls,1,{T1}\r\n\r\nbob,api_calls,2,{T1}\r\n")
    r = b.usage.import_rows(f)
    assert (r.rows, r.imported, r.rejected) == (2, 2, 0)
    jf = write(tmp_path, "u.jsonl", f'\ufeff{{"user_id": "alice", "key": "api_calls", "amount": 3, "timestamp": "{T1}"}}\r\n')
    assert b.usage.import_rows(jf).imported == 1
    # CRLF and LF versions of one file are the same rows
    lf = write(tmp_path, "lf.csv", f"user_id,key,amount,timestamp\nalice,api_calls,1,{T1}\nbob,api_calls,2,{T1}\n")
    assert b.usage.import_rows(lf).duplicates == 2


def test_file_objects_and_unseekable_streams(b, tmp_path):
    data = f"user_id,key,amount,timestamp\nalice,api_calls,1,{T1}\n".encode()
    r = b.usage.import_rows(io.BytesIO(data), "csv")
    assert (r.source, r.imported) == ("<stdin>", 1)
    read, write_ = os.pipe()
    os.write(write_, data)
    os.close(write_)
    with open(read, "rb") as pipe:  # not seekable: spooled to a temporary file
        r = b.usage.import_rows(pipe, "csv")
    assert r.duplicates == 1
    with pytest.raises(ValidationError, match="cannot tell the format"):
        b.usage.import_rows(io.BytesIO(data))
    with pytest.raises(ValidationError, match="no such file"):
        b.usage.import_rows(tmp_path / "missing.csv")
    with pytest.raises(ValidationError, match="cannot tell the format from the extension"):
        b.usage.import_rows(write(tmp_path, "u.txt", data))


def test_no_id_and_no_timestamp_warns_once(b, tmp_path):
    f = write(tmp_path, "u.csv", "user_id,key,amount\nalice,api_calls,1\nalice,api_calls,1\n")
    warnings = []
    r = b.usage.import_rows(f, on_warning=warnings.append)
    assert r.imported == 2 and len(warnings) == 1 and "neither an id nor a timestamp" in warnings[0]
    f = write(tmp_path, "v.csv", f"user_id,key,amount,timestamp\nalice,api_calls,1,\nalice,api_calls,1,{T1}\nbob,api_calls,1,\n")
    warnings.clear()
    b.usage.import_rows(f, on_warning=warnings.append)
    assert len(warnings) == 1 and warnings[0].startswith("line 2 and maybe others have neither id nor timestamp")


def test_dry_run_writes_nothing(b, tmp_path):
    f = write(tmp_path, "u.csv", f"user_id,key,amount,timestamp,id\nalice,api_calls,1,{T1},a\ncarol,api_calls,1,{T1},b\n")
    b.usage.record("alice", "api_calls", 1, at=T1, idempotency_key="a")
    r = b.usage.import_rows(f, dry_run=True)
    assert (r.dry_run, r.imported, r.duplicates, r.rejected) == (True, 0, 1, 1)
    f2 = write(tmp_path, "v.csv", f"user_id,key,amount,timestamp\nalice,api_calls,1,{T1}\n")
    assert b.usage.import_rows(f2, dry_run=True).imported == 1
    assert events(b) == []


# -- every mix of valid and invalid rows imports exactly the valid ones, once ----------------

VALID = st.tuples(
    st.sampled_from(["alice", "bob"]), st.just("api_calls"), st.integers(1, 3),
    st.sampled_from([T1, str(T1_UNIX), "2026-02-28T23:00:00+01:00", "2026-02-20"]),
    st.one_of(st.just(""), st.text("abc", min_size=1, max_size=2)),
)
INVALID = st.sampled_from([
    ("carol", "api_calls", "1", T1, ""), ("alice", "api_calls", "0", T1, ""), ("alice", "nope", "1", T1, ""),
    ("alice", "api_calls", "x", T1, ""), ("alice", "api_calls", "1", "2025-01-01", ""),
    ("nosub", "api_calls", "1", T1, "z"),
])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(VALID.map(lambda r: (r, True)), INVALID.map(lambda r: (r, False))), max_size=30),
       batch=st.integers(1, 8))
def test_any_mix_imports_exactly_the_valid_rows_once(config_path, rows, batch):
    b = Billing.open(config_path, ":memory:", clock=lambda: NOW)
    setup_customers(b)
    data = "user_id,key,amount,timestamp,id\n" + "".join(",".join(map(str, r)) + "\n" for r, _ in rows)
    # an id names one event per customer: later rows reusing it with other content are rejected
    expected, first_by_key = Counter(), {}
    expected_rejects = 0
    from usagebill.timeparse import parse_time

    for (user, key, amount, ts, rid), ok in rows:
        content = (user, key, int(amount), parse_time(ts)) if ok else None
        if not ok:
            expected_rejects += 1
        elif rid:
            earlier = first_by_key.setdefault((user, rid), content)
            if earlier != content:
                expected_rejects += 1
            elif earlier is content:
                expected[content] += 1
        else:
            expected[content] += 1
    r = b.usage.import_rows(io.BytesIO(data.encode()), "csv", batch_rows=batch)
    got = Counter((u, k, a, t) for u, k, a, t, _ in events(b))
    assert got == expected
    assert (r.imported, r.rejected) == (sum(expected.values()), expected_rejects)
    assert r.imported + r.duplicates + r.rejected == r.rows == len(rows)
    again = b.usage.import_rows(io.BytesIO(data.encode()), "csv", batch_rows=batch + 1)
    assert (again.imported, again.duplicates, again.rejected) == (0, r.imported + r.duplicates, r.rejected)
    assert Counter((u, k, a, t) for u, k, a, t, _ in events(b)) == expected
    b.close()


# -- the command -----------------------------------------------------------------------------

@pytest.fixture
def cli_setup(config_path):
    with freeze_time("2026-03-01T00:00:00Z"):
        billing = Billing.open(config_path)
        setup_customers(billing)
        billing.close()


def test_cli_import_json_summary_and_exit_codes(runner, cli_setup, tmp_path):
    f = write(tmp_path, "u.csv", f"user_id,key,amount,timestamp\nalice,api_calls,1,{T1}\nalice,api_calls,0,{T1}\n")
    with freeze_time("2026-03-01T00:00:00Z"):
        r = runner("import", f, "--no-push", "--json", "--reject-file", tmp_path / "rej.csv")
    assert r.exit_code == 5, r.output
    data = json.loads(r.stdout)
    assert {k: data[k] for k in ("rows", "imported", "duplicates", "rejected", "format", "dry_run")} == {
        "rows": 2, "imported": 1, "duplicates": 0, "rejected": 1, "format": "csv", "dry_run": False}
    assert data["errors"] == [{"line": 3, "column": "amount", "reason": "amount must be positive, not 0"}]
    assert f"{f}: line 3, column amount: amount must be positive, not 0" in r.stderr
    assert "1 rows: imported 1" not in r.stderr and "2 rows: imported 1, skipped 0 already imported, rejected 1" in r.stderr
    assert "Traceback" not in r.output
    with freeze_time("2026-03-01T00:00:00Z"):
        r = runner("import", tmp_path / "rej.csv", "--no-push")  # still bad: 5 again
        assert r.exit_code == 5
        ok = write(tmp_path, "ok.csv", f"user_id,key,amount,timestamp\nbob,api_calls,1,{T1}\n")
        r = runner("import", ok)
        assert r.exit_code == 0, r.output
        assert "1 event(s) stay pending: customer bob is not in Stripe" in r.stderr
        assert r.stdout == "rows\timported\tduplicates\trejected\tdry_run\tdelivered\tpending\n1\t1\t0\t0\tfalse\t0\t2\n"
        r = runner("import", ok, "--no-push")
        assert r.exit_code == 0 and r.stdout.endswith("\n1\t0\t1\t0\tfalse\t\t\n") and "pending" not in r.stderr


def test_cli_stdin_and_errors(runner, cli_setup, tmp_path):
    data = f"user_id,key,amount,timestamp\nalice,api_calls,2,{T1}\n"
    with freeze_time("2026-03-01T00:00:00Z"):
        r = runner("import", "-", "--format", "csv", "--no-push", "--json", input=data)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["imported"] == 1 and json.loads(r.stdout)["source"] == "<stdin>"
        r = runner("import", "-", "--format", "csv", "--no-push", input=data)
        assert r.exit_code == 0 and r.stdout.endswith("\n1\t0\t1\t0\tfalse\t\t\n")
        r = runner("import", "-", "--no-push", input=data.replace(",2,", ",3,"))  # stdin is CSV by default
        assert r.exit_code == 0 and r.stdout.endswith("\n1\t1\t0\t0\tfalse\t\t\n"), r.output
        r = runner("import", "-", "--format", "jsonl", input=data)
        assert r.exit_code == 1, r.output
        assert r.stderr.strip().splitlines() == [
            "Error: <stdin>: line 1, column 1: JSON syntax: Expecting value; nothing was imported"]
        r = runner("import", tmp_path / "nope.csv")
        assert r.exit_code == 1 and r.stderr.strip() == f"Error: {tmp_path / 'nope.csv'}: no such file"
        r = runner("import", write(tmp_path, "x.csv", "a,b\n"), "--dry-run")
        assert r.exit_code == 1 and "unknown column" not in r.stderr and "no header" in r.stderr


def test_cli_dry_run(runner, cli_setup, tmp_path, config_path):
    f = write(tmp_path, "u.csv", f"user_id,key,amount,timestamp\nalice,api_calls,1,{T1}\n")
    with freeze_time("2026-03-01T00:00:00Z"):
        r = runner("import", f, "--dry-run")
        assert r.exit_code == 0 and r.stdout.endswith("\n1\t1\t0\t0\ttrue\t\t\n")
        r = runner("import", f, "--no-push", "--plain")
        assert r.stdout.endswith("\n1\t1\t0\t0\tfalse\t\t\n")


# -- killed at any moment, run again: every row exactly once ----------------------------------

@pytest.mark.sqlite_only(reason="the killed imports are subprocesses opening the ledger by path")
def test_killed_imports_then_a_rerun_import_every_row_exactly_once(config_path, tmp_path):
    now = int(time.time())
    db = tmp_path / "ledger.db"
    b = Billing.open(config_path, db)
    users = [f"u{i}" for i in range(50)]
    for u in users:
        b.customers.add(u)
        b.subscriptions.start(u, "Pro", anchor=now - 10 * 86400)
    b.close()
    rnd = random.Random(7)
    n = 60_000
    lines = ["user_id,key,amount,timestamp,id"]
    for i in range(n):  # half with ids, half keyed by content, with some identical rows
        ts = now - rnd.randrange(9 * 86400)
        lines.append(f"{rnd.choice(users)},api_calls,{rnd.randrange(1, 4)},{ts},{f'e{i}' if i % 2 else ''}")
    lines += lines[-50:-40]  # identical rows (and repeated ids)
    f = write(tmp_path, "big.csv", "\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # killed runs: the library with small transactions, so that kills land between commits too
    killer = [sys.executable, "-c", (
        "import sys; from usagebill import Billing; "
        "b = Billing.open(sys.argv[1], sys.argv[2]); b.usage.import_rows(sys.argv[3], batch_rows=500, commit_rows=2000)"
    ), str(config_path), str(db), str(f)]
    counts = []
    for delay in (0.6, 0.9, 1.2, 1.5):
        p = subprocess.Popen(killer, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(delay + rnd.random() * 0.2)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
        with Billing.open(config_path, db) as b:
            counts.append(b.ledger.one("SELECT COUNT(*) FROM usage_events")[0])
    assert any(0 < c < n for c in counts), f"no kill landed in the middle of the import: {counts}"
    # then the real command, to completion
    cmd = [sys.executable, "-m", "usagebill", "--config", str(config_path), "--db", str(db), "import", str(f), "--no-push"]
    r = subprocess.run(cmd + ["--json"], capture_output=True, env=env, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    b = Billing.open(config_path, db)
    rows = b.ledger.all("SELECT user_id, amount, timestamp, idempotency_key FROM usage_events")
    b.close()
    expected = Counter()
    seen_ids = set()
    for line in lines[1:]:
        u, _, a, ts, rid = line.split(",")
        if rid and (u, rid) in seen_ids:
            continue  # a repeated id is the same event
        seen_ids.add((u, rid)) if rid else None
        expected[(u, int(a), int(ts))] += 1
    assert Counter((u, a, t) for u, a, t, _ in rows) == expected
    assert len({(r[0], r[3]) for r in rows}) == len(rows) == sum(expected.values())
    assert summary["rejected"] == 0 and summary["imported"] + summary["duplicates"] == len(lines) - 1


def test_cli_import_delivers_to_stripe(runner, tmp_path):
    """Customers made through the CLI are in the sandbox: import delivers what it wrote."""
    assert runner("sync").exit_code == 0
    clock = json.loads(runner("testclock", "create", "--at", "2026-03-01T00:00:00Z", "--json").stdout)["id"]
    for user in ("ann", "ben"):
        assert runner("customers", "add", user, "--test-clock", clock).exit_code == 0
        assert runner("subscribe", user, "Pro").exit_code == 0
    f = write(tmp_path, "u.csv", "user_id,key,amount,timestamp,id\n"
              "ann,api_calls,5,2026-03-01T00:00:00Z,a1\nben,api_calls,7,2026-03-01T00:00:00Z,b1\n")
    r = runner("import", f, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["imported"] == 2 and data["push"]["delivered"] == 2 and data["push"]["still_pending"] == 0
    rec = runner("reconcile", "--json")
    assert rec.exit_code == 0, rec.output
    assert {(x["user_id"], x["ledger"], x["stripe"]) for x in json.loads(rec.stdout)} == {("ann", 5, 5), ("ben", 7, 7)}
    r = runner("import", f, "--json")  # again: nothing new, nothing sent
    assert r.exit_code == 0 and json.loads(r.stdout)["push"] is None
