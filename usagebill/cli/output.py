"""Where output goes. The data a command produces goes to stdout: a rich table or sentence on
a terminal; piped (or ``--plain``), plain tab-separated lines with a header (``--no-header``
drops it), the created id alone, no colour, no width; JSON with ``--json``. Banners,
progress, warnings and hints go to stderr, whatever stdout is."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Sequence

import click

# gh's GH_FORCE_TTY: terminal output even when stdout is not a terminal; a number is the width
FORCE_TTY = "USAGEBILL_FORCE_TTY"
SEPARATOR = 3  # " │ " between two columns of a rich table without outer edges


def no_color() -> bool:
    """https://no-color.org: present and not empty means no colour (and no bold either)."""
    return bool(os.environ.get("NO_COLOR"))


def _forced_width() -> int | None:
    value = os.environ.get(FORCE_TTY, "")
    if not value:
        return None
    return int(value) if value.isdigit() and int(value) > 0 else shutil.get_terminal_size().columns


def plain() -> bool:
    """Whether stdout gets the plain, tab-separated form: piped, or --plain / --no-header."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and (ctx.meta.get("usagebill.plain") or ctx.meta.get("usagebill.no_header")):
        return True
    if os.environ.get(FORCE_TTY):
        return False
    return not sys.stdout.isatty()


def _header_wanted() -> bool:
    ctx = click.get_current_context(silent=True)
    return not (ctx is not None and ctx.meta.get("usagebill.no_header"))


def _console(stderr: bool):
    from rich.console import Console

    width = None if stderr else _forced_width()
    forced = width is not None
    if stderr and not sys.stderr.isatty():
        width = 160  # piped or captured stderr has no width: don't squeeze into 80 columns
    return Console(
        stderr=stderr, markup=False, highlight=False, emoji=False, soft_wrap=False,
        width=width, force_terminal=True if forced else None,
        color_system=None if no_color() else "auto", no_color=no_color(),
    )


def console():
    """A rich console on stderr, for spinners and progress bars: no markup (customer names
    may contain '['), colour only on a terminal and never with NO_COLOR."""
    return _console(stderr=True)


def progress_console():
    """A console on stderr for a progress bar, or None when nobody is watching it: stderr is a
    pipe or a log (cron, tests)."""
    return console() if sys.stderr.isatty() else None


def out_console():
    """A rich console on stdout, for tables and charts on a terminal."""
    return _console(stderr=False)


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def emit_json(data: Any) -> None:
    click.echo(json.dumps(jsonable(data), indent=2, ensure_ascii=False))


def say(message: str) -> None:
    """A line for people, on stderr (progress, notes, warnings)."""
    click.echo(message, err=True)


def _cell(value: Any, grouped: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return ("yes" if value else "no") if grouped else ("true" if value else "false")
    if isinstance(value, int):
        return f"{value:,}" if grouped else str(value)
    return str(value)


def _plain_cell(value: Any) -> str:
    # one record per line, one field per tab: a tab or line break inside a value would split it
    return _cell(value, grouped=False).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def emit_plain(header: Sequence[str], rows: Iterable[Iterable[Any]]) -> None:
    lines = ["\t".join(header)] if _header_wanted() else []
    lines += ["\t".join(_plain_cell(v) for v in r) for r in rows]
    if lines:
        click.echo("\n".join(lines))


@dataclass(frozen=True)
class Column:
    """A column of a listing. ``key`` names it in piped output (a stable header for scripts).
    ``right`` columns (counts, money) are right-aligned and, like ``whole`` ones (Stripe ids),
    never cut; other columns fold long values over several lines. On a narrow terminal the
    column with the highest ``drop`` goes first (0: kept whatever the width). ``plain_only``
    columns are in piped output only (on a terminal the title says it), ``terminal_only``
    ones on a terminal only (piped output has the same data in plain_only columns)."""

    name: str
    key: str = ""
    right: bool = False
    drop: int = 0
    plain_only: bool = False
    whole: bool = False
    terminal_only: bool = False

    @property
    def uncut(self) -> bool:
        return self.right or self.whole

    @property
    def header(self) -> str:
        return self.key or self.name.replace(" ", "_")


def _fit(columns: list[Column], texts: list[list[str]], width: int) -> tuple[list[int], set[int]]:
    """Which columns to show in ``width`` columns, and which of the whole ones must fold after
    all: the least important are dropped until the amounts, the ids and a few characters of
    each text column fit; if they still don't, ids fold too (amounts never)."""
    from rich.cells import cell_len

    keep, fold = list(range(len(columns))), {i for i, c in enumerate(columns) if not c.uncut}

    def need(i: int) -> int:
        natural = max([cell_len(columns[i].name)] + [cell_len(r[i]) for r in texts])
        return min(natural, 8) if i in fold else natural

    def too_wide() -> bool:
        return sum(need(i) for i in keep) + SEPARATOR * (len(keep) - 1) > width

    while too_wide():
        droppable = [i for i in keep if columns[i].drop]
        if not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    if too_wide():
        fold |= {i for i in keep if not columns[i].right}
    return keep, fold


