"""Streaming import of usage rows from CSV and JSON Lines, for cron jobs.

    result = billing.usage.import_rows("usage.csv", reject_file="rejects.csv")

Columns (a CSV header naming them in any order, or the keys of each JSON object): ``user_id``,
``key``, ``amount``, optional ``timestamp`` (ISO 8601 or Unix seconds; empty = now) and
optional ``id``.

How it works, and why:

* Two passes over the file. The first checks its structure only (UTF-8, header, columns,
  field counts, JSON syntax) so that a malformed file fails before anything is imported; the
  second validates each row with the rules of ``record`` and imports the valid ones. Standard
  input and other unseekable sources are spooled to a temporary file first.
* Idempotent. A row's idempotency key (per customer) is its ``id``; without one it is derived
  from the row's content (customer, feature, amount, timestamp) and its occurrence number
  among identical rows of the file: ``import:<hash>:<n>``. Rows go to the ledger with
  ``INSERT OR IGNORE`` on the unique (user_id, idempotency_key) index, so a row whose key is
  there already is skipped as a duplicate; an ``id`` already used for other content is a
  rejected row.
* Bounded memory. Rows go to the ledger in transactions of ``batch_rows`` rows; customers,
  features and timestamps are cached per run with a bound; the occurrence counts of identical
  rows live in a temporary on-disk SQLite table (one small, indexed write per row, the price of
  flat memory whatever the file's size), and rejected rows are streamed to the reject file.
* Crash safety. Each batch commits atomically; killed at any moment and run again, the import
  skips what was committed (the keys are the same each run) and imports the rest.

The core of the hot path avoids per-row SQL: per-customer lookups are cached, inserts use
``executemany``, and duplicates are counted from ``total_changes``. Only rows skipped because
their ``id`` was there already are looked up again (set-based, per batch) to compare content.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import operator
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from itertools import chain, count, repeat
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Callable, Iterator

from .context import Subscription
from .errors import UsagebillError, ValidationError
from .ledger import events
from .ledger import idempotency as keys
from .ledger.db import page_cache
from .ledger.occurrences import Occurrences
from .rules import MAX_AMOUNT, check_amount, check_event_time, check_key, default_event_time, event_time_bounds, key_reused, same_event
from .timeparse import parse_time

COLUMNS = ("user_id", "key", "amount", "timestamp", "id")
REQUIRED = ("user_id", "key", "amount")
FORMATS = ("csv", "jsonl")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DERIVED_PREFIX = "import:"
BATCH_ROWS = 20_000  # rows validated and written together (what the import holds in memory)
# rows per ledger transaction (a few seconds of the write lock): each transaction rewrites the
# index pages it touches, and rows of random customers touch most of them, so small ones are
# slow: at 1,000,000 rows, 10,000-row transactions spent 28 s in SQLite, 200,000-row ones 9 s
COMMIT_ROWS = 200_000
MAX_ERRORS_KEPT = 100
_CACHE_LIMIT = 50_000  # entries per run cache (customers, timestamps) before it is cleared
_LEDGER_CACHE_KIB = 64 * 1024  # SQLite page cache of the ledger connection during an import
_BOM = "\ufeff"

T, I = 3, 4  # positions of the columns in a parsed row


class ImportFileError(ValidationError):
    """The file is malformed (encoding, header, columns, CSV or JSON syntax): nothing was imported."""


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}" + (f", column {self.column}" if self.column else "") + f": {self.reason}"


@dataclass
class ImportResult:
    source: str
    format: str
    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0  # new events written to the ledger (pending delivery to Stripe)
    duplicates: int = 0  # rows whose key was in the ledger already (an earlier run, or repeated ids)
    rejected: int = 0
    dry_run: bool = False
    reject_file: str | None = None
    errors: list[RowError] = field(default_factory=list)  # the first MAX_ERRORS_KEPT rejected rows
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    delivery: object | None = None  # usagebill.delivery.Delivery of the push after the import

    @property
    def ok(self) -> bool:
        return self.rejected == 0


@dataclass
class _Layout:
    format: str
    columns: tuple[int | None, ...] = ()  # CSV: the field index of user_id, key, amount, timestamp, id
    width: int = 0  # CSV: fields per row
    header: bytes = b""  # CSV: the header line as it is in the file
    data_offset: int = 0
    first_line: int = 1  # line number of the first line after the header
    simple: bool = False  # CSV: no quotes, no blank lines: every line is one record, split on commas


# -- the file --------------------------------------------------------------------------------

def _open(source, format: str | None) -> tuple[IO[bytes], str, str, bool]:
    """(a seekable binary file, its name for messages, the format, whether to close it)."""
    if format is not None and format not in FORMATS:
        raise ValidationError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        fmt = format or EXTENSIONS.get(Path(name).suffix.lower())
        if fmt is None:
            raise ValidationError(f"{name}: cannot tell the format from the extension: give the format (csv or jsonl)")
        try:
            f = open(name, "rb")
        except FileNotFoundError:
            raise ValidationError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise ValidationError(f"{name}: is a directory, not a file") from None
        except OSError as e:
            raise ValidationError(f"{name}: cannot read: {e.strerror}") from None
        close = True
    else:
        f, close = source, False
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) and not name.startswith("<") else "<stdin>"
        fmt = format or EXTENSIONS.get(Path(name).suffix.lower())
        if fmt is None:
            raise ValidationError(f"{name}: cannot tell the format: give it (csv or jsonl)")
    try:
        seekable = f.seekable()
    except (AttributeError, ValueError, OSError):
        seekable = False
    if not seekable:
        spool = tempfile.TemporaryFile(prefix="usagebill-import-")
        shutil.copyfileobj(f, spool, 1 << 20)
        if close:
            f.close()
        spool.seek(0)
        f, close = spool, True
    return f, name, fmt, close


def _fail(name: str, line: int, column: int | None, message: str) -> ImportFileError:
    where = f"line {line}" + (f", column {column}" if column else "")
    return ImportFileError(f"{name}: {where}: {message}; nothing was imported")


def _decode_error(name: str, line: int, e: UnicodeDecodeError) -> ImportFileError:
    raw = e.object if isinstance(e.object, bytes) else b""
    column = len(raw[: e.start].decode("utf-8", "replace")) + 1
    bad = raw[e.start : e.start + 1].hex() if raw else "?"
    return _fail(name, line, column, f"not UTF-8 (byte 0x{bad}); save the file as UTF-8")


def _did_you_mean(word: str) -> str:
    import difflib

    close = difflib.get_close_matches(word.lower(), COLUMNS, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _scan_csv(f: IO[bytes], name: str, start: int) -> _Layout:
    """Check the whole file's structure, streaming; return where the columns are."""
    f.seek(start)
    header_raw = f.readline()
    if not header_raw.strip(b"\r\n\t \xef\xbb\xbf"):
        raise ImportFileError(
            f"{name}: line 1: no header: the first line must name the columns "
            f"({', '.join(REQUIRED)}[, timestamp][, id]); nothing was imported"
        )
    try:
        text = header_raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _decode_error(name, 1, e) from None
    if text.startswith(_BOM):
        text = text[1:]
    try:
        header = next(csv.reader([text], strict=True))
    except csv.Error as e:
        raise _fail(name, 1, None, f"bad header: {e}") from None
    names = [h.strip() for h in header]
    if not any(n in COLUMNS for n in names):
        raise _fail(
            name, 1, None,
            f"no header: the first line must name the columns ({', '.join(REQUIRED)}[, timestamp][, id]), "
            f"found {text.strip()[:80]!r}",
        )
    for i, n in enumerate(names):
        if n not in COLUMNS:
            raise _fail(name, 1, i + 1, f"unknown column {n!r}{_did_you_mean(n)} (columns: {', '.join(COLUMNS)})")
        if names.index(n) != i:
            raise _fail(name, 1, i + 1, f"column {n!r} appears twice")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise _fail(name, 1, None, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"(the header has {', '.join(names)})")
    layout = _Layout("csv", tuple(names.index(c) if c in names else None for c in COLUMNS), len(names),
                     header_raw, f.tell(), 2)
    if _scan_simple_csv(f, name, layout, names):
        return layout
    f.seek(layout.data_offset)
    width = layout.width
    reader = csv.reader(map(bytes.decode, f), strict=True)
    try:
        for row in reader:
            if len(row) != width and row:
                n = len(row)
                raise _fail(name, layout.first_line - 1 + reader.line_num, None,
                            f"{n} field{'s' if n != 1 else ''}, but the header has {width} ({', '.join(names)})")
    except UnicodeDecodeError as e:
        raise _decode_error(name, layout.first_line + reader.line_num, e) from None
    except csv.Error as e:
        raise _fail(name, layout.first_line - 1 + reader.line_num, None, f"CSV syntax: {e}") from None
    return layout


