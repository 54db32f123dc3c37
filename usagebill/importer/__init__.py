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
  ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (user_id, idempotency_key) index, so a
  row whose key is there already is skipped as a duplicate; an ``id`` already used for other
  content is a rejected row.
* Occurrence numbers without a counting table: a derived key is written as ``:0``, and a key
  taken already is this run's (an earlier identical row: the next number) or an earlier run's
  (a duplicate, met once: one bit per ledger event). See ``writing``.
* Bounded memory. Rows are read, checked and written in batches of ``batch_rows`` rows, in
  transactions of about ``commit_rows``; customers and features are cached per run with a
  bound, and rejected rows are streamed to the reject file.
* Crash safety. Each transaction commits atomically; killed at any moment and run again, the
  import skips what was committed (the keys are the same each run) and imports the rest.

The hot path avoids per-row Python and per-row SQL: a batch is checked one column at a time
(``checking``, through the rules' column twins in ``rules.py``; a row they cannot vouch for
is checked by the rules themselves), inserts use ``executemany`` (COPY and one INSERT ... SELECT
on PostgreSQL: ``ledger.insert_new``), a batch's new customers are read at once, and duplicates are counted
from the rows changed. Only rows skipped because their key was there already are looked up
again (set-based, per batch): to compare content (ids) or to tell whose the key is (derived);
a re-run's through the range of seqs that holds their events (``Writer._in_range``).
"""

from __future__ import annotations

import gc
import io
import os
import time
from typing import Callable

from ..errors import ValidationError
from . import reject_target
from .checking import Checker
from .reading import COLUMNS, EXTENSIONS, FORMATS, REQUIRED  # noqa: F401  (the file format, for callers)
from .reading import open_source, scan_csv, scan_jsonl
from .results import ImportFileError, ImportResult, RowError
from .writing import BATCH_ROWS, COMMIT_ROWS, Writer, Rejects

_LEDGER_CACHE_KIB = 64 * 1024  # SQLite page cache of the ledger connection during an import
I, T = 4, 3  # positions of the id and timestamp columns in a parsed row


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
    f, name, fmt, close = open_source(source, format)
    reject_path = None if reject_file is None else os.fspath(reject_file)
    if reject_path is not None:
        reject_target.check_target(reject_path, name if isinstance(source, (str, os.PathLike)) else None)
    try:
        start = f.tell()
        size = _size(f, start)
        total = 2 * size
        if on_progress is not None:
            on_progress(0, total, 0)
        layout = scan_csv(f, name, start) if fmt == "csv" else scan_jsonl(f, name, start)
        result = ImportResult(source=name, format=fmt, dry_run=dry_run, reject_file=reject_path)
        if layout.format == "csv" and layout.columns[I] is None and layout.columns[T] is None:
            result.warnings.append(
                f"{name} has neither an id nor a timestamp column: its rows are stamped with the time of this run, "
                "so running the import again would import them again"
            )
            if on_warning is not None:
                on_warning(result.warnings[-1])
        rejects = Rejects(reject_path, layout)
        progress = None
        if on_progress is not None:
            on_progress(size, total, 0)
            progress = lambda done, rows: on_progress(size + done - start, total, rows)  # noqa: E731
        writer = Writer(usage.ctx.ledger, f, dry_run=dry_run, commit_rows=commit_rows, rejects=rejects,
                        result=result, on_reject=on_reject, on_progress=progress)
        checker = Checker(usage, writer, layout, batch_rows=batch_rows, result=result, on_warning=on_warning)
        checker.warned_no_key = bool(result.warnings)
        # the rows are tuples and lists freed as each batch is written, never cycles: the cyclic
        # garbage collector would only walk them again and again (a third of the time of
        # reading and checking at 1,000,000 rows), so it is off for the import
        collecting = gc.isenabled()
        gc.disable()
        try:
            with usage.ctx.ledger.bulk(_LEDGER_CACHE_KIB):
                checker.run()
        except BaseException:
            rejects.abandon()
            raise
        finally:
            if collecting:
                gc.enable()
            writer.close()
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
