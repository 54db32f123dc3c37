"""Reading an import file: opening it (spooling unseekable input), checking its structure in
a first pass (UTF-8, header, columns, field counts, JSON syntax) so that a malformed file fails
before anything is imported, then yielding its records fast in the second pass."""

from __future__ import annotations

import codecs
import csv
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from bisect import bisect_left
from itertools import islice, repeat
from pathlib import Path
from typing import IO, Iterator, Sequence

from ..errors import ValidationError
from ..suggest import did_you_mean
from .results import ImportFileError

COLUMNS = ("user_id", "key", "amount", "timestamp", "id")
REQUIRED = ("user_id", "key", "amount")
FORMATS = ("csv", "jsonl")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_BOM = "\ufeff"


@dataclass
class Layout:
    format: str
    columns: tuple[int | None, ...] = ()  # CSV: the field index of user_id, key, amount, timestamp, id
    width: int = 0  # CSV: fields per row
    header: bytes = b""  # CSV: the header line as it is in the file
    data_offset: int = 0
    first_line: int = 1  # line number of the first line after the header
    simple: bool = False  # CSV: no quotes, no blank lines: every line is one record, split on commas


# -- the file --------------------------------------------------------------------------------

def open_source(source, format: str | None) -> tuple[IO[bytes], str, str, bool]:
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


def scan_csv(f: IO[bytes], name: str, start: int) -> Layout:
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
            raise _fail(name, 1, i + 1, f"unknown column {n!r}{did_you_mean(n.lower(), COLUMNS)} (columns: {', '.join(COLUMNS)})")
        if names.index(n) != i:
            raise _fail(name, 1, i + 1, f"column {n!r} appears twice")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise _fail(name, 1, None, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"(the header has {', '.join(names)})")
    layout = Layout("csv", tuple(names.index(c) if c in names else None for c in COLUMNS), len(names),
                     header_raw, f.tell(), 2)
    if scan_simple_csv(f, name, layout, names):
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


def scan_simple_csv(f: IO[bytes], name: str, layout: Layout, names: list[str]) -> bool:
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


def scan_jsonl(f: IO[bytes], name: str, start: int) -> Layout:
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
            raise _fail(name, line, 1, f"expected a JSON object with {', '.join(REQUIRED)}, found {json_kind(obj)}")
        if not allowed.issuperset(obj):
            bad = next(k for k in obj if k not in allowed)
            raise _fail(name, line, None, f"unknown key {bad!r}{did_you_mean(bad.lower(), COLUMNS)} (keys: {', '.join(COLUMNS)})")
    return Layout("jsonl", data_offset=start, first_line=1)


def json_kind(value) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


@dataclass
class Block:
    """Up to ``batch_rows`` records: their line numbers (ascending), their bytes as in the file,
    and their fields as five columns (user_id, key, amount, timestamp, id), a column of ``""``
    where the file has no such column (JSON Lines: None where an object has no such key)."""

    lines: Sequence[int]
    raws: list[bytes]
    columns: tuple[Sequence, Sequence, Sequence, Sequence, Sequence]

    def raw(self, line: int) -> bytes:
        lines = self.lines
        return self.raws[line - lines[0] if isinstance(lines, range) else bisect_left(lines, line)]


def simple_csv_blocks(f: IO[bytes], layout: Layout, size: int) -> Iterator[Block]:
    """The blocks of a file where each line is a record split on commas, by a pipeline of C
    functions over ``size`` lines at a time, which is most of the import's speed."""
    f.seek(layout.data_offset)
    iu, ik, ia, it, ii = layout.columns
    line = layout.first_line
    while raws := list(islice(f, size)):
        n = len(raws)
        fields = list(map(str.split, map(str.rstrip, map(bytes.decode, raws), repeat("\r\n")), repeat(",")))
        columns = list(zip(*fields))
        absent = ("",) * n
        yield Block(range(line, line + n), raws, tuple(absent if i is None else columns[i] for i in (iu, ik, ia, it, ii)))
        line += n


def blocks_of(records: Iterator[tuple[int, bytes, tuple]], size: int) -> Iterator[Block]:
    """(line, bytes, fields) records grouped into blocks of ``size``."""
    while chunk := list(islice(records, size)):
        lines, raws, fields = zip(*chunk)
        yield Block(lines, list(raws), tuple(zip(*fields)))


def csv_records(f: IO[bytes], layout: Layout) -> Iterator[tuple[int, bytes, tuple]]:
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


def jsonl_records(f: IO[bytes], layout: Layout) -> Iterator[tuple[int, bytes, list]]:
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