def _scan_simple_csv(f: IO[bytes], name: str, layout: _Layout, names: list[str]) -> bool:
    """The fast check of a CSV file without quotes, which the csv module would split on commas
    alone: the comma count of each line. False when the file needs the csv module (quotes, a
    carriage return inside a line, broken UTF-8: its error messages say where)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    has_cr = False
    try:
        while chunk := f.read(1 << 20):
            if b'"' in chunk:
                return False
            has_cr = has_cr or b"\r" in chunk
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    f.seek(layout.data_offset)
    commas, width = layout.width - 1, layout.width
    blank = False
    for line, raw in enumerate(f, layout.first_line):
        if has_cr:
            cr = raw.find(b"\r")
            if cr != -1 and cr != len(raw) - (2 if raw.endswith(b"\n") else 1):
                return False
        if raw.count(b",") != commas:
            if not raw.strip(b"\r\n"):
                blank = True
                continue
            n = raw.count(b",") + 1
            raise _fail(name, line, None,
                        f"{n} field{'s' if n != 1 else ''}, but the header has {width} ({', '.join(names)})")
    layout.simple = not blank
    return True


def _scan_jsonl(f: IO[bytes], name: str, start: int) -> _Layout:
    f.seek(start)
    loads, allowed = json.loads, set(COLUMNS)
    for line, raw in enumerate(f, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _decode_error(name, line, e) from None
        if line == 1 and text.startswith(_BOM):
            text = text[1:]
        if not text.strip():
            continue
        try:
            obj = loads(text)
        except json.JSONDecodeError as e:
            raise _fail(name, line, e.colno, f"JSON syntax: {e.msg}") from None
        except RecursionError:
            raise _fail(name, line, None, "JSON nested too deeply") from None
        if type(obj) is not dict:
            raise _fail(name, line, 1, f"expected a JSON object with {', '.join(REQUIRED)}, found {_json_kind(obj)}")
        if not allowed.issuperset(obj):
            bad = next(k for k in obj if k not in allowed)
            raise _fail(name, line, None, f"unknown key {bad!r}{_did_you_mean(bad)} (keys: {', '.join(COLUMNS)})")
    return _Layout("jsonl", data_offset=start, first_line=1)


_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


def _json_kind(value) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _simple_csv_records(f: IO[bytes], layout: _Layout) -> Iterator[tuple[int, bytes, tuple]]:
    """What _csv_records yields, for a file where each line is a record split on commas, by a
    pipeline of C functions (a block of lines at a time), which is most of the import's speed."""
    f.seek(layout.data_offset)
    iu, ik, ia, it, ii = layout.columns
    pad = ""
    if it is None or ii is None:  # absent columns read as an extra, empty field
        it = layout.width if it is None else it
        ii = layout.width if ii is None else ii
        pad = ","
    pick = operator.itemgetter(iu, ik, ia, it, ii)

    def blocks():
        line = layout.first_line
        while lines := f.readlines(1 << 20):
            texts = map(str.rstrip, map(bytes.decode, lines), repeat("\r\n"))
            if pad:
                texts = map(str.__add__, texts, repeat(pad))
            yield zip(count(line), lines, map(pick, map(str.split, texts, repeat(","))))
            line += len(lines)

    return chain.from_iterable(blocks())


