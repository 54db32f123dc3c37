"""Where ``import --reject-file`` may write, and how: never over a file that is not a reject
file (the ledger, the config, a database, anything else), never through a symbolic link,
private to its owner (it holds customer rows), and safe to open in a spreadsheet or to
``cat`` in a terminal (OWASP's advice for CSV exports)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat

from ..errors import ValidationError

USAGE_COLUMNS = frozenset(("user_id", "key", "amount", "timestamp", "id"))
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HOW = "remove it or choose another --reject-file"


def _looks_like_rejects(first_line: bytes) -> bool:
    """A CSV header or a JSON Lines object of usage rows: what an earlier import wrote."""
    text = first_line.decode("utf-8-sig", "replace").strip()
    if not text:
        return True
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        return isinstance(obj, dict) and bool(obj) and set(obj) <= USAGE_COLUMNS
    names = [n.strip() for n in next(csv.reader([text]), [])]
    return bool(names) and set(names) <= USAGE_COLUMNS and {"user_id", "key", "amount"} <= set(names)


def check_target(path: str, source: str | None) -> None:
    """Refuse, before anything is imported, a reject file that would destroy something."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ValidationError(f"{path}: cannot use as the reject file ({e.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise ValidationError(f"{path}: is a symbolic link; the reject file is never written through one ({_HOW})")
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(f"{path}: not a regular file ({_HOW})")
    if source is not None:
        try:
            if os.path.samefile(path, source):
                raise ValidationError(f"{path}: the reject file cannot be the file being imported")
        except OSError:
            pass
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(0)
        first = f.readline(64 * 1024)
    if head.startswith(b"SQLite format 3\x00"):
        raise ValidationError(f"{path}: is an SQLite database (the ledger?), not a reject file ({_HOW})")
    if not _looks_like_rejects(first):
        raise ValidationError(f"{path}: exists and is not a reject file written by usagebill import ({_HOW})")


def open_partial(path: str):
    """``PATH.partial``, created new, mode 0600, never through a link. A regular file left by
    a killed import is replaced."""
    partial = path + ".partial"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(2):
        try:
            return partial, os.fdopen(os.open(partial, flags, 0o600), "wb")
        except FileExistsError:
            st = os.lstat(partial)
            if not stat.S_ISREG(st.st_mode):
                raise ValidationError(f"{partial}: exists and is not a regular file; remove it") from None
            os.unlink(partial)
        except OSError as e:
            raise ValidationError(f"{path}: cannot write the reject file: {e.strerror}") from None
    raise ValidationError(f"{partial}: keeps reappearing; is another import running?")


def _safe_field(value: str) -> str:
    value = _CONTROL.sub(lambda m: f"\\x{m.group()[0]:02x}".encode(), value.encode("utf-8", "surrogateescape")).decode(
        "utf-8", "surrogateescape"
    )
    return "'" + value if value.startswith(FORMULA_START) else value


def neutralise_csv(raw: bytes) -> bytes:
    """A CSV record as it was, unless a field would run as a spreadsheet formula or holds a
    terminal control character: then that field is prefixed with ``'`` / escaped."""
    text = raw.decode("utf-8", "surrogateescape")
    fields = next(csv.reader([text.rstrip("\r\n")]), [])
    if not any(f.startswith(FORMULA_START) for f in fields) and not _CONTROL.search(raw.rstrip(b"\r\n")):
        return raw
    out = io.StringIO()
    csv.writer(out, lineterminator=text[len(text.rstrip("\r\n")):] or "").writerow([_safe_field(f) for f in fields])
    return out.getvalue().encode("utf-8", "surrogateescape")


def neutralise_jsonl(raw: bytes) -> bytes:
    """JSON Lines rows carry control characters only as escapes already (raw ones are not
    JSON); a raw one that got here is escaped all the same."""
    body = raw.rstrip(b"\r\n")
    return _CONTROL.sub(lambda m: f"\\u{m.group()[0]:04x}".encode(), body) + raw[len(body):]
