"""Output for people (rich, on stderr) and for scripts (JSON / CSV, on stdout)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from decimal import Decimal
from typing import Any, Iterable

import click


def console():
    """A rich console on stderr: no markup (customer names may contain '['), colour only on
    a terminal, NO_COLOR respected (rich reads it)."""
    from rich.console import Console

    # piped or captured stderr has no width: don't squeeze tables into 80 columns
    width = None if sys.stderr.isatty() else 160
    return Console(stderr=True, markup=False, highlight=False, soft_wrap=False, width=width)


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
    """A line for people, on stderr."""
    click.echo(message, err=True)


def table(title: str | None, columns: list[str], rows: Iterable[Iterable[Any]], *, right: Iterable[str] = ()) -> None:
    from rich.table import Table

    right = set(right)
    if title:
        say(title)  # as a line of its own: a table title wider than the table would wrap
    t = Table(show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left", no_wrap=True)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    console().print(t)


def debug() -> bool:
    return os.environ.get("USAGEBILL_DEBUG", "") not in ("", "0")
