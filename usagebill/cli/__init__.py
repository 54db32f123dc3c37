"""The command-line interface: thin Click commands over the library."""

from __future__ import annotations

from .app import cli
from . import core_cmds, balance_cmds, setup_cmds  # noqa: F401,I001  (order = order in --help)


def main() -> None:
    cli(prog_name="usagebill")


__all__ = ["cli", "main"]