def _csv_records(f: IO[bytes], layout: _Layout) -> Iterator[tuple[int, bytes, tuple]]:
    """(line number, the record's bytes as in the file, its fields) for each non-blank record.
    Lines without quotes (nearly all) are split directly, which is what the csv module would
    do with them; quoted ones go through the csv module, possibly over several lines."""
    f.seek(layout.data_offset)
    line = layout.first_line - 1
    iu, ik, ia, it, ii = layout.columns
    if it is None or ii is None:  # absent columns read as an extra, empty field
        it = layout.width if it is None else it
        ii = layout.width if ii is None else ii
        pad = [""]
    else:
        pad = []
    for raw in f:
        line += 1
        text = raw.decode()
        if '"' not in text:
            text = text.rstrip("\r\n")
            if text:
                r = text.split(",")
                if pad:
                    r += pad
                yield line, raw, (r[iu], r[ik], r[ia], r[it], r[ii])
            continue
        start, parts = line, [raw]

        def lines(first=text):
            nonlocal line
            yield first
            for more in f:
                line += 1
                parts.append(more)
                yield more.decode()

        r = next(csv.reader(lines(), strict=True), [])
        if r:
            r += pad
            yield start, b"".join(parts), (r[iu], r[ik], r[ia], r[it], r[ii])


