"""demo: the whole flow of the docs on the sandbox, in one command."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ..money import format_money, format_unit_price
from ..timeparse import iso
from .app import cli
from .output import emit_json, jsonable, out_console, plain, say, table


@cli.command("demo")
@click.option("--dir", "folder", type=click.Path(file_okay=False), help="Where to keep the demo's config, ledger and sandbox [default: a new temporary folder].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and the invoice as JSON on stdout.")
def demo(folder: str | None, as_json: bool) -> None:
    """Walk through usage billing on the offline sandbox: sync the example plans, put a
    customer on a test clock, subscribe to Pro, record 150 API calls, charge 30 more (taken
    from Pro's 100 included credits: record bills every unit, charge uses credits first),
    advance the clock past the period end and show the invoice Stripe makes ($20.00 + $15.00
    = $35.00).

    \b
    Example:
      usagebill demo
      usagebill demo --dir ./demo --json
    """
    from ..gateway.demo import run_demo
    # imported here: at the top they would register `init` and `invoices` before `demo` in --help
    from .invoice_cmds import invoice_json, render_invoice
    from .setup_cmds import example_config

    where = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="usagebill-demo-"))
    r = run_demo(where, example_config(), say)
    s = r.summary
    if as_json:
        emit_json({"folder": str(r.folder), "test_clock": r.clock_id,
                   "summary": {"user_id": s.user_id, "key": s.key, "total_amount": s.total_amount,
                               "estimated_cost": s.estimated_cost, "currency": s.currency},
                   "charge": jsonable(r.charge),
                   "preview": invoice_json(r.preview), "invoice": invoice_json(r.invoice)})
        return
    if not plain():
        con = out_console()
        con.print(f"usagebill summary alice: {iso(s.period_start)} .. {iso(s.period_end)}, from the ledger")
        table(None,
              ["feature", "used", "unit price", "estimated cost"],
              [[s.display_name, s.total_amount, format_unit_price(s.unit_price, s.currency),
                format_money(s.estimated_cost, s.currency)]], right=["used", "unit price", "estimated cost"])
        con.print("")
    # the invoice is the demo's data: piped, its lines alone
    render_invoice(r.invoice, f"usagebill invoices show {r.invoice.id}: {r.invoice.status}, {r.invoice.billing_reason}")
    say("")
    say(f"{s.total_amount} calls are billed although Pro includes 100: usage is billed in full, and the included "
        f"credits are used by charge and credits consume ({r.charge.from_credits} charged above, nothing billed).")
    say(f"Everything is in {r.folder}; look around:")
    say(f"  cd {r.folder} && usagebill invoices list alice && usagebill credits balance alice api_calls")
