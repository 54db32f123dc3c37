"""The command-line interface: thin Click commands over the library."""

from __future__ import annotations

from .app import cli
from . import (  # noqa: F401,I001  (registers the commands; import order = order in --help)
    demo_cmd, setup_cmds, sync_cmd, customer_cmds, core_cmds, report_cmds, import_cmd, delivery_cmds, reconcile_cmd,
    balance_cmds, clock_cmds,
    invoice_cmds, doctor_cmd, adopt_cmd, sandbox_cmds, completion_cmd,
)

completion_cmd.attach_completers()


def main() -> None:
    cli(prog_name="usagebill")


__all__ = ["cli", "main"]