def _jsonl_records(f: IO[bytes], layout: _Layout) -> Iterator[tuple[int, bytes, list]]:
    f.seek(layout.data_offset)
    loads = json.loads
    for line, raw in enumerate(f, 1):
        text = raw.decode()
        if line == 1 and text.startswith(_BOM):
            text = text[1:]
        if not text.strip():
            continue
        obj = loads(text)
        get = obj.get
        yield line, raw, (get("user_id"), get("key"), get("amount"), get("timestamp"), get("id"))


# -- the run ---------------------------------------------------------------------------------

class _Customer:
    """What validation needs to know about a customer, looked up once per run."""

    __slots__ = ("error", "sub", "now", "lo", "hi", "stamp", "features")

    def __init__(self, error: tuple[str, str] | None = None, sub: Subscription | None = None, now: int = 0):
        self.error = error  # (column, reason) when every row of this customer is rejected
        self.sub = sub
        self.now = now
        if sub is not None:
            self.lo, self.hi = event_time_bounds(now, sub)
            self.stamp = default_event_time(now, sub)  # the time of rows without one
        self.features: dict[str, str | None] = {}  # feature -> None when it can be recorded, else why not


class _DryRun(Exception):
    """Raised inside a batch's transaction to roll it back."""


class _Rejects:
    """The reject file, written as rows are rejected (to ``PATH.partial``, renamed at the end)."""

    def __init__(self, path: str | None, layout: _Layout):
        self.path = path
        self.f = None
        if path is not None:
            self.partial = path + ".partial"
            try:
                self.f = open(self.partial, "wb")
            except OSError as e:
                raise ValidationError(f"{path}: cannot write the reject file: {e.strerror}") from None
            if layout.format == "csv":
                self.f.write(layout.header)
                self._ends_line = layout.header.endswith(b"\n")
            else:
                self._ends_line = True

    def write(self, raw: bytes) -> None:
        if self.f is not None:
            if not self._ends_line:  # the previous record was the file's last line, without a newline
                self.f.write(b"\n")
            self.f.write(raw)
            self._ends_line = raw.endswith(b"\n")

    def finish(self) -> None:
        if self.f is not None:
            self.f.close()
            os.replace(self.partial, self.path)

    def abandon(self) -> None:
        if self.f is not None:
            self.f.close()


