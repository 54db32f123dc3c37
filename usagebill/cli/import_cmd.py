"""``usagebill import``: usage rows from a CSV or JSON Lines file (or stdin), for cron jobs."""

from __future__ import annotations

import sys

import click

from ..errors import ExitCode
from .app import cli, json_option, pass_state
from .delivery_cmds import push_json, say_waiting
from .output import emit_json, say
from .output import result as show_result


class _Progress:
    """A rich progress bar on stderr (bytes read, rows/s), only when stderr is a terminal."""

    def __init__(self):
        self.bar = None
        self.task = None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            from .output import console

            self.bar = Progress(
                TextColumn("importing"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[rows]:,} rows"),
                TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeRemainingColumn(),
                console=console(), transient=True,
            )
            self.bar.__enter__()
        return self

    def update(self, done: int, total: int, rows: int) -> None:
        if self.bar is None:
            return
        # the file is read twice (checked, then imported): show its size, half of it per pass
        if self.task is None:
            self.task = self.bar.add_task("import", total=total // 2, rows=0, rate=0.0)
        elapsed = self.bar.tasks[0].elapsed or 0.0
        self.bar.update(self.task, completed=done // 2, rows=rows, rate=rows / elapsed if elapsed > 0 else 0.0)

    def print(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message)
        else:
            say(message)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]),
              help="The file's format [default: from its extension: .csv, .jsonl or .ndjson; stdin: csv].")
@click.option("--dry-run", is_flag=True, help="Check every row and count what would be imported; write nothing.")
@click.option("--reject-file", metavar="PATH", type=click.Path(dir_okay=False),
              help="Write rejected rows here, unchanged (with the CSV header), to fix and import again.")
@click.option("--no-push", is_flag=True, help="Only write the ledger; leave delivery to Stripe to `usagebill push`.")
@json_option
@pass_state
def import_cmd(state, file: str, fmt: str | None, dry_run: bool, reject_file: str | None, no_push: bool,
               as_json: bool) -> None:
    """Import usage from a CSV or JSON Lines file (FILE, or - for stdin): safe to run again.

    Columns: user_id, key, amount, and optionally timestamp (ISO 8601 or Unix seconds; empty =
    now) and id (the row's idempotency key; without it, the key comes from the row's content).
    Rows are checked like `usagebill record`; bad rows are reported by line and column and
    skipped (exit 5), rows already imported are skipped. A malformed file imports nothing.
    The new events are then delivered to Stripe as `usagebill push` does (exit 4 when that
    fails and no row was rejected; the events stay pending for the next push).

    \b
    Example:
      usagebill import usage-2026-01-15.csv --reject-file rejects.csv
      warehouse-export | usagebill import - --format jsonl --json
      cat usage.csv | usagebill import -
    """
    if fmt is None and file == "-":
        fmt = "csv"  # stdin has no extension to tell; JSON Lines with --format jsonl
    source = sys.stdin.buffer if file == "-" else file
    billing = state.billing
    with _Progress() as progress:
        result = billing.usage.import_rows(
            source, fmt, push=not no_push, dry_run=dry_run, reject_file=reject_file,
            on_reject=lambda e: progress.print(f"{result_name(file)}: {e}"),
            on_warning=lambda m: progress.print(f"Warning: {m}"),
            on_progress=progress.update,
        )
    delivery = result.delivery
    _report(result, as_json, delivery.push if delivery is not None else None, delivery)
    if delivery is not None:
        for m in delivery.messages:
            say(m)
    if result.rejected:
        click.get_current_context().exit(int(ExitCode.PARTIAL_IMPORT))
    if delivery is not None and delivery.exit_code:
        click.get_current_context().exit(delivery.exit_code)


def result_name(file: str) -> str:
    return "<stdin>" if file == "-" else file


def _report(result, as_json: bool, pushed=None, delivery=None) -> None:
    verb = "would import" if result.dry_run else "imported"
    line = (f"{result.source}: {result.rows:,} rows: {verb} {result.imported:,}, skipped {result.duplicates:,} "
            f"already imported, rejected {result.rejected:,} ({result.seconds:.1f} s)")
    if as_json:
        say(line)
    else:
        show_result({"rows": result.rows, "imported": result.imported, "duplicates": result.duplicates,
                     "rejected": result.rejected, "dry_run": result.dry_run, "delivered": None if delivery is None else (pushed.delivered if pushed else 0),
                     "pending": None if delivery is None else delivery.pending}, line)
    if result.rejected and result.reject_file:
        say(f"Rejected rows are in {result.reject_file}: fix them and import that file.")
    if pushed is not None:  # the counts are in the result; what went wrong is a warning
        if pushed.error:
            say(f"Warning: delivery to Stripe: {pushed.error}; {pushed.still_pending:,} event(s) pending: "
                "run usagebill push again later")
        elif pushed.failed:
            say(f"Warning: Stripe refused {pushed.failed:,} event(s): see usagebill status")
        say_waiting(pushed.waiting)
    if as_json:
        emit_json({
            "source": result.source, "format": result.format, "dry_run": result.dry_run, "rows": result.rows,
            "imported": result.imported, "duplicates": result.duplicates, "rejected": result.rejected,
            "reject_file": result.reject_file, "warnings": result.warnings, "seconds": result.seconds,
            "errors": [{"line": e.line, "column": e.column, "reason": e.reason} for e in result.errors],
            "push": None if pushed is None else push_json(pushed),
        })