def table(title: str | None, columns: Sequence[Column | str], rows: Iterable[Iterable[Any]], *,
          right: Iterable[str] = ()) -> None:
    """A listing on stdout: a rich table under its title on a terminal, else plain lines."""
    right = set(right)
    cols = [c if isinstance(c, Column) else Column(c, right=c in right) for c in columns]
    rows = [list(r) for r in rows]
    if plain():
        kept = [i for i, c in enumerate(cols) if not c.terminal_only]
        emit_plain([cols[i].header for i in kept], ([r[i] for i in kept] for r in rows))
        return
    from rich.table import Table

    shown = [i for i, c in enumerate(cols) if not c.plain_only]
    texts = [[_cell(r[i], grouped=True) for i in shown] for r in rows]
    con = out_console()
    keep, fold = _fit([cols[i] for i in shown], texts, con.width)
    if title:
        con.print(title)  # as a line of its own: a title wider than the table would wrap
    t = Table(show_edge=False, pad_edge=False)
    for j in keep:
        c = cols[shown[j]]
        if j in fold:
            t.add_column(c.name, overflow="fold")
        else:
            t.add_column(c.name, justify="right" if c.right else "left", no_wrap=True)
    for r in texts:
        t.add_row(*(r[j] for j in keep))
    con.print(t)


def result(fields: dict[str, Any], sentence: str) -> None:
    """One result: the sentence on a terminal; piped, its fields as one tab-separated line
    under a header."""
    if plain():
        emit_plain(list(fields), [list(fields.values())])
    else:
        click.echo(sentence)


def created(object_id: str | None, sentence: str) -> None:
    """What a command made: the sentence on a terminal; piped, the id alone, so that
    ``CLOCK=$(usagebill testclock create)`` works."""
    if plain():
        if object_id:
            click.echo(object_id)
    else:
        click.echo(sentence)


def value(v: Any, sentence: str) -> None:
    """A single value (a balance): the sentence on a terminal; piped, the value alone."""
    created(_plain_cell(v), sentence)


# Unix seconds from 2001 to 2286 (Stripe's messages quote times so): shown as ISO 8601 too
_UNIX_TIME = re.compile(r"(?<!\d)(?<!\d\.)(1\d{9})(?!\d|\.\d)")


def readable_times(message: str | None) -> str | None:
    """Stripe's messages say ``1767225600``; people read ``2026-01-01T00:00:00Z (1767225600)``."""
    from ..timeparse import iso

    return message and _UNIX_TIME.sub(lambda m: f"{iso(int(m.group(1)))} ({m.group(1)})", message)


def debug() -> bool:
    return os.environ.get("USAGEBILL_DEBUG", "") not in ("", "0")