class _Importer:
    def __init__(self, usage, f, layout: _Layout, *, dry_run: bool, batch_rows: int, commit_rows: int,
                 rejects: _Rejects, result: ImportResult, on_reject, on_warning, on_progress):
        self.usage = usage
        self.ctx = usage.ctx
        self.ledger = usage.ctx.ledger
        self.f = f
        self.layout = layout
        self.dry_run = dry_run
        self.batch_rows = batch_rows
        self.commit_rows = commit_rows
        self.rejects = rejects
        self.result = result
        self.on_reject = on_reject
        self.on_warning = on_warning
        self.on_progress = on_progress
        self.run_now = self.ctx.clock()  # "now" of customers without a test clock, for the whole run
        self.id_prefix = "ube_" + uuid.uuid4().hex[:20]  # + 12 hex digits of the line: unique, ordered
        self.customers: dict[str, _Customer] = {}
        self.times: dict[str, int] = {}
        self.occurrences: Occurrences | None = None
        self.warned_no_key = False
        self.tx = None  # the open ledger transaction (spanning batches, up to commit_rows rows)
        self.tx_rows = 0
        self.check_first = False  # look ids up before inserting (when the last batch was mostly known ids)
        self.has_op_keys: bool | None = None
        # the current batch: rows as INSERT parameters (id, user_id, feature, amount, ts, recorded_at, key)
        self.explicit: list[tuple] = []  # with an id column value (the key)
        self.derived: list[tuple] = []  # key to derive: the last item is the content's digest until then
        self.untimed: set[str] = set()  # event ids of explicit rows without a timestamp
        self.raws: dict[int, bytes] = {}  # line -> the record as it is in the file
        self.errors: list[RowError] = []

    # -- validation ----------------------------------------------------------------------

    def customer(self, user_id) -> _Customer:
        if len(self.customers) >= _CACHE_LIMIT:
            self.customers.clear()
        if not isinstance(user_id, str):
            c = _Customer(("user_id", f"user_id must be a string, not {_json_kind(user_id)}"))
        else:
            try:
                sub = self.ctx.require_subscription(user_id)
                has_clock = self.ctx.customer(user_id)["test_clock"]
                c = _Customer(sub=sub, now=self.ctx.now_for(user_id) if has_clock else self.run_now)
            except UsagebillError as e:
                c = _Customer(("user_id", str(e)))
            self.customers[user_id] = c
        return c

    def feature_error(self, c: _Customer, key) -> str | None:
        if not isinstance(key, str):
            return f"key must be a string, not {_json_kind(key)}"
        try:
            self.usage.usage_feature(c.sub, key)
            why = None
        except UsagebillError as e:
            why = str(e)
        if len(c.features) < 1000:
            c.features[key] = why
        return why

    def reject(self, line: int, raw: bytes, column: str | None, reason: str) -> None:
        self.errors.append(RowError(line, column, reason))
        self.raws[line] = raw

    def run(self) -> None:
        if self.layout.format == "jsonl":
            records = _jsonl_records(self.f, self.layout)
        elif self.layout.simple:
            records = _simple_csv_records(self.f, self.layout)
        else:
            records = _csv_records(self.f, self.layout)
        try:
            try:
                self._run(records)
            except BaseException as e:
                if self.tx is not None:
                    self.end_transaction(e)
                raise
        except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
            # the first pass read the same bytes without error: the file changed under us
            raise ImportFileError(
                f"{self.result.source}: changed while it was being imported ({e}); run the import again "
                "(what was imported is skipped)"
            ) from None

    def _run(self, records) -> None:
        """The hot path: one pass over the rows, validating each with cached lookups only."""
        customers, times, raws = self.customers, self.times, self.raws
        explicit, derived, errors = self.explicit, self.derived, self.errors
        reject, untimed = self.reject, self.untimed
        digest = _digest
        fromiso, epoch, second = datetime.fromisoformat, _EPOCH, _SECOND
        max_amount, cache_limit = MAX_AMOUNT, _CACHE_LIMIT
        prefix = self.id_prefix
        batch_rows = self.batch_rows
        recorded_at = self.ctx.clock()
        n = 0
        for line, raw, (user_id, key, amount, ts, row_id) in records:
            n += 1
            c = customers.get(user_id) if type(user_id) is str else None
            if c is None:
                if user_id is None or user_id == "":
                    reject(line, raw, "user_id", "user_id is missing")
                    continue
                c = self.customer(user_id)
            if c.error is not None:
                reject(line, raw, *c.error)
                continue
            why = c.features.get(key, False) if type(key) is str else False
            if why is not None:
                if why is False:
                    why = "key is missing" if key is None or key == "" else self.feature_error(c, key)
                if why is not None:
                    reject(line, raw, "key", why)
                    continue
            if type(amount) is str and amount.isdecimal() and amount.isascii() and 0 < (a := int(amount)) <= max_amount:
                amount = a
            elif amount is None or amount == "":
                reject(line, raw, "amount", "amount is missing")
                continue
            else:
                try:
                    amount = check_amount(amount)
                except UsagebillError as e:
                    reject(line, raw, "amount", str(e))
                    continue
            if ts is None or ts == "":
                ts = None
            else:
                t = times.get(ts) if type(ts) is str else None
                if t is None:
                    try:
                        if type(ts) is str and ts.isdecimal() and ts.isascii() and len(ts) <= 12:
                            t = int(ts)
                        elif type(ts) is str and len(ts) == 20 and ts[10] == "T" and ts[19] in "Zz":
                            try:  # 2026-01-15T10:00:00Z, the usual export format, fast
                                t = (fromiso(ts[:19]) - epoch) // second
                            except ValueError:
                                t = parse_time(ts, what="timestamp")
                        else:
                            t = parse_time(ts, what="timestamp")
                    except UsagebillError as e:
                        reject(line, raw, "timestamp", str(e))
                        continue
                    if type(ts) is str:
                        if len(times) >= cache_limit:
                            times.clear()
                        times[ts] = t
                if not c.lo <= t <= c.hi:
                    try:
                        check_event_time(t, c.now, c.sub, key)
                    except UsagebillError as e:
                        reject(line, raw, "timestamp", str(e))
                        continue
            if row_id is None or row_id == "":
                if ts is None:
                    t = c.stamp
                    if not self.warned_no_key:
                        self.warn_no_key(line)
                derived.append((f"{prefix}{line:012x}", user_id, key, amount, t, recorded_at,
                                digest(f"{user_id}\x1f{key}\x1f{amount}\x1f{t}".encode(), digest_size=16).digest()))
            else:
                if type(row_id) is not str or len(row_id) > 255 or row_id.isspace():
                    if type(row_id) is int:
                        row_id = str(row_id)
                    else:
                        try:
                            if type(row_id) is not str:
                                raise ValidationError(f"id must be a string, not {_json_kind(row_id)}")
                            check_key(row_id)
                        except UsagebillError as e:
                            reject(line, raw, "id", str(e))
                            continue
                event_id = f"{prefix}{line:012x}"
                if ts is None:
                    t = c.stamp
                    untimed.add(event_id)
                explicit.append((event_id, user_id, key, amount, t, recorded_at, row_id))
            raws[line] = raw
            if len(explicit) + len(derived) + len(errors) >= batch_rows:
                self.flush(n)
                n = 0
                recorded_at = self.ctx.clock()
        self.flush(n, final=True)

    def warn_no_key(self, line: int) -> None:
        self.warned_no_key = True
        message = (
            f"line {line} and maybe others have neither id nor timestamp: they are stamped with the time of "
            "this run, so running the import again would import them again (give rows an id or a timestamp)"
        )
        self.result.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)

    # -- writing -------------------------------------------------------------------------

    def end_transaction(self, exc: BaseException | None = None) -> None:
        """Commit the open transaction; roll it back on an error or in a dry run."""
        tx, self.tx = self.tx, None
        self.has_op_keys = None  # looked up again in the next transaction
        if exc is None and not self.dry_run:
            tx.__exit__(None, None, None)
        else:
            exc = exc or _DryRun()
            tx.__exit__(type(exc), exc, None)

    def flush(self, n_records: int, final: bool = False) -> None:
        result = self.result
        result.rows += n_records
        if self.explicit or self.derived:
            if self.derived:
                self.derive_keys()
            if self.tx is None:
                self.tx = self.ledger.transaction()
                self.tx.__enter__()
                self.tx_rows = 0
            self.tx_rows += len(self.explicit) + len(self.derived)
            self.write()
        errors = sorted(self.errors, key=_line_of)
        for e in errors:
            self.rejects.write(self.raws[e.line])
            if len(result.errors) < MAX_ERRORS_KEPT:
                result.errors.append(e)
            if self.on_reject is not None:
                self.on_reject(e)
        result.rejected += len(errors)
        self.explicit.clear()
        self.derived.clear()
        self.untimed.clear()
        self.errors.clear()
        self.raws.clear()
        if self.tx is not None and (final or self.tx_rows >= self.commit_rows):
            self.end_transaction()
        if self.on_progress is not None:
            self.on_progress(self.f.tell(), result.rows)

    def derive_keys(self) -> None:
        """``import:<content hash>:<occurrence of that content so far in the file>``."""
        if self.occurrences is None:
            self.occurrences = Occurrences()
        rows = self.derived
        counts = self.occurrences.take([int.from_bytes(r[6][:8], "little", signed=True) for r in rows])
        rows[:] = [(*r[:6], f"{DERIVED_PREFIX}{r[6].hex()}:{k}") for r, k in zip(rows, counts)]

    def write(self) -> None:
        explicit, derived = self.explicit, self.derived
        duplicates = 0
        if explicit:
            if self.has_op_keys is None:  # read inside the transaction: other writers wait
                self.has_op_keys = keys.any_key(self.ledger)
            if self.has_op_keys:
                # an id used by another kind of write (a charge, a grant...) cannot name a usage event
                taken = events.keys_of_other_operations(self.ledger, explicit)
                for r in explicit:
                    if r[0] in taken:
                        self.reject(_line(r[0]), self.raws[_line(r[0])], "id",
                                    f"idempotency key {r[6]!r} was already used by {r[1]!r} for another operation")
                explicit = [r for r in explicit if r[0] not in taken]
        n_explicit, known_explicit = len(explicit), 0
        if self.check_first and explicit:
            # most ids were known in the last batch: look them up first (one look-up each),
            # then insert the rest
            known, same = self._known(explicit)
            duplicates += same
            known_explicit += len(known)
            explicit = [r for r in explicit if r[0] not in known]
        rows = explicit + derived if derived else explicit
        rows.sort(key=_user_of)  # the ledger's indexes start with user_id: fewer pages touched
        inserted = events.insert_imported(self.ledger, rows)
        skipped = len(rows) - inserted
        if skipped and explicit:
            # which rows with ids were skipped? (their ids are ordered by line) and do they match?
            low, high = min(r[0] for r in explicit), max(r[0] for r in explicit)
            new = events.ids_between(self.ledger, low, high)
            again = [r for r in explicit if r[0] not in new]
            if again:
                known, same = self._known(again)
                skipped -= len(known) - same  # the rejected ones are not duplicates
                known_explicit += len(again)
        if n_explicit:
            self.check_first = known_explicit * 2 > n_explicit
        self.result.imported += inserted
        self.result.duplicates += duplicates + skipped

    def _known(self, rows: list[tuple]) -> tuple[set[str], int]:
        """The event ids of ``rows`` whose key is in the ledger already, and how many of them
        are the same event (duplicates); the others are rejected here (the key names another).
        SQLite returns only the rows that are new or differ, so a re-import moves little data."""
        new, differ = set(), []
        for event_id, feature, amount, ts in events.new_or_differing(self.ledger, rows):
            if feature is None:
                new.add(event_id)
            else:
                differ.append((event_id, feature, amount, ts))
        rejected = 0
        if differ:
            by_id = {r[0]: r for r in rows}
            for event_id, feature, amount, ts in differ:
                r = by_id[event_id]
                if not same_event(feature, amount, ts, r[2], r[3], None if event_id in self.untimed else r[4]):
                    rejected += 1
                    line = _line(event_id)
                    self.reject(line, self.raws[line], "id", str(key_reused(r[6], r[1], amount, feature, ts)))
        known = {r[0] for r in rows if r[0] not in new} if new else {r[0] for r in rows}
        return known, len(known) - rejected

    def close(self) -> None:
        if self.occurrences is not None:
            self.occurrences.close()


