"""invoices: list, show and preview, as Stripe makes them."""

from __future__ import annotations

import click

from ..money import format_money, format_unit_price
from ..timeparse import iso
from .app import cli, json_option, pass_state
from ..ledger.reports import remember_invoices
from .output import Column, emit_json, emit_plain, out_console, plain, table


def invoice_json(inv) -> dict:
    return {
        "id": inv.id, "number": inv.number, "status": inv.status, "billing_reason": inv.billing_reason,
        "customer": inv.customer, "currency": inv.currency, "subtotal": inv.subtotal, "total": inv.total,
        "amount_due": inv.amount_due, "created": iso(inv.created),
        "lines": [
            {"description": x.description, "stripe_description": x.stripe_description, "quantity": x.quantity,
             "unit_amount": str(x.unit_amount), "amount": x.amount,
             "period_start": iso(x.period_start), "period_end": iso(x.period_end)}
            for x in inv.lines
        ],
    }


def _span(start, end) -> str:
    if not start or not end or end - start <= 0:
        return ""
    from ..closing import span

    return f" ({span(start, end)})"


def render_invoice(inv, title: str | None = None) -> None:
    """The invoice as a person reads it:  API Calls (Jan 01-Feb 01)  150 x $0.10  $15.00;
    piped, one line per invoice line and a last Total line."""
    from rich import box
    from rich.table import Table

    if plain():
        emit_plain(["item", "quantity", "unit_price", "amount", "period_start", "period_end"], [
            *([x.description, x.quantity, format_unit_price(x.unit_amount, inv.currency),
               format_money(x.amount, inv.currency), iso(x.period_start), iso(x.period_end)] for x in inv.lines),
            ["Total", "", "", format_money(inv.total, inv.currency), "", ""],
        ])
        return
    con = out_console()
    con.print(title or f"Invoice {inv.number or inv.id or '(preview)'}: {inv.status or ''}, {inv.billing_reason or ''}")
    t = Table(show_edge=False, pad_edge=False, box=box.SIMPLE_HEAD)
    t.add_column("item", overflow="fold")
    t.add_column("quantity x price", justify="right", no_wrap=True)
    t.add_column("amount", justify="right", no_wrap=True)
    for x in inv.lines:
        t.add_row(x.description + _span(x.period_start, x.period_end),
                  f"{x.quantity:,} x {format_unit_price(x.unit_amount, inv.currency)}",
                  format_money(x.amount, inv.currency))
    t.add_section()
    t.add_row("Total", "", format_money(inv.total, inv.currency))
    con.print(t)


@cli.group("invoices")
def invoices_group() -> None:
    """Invoices from Stripe: list a customer's, show one, preview the upcoming one.

    \b
    Example:
      usagebill invoices list alice
      usagebill invoices preview alice
    """


@invoices_group.command("list")
@click.argument("user_id")
@json_option
@pass_state
def invoices_list(state, user_id, as_json) -> None:
    """List a customer's invoices, newest first.

    \b
    Example:
      usagebill invoices list alice --json
    """
    from ..gateway.invoices import list_invoices

    items = list_invoices(state.billing, state.connection, user_id)
    remember_invoices(state.billing.ledger, [i.id for i in items if i.id])  # for completion
    if as_json:
        emit_json([invoice_json(i) for i in items])
        return
    table(f"{user_id}: {len(items)} invoice(s)", [
        Column("invoice", "id", whole=True), Column("number", drop=2), Column("status"), Column("reason", "billing_reason", drop=1),
        Column("created", drop=3), Column("total", right=True)],
        [[i.id, i.number, i.status, i.billing_reason, iso(i.created), format_money(i.total, i.currency)] for i in items])


@invoices_group.command("show")
@click.argument("invoice")
@json_option
@pass_state
def invoices_show(state, invoice, as_json) -> None:
    """Show an invoice with every line: description, quantity, unit price, amount; total.

    \b
    Example:
      usagebill invoices show in_1Nx...
    """
    from ..gateway.invoices import get_invoice

    inv = get_invoice(state.billing, state.connection, invoice)
    if as_json:
        emit_json(invoice_json(inv))
    else:
        render_invoice(inv)


@invoices_group.command("preview")
@click.argument("user_id")
@json_option
@pass_state
def invoices_preview(state, user_id, as_json) -> None:
    """Preview the customer's upcoming invoice, with the usage Stripe has so far.

    \b
    Example:
      usagebill invoices preview alice
    """
    from ..gateway.invoices import preview_invoice

    inv = preview_invoice(state.billing, state.connection, user_id)
    if as_json:
        emit_json(invoice_json(inv))
    else:
        render_invoice(inv, f"Upcoming invoice of {user_id}")