def _line(event_id: str) -> int:
    return int(event_id[-12:], 16)


def _line_of(e: RowError) -> int:
    return e.line


def _user_of(row: tuple) -> str:
    return row[1]


_digest = hashlib.blake2b


def import_rows(
    usage,
    source,
    format: str | None = None,
    *,
    dry_run: bool = False,
    reject_file: str | os.PathLike | None = None,
    batch_rows: int = BATCH_ROWS,
    commit_rows: int = COMMIT_ROWS,
    on_reject: Callable[[RowError], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> ImportResult:
    """Import usage rows from ``source`` (a path, or a binary file object such as
    ``sys.stdin.buffer``) in CSV or JSON Lines (``format``, else from the extension).

    A malformed file raises ImportFileError before anything is imported. Otherwise each row is
    validated with the rules of ``record``: valid rows are imported (in transactions of
    ``batch_rows`` rows), rows already imported are skipped, bad rows are reported through
    ``on_reject`` and written unchanged to ``reject_file``. ``dry_run`` validates and counts,
    writing nothing (each batch is rolled back). ``on_progress(bytes_done, bytes_total, rows)``
    is called at each batch of the checking and importing passes (bytes count twice: once per
    pass). Returns the counts; ``result.ok`` is False when rows were rejected."""
    if batch_rows < 1 or commit_rows < 1:
        raise ValidationError(f"batch_rows and commit_rows must be positive, not {batch_rows}, {commit_rows}")
    started = time.monotonic()
    f, name, fmt, close = _open(source, format)
    reject_path = None if reject_file is None else os.fspath(reject_file)
    if reject_path is not None and isinstance(source, (str, os.PathLike)):
        try:
            if os.path.exists(reject_path) and os.path.samefile(reject_path, name):
                raise ValidationError(f"{reject_path}: the reject file cannot be the file being imported")
        except OSError:
            pass
    try:
        start = f.tell()
        size = _size(f, start)
        total = 2 * size
        if on_progress is not None:
            on_progress(0, total, 0)
        layout = _scan_csv(f, name, start) if fmt == "csv" else _scan_jsonl(f, name, start)
        result = ImportResult(source=name, format=fmt, dry_run=dry_run, reject_file=reject_path)
        if layout.format == "csv" and layout.columns[I] is None and layout.columns[T] is None:
            result.warnings.append(
                f"{name} has neither an id nor a timestamp column: its rows are stamped with the time of this run, "
                "so running the import again would import them again"
            )
            if on_warning is not None:
                on_warning(result.warnings[-1])
        rejects = _Rejects(reject_path, layout)
        progress = None
        if on_progress is not None:
            on_progress(size, total, 0)
            progress = lambda done, rows: on_progress(size + done - start, total, rows)  # noqa: E731
        run = _Importer(usage, f, layout, dry_run=dry_run, batch_rows=batch_rows, commit_rows=commit_rows,
                        rejects=rejects, result=result, on_reject=on_reject, on_warning=on_warning,
                        on_progress=progress)
        run.warned_no_key = bool(result.warnings)
        try:
            with page_cache(usage.ctx.ledger, _LEDGER_CACHE_KIB):
                run.run()
        except BaseException:
            rejects.abandon()
            raise
        finally:
            run.close()
        rejects.finish()
    finally:
        if close:
            f.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _size(f, start: int) -> int:
    end = f.seek(0, io.SEEK_END)
    f.seek(start)
    return end - start


__all__ = ["ImportFileError", "ImportResult", "RowError", "import_rows"]
