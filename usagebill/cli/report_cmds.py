"""summary and top: usage from the ledger, as a table, a bar chart per time bucket, JSON or
CSV. No Stripe call."""

from __future__ import annotations

import csv
import sys

import click

from ..money import format_money, format_unit_price
from ..periods import to_datetime
from ..timeparse import iso
from .app import cli, json_option, pass_state
from .output import Column, emit_json, no_color, out_console, plain, table

BARS = " ▏▎▍▌▋▊▉█"  # eighths of a cell
LABELS = {"hour": "%m-%d %H:00", "day": "%a %m-%d", "week": "wk %m-%d"}


def report_json(r) -> dict:
    """One shape with or without --key and --by: an object with a list of features."""
    def feature(f) -> dict:
        data = {
            "key": f.key, "display_name": f.display_name, "total_amount": f.total_amount,
            "estimated_cost": f.estimated_cost, "formatted_cost": format_money(f.estimated_cost, r.currency),
            "unit_price": str(f.unit_price), "events": f.events,
            "included_credits": None if f.included is None else
            {"allocation": f.included, "on_renewal": f.on_renewal, "balance": f.credits_left},
        }
        if f.series is not None:
            data["series"] = [{"start": iso(b.start), "end": iso(b.end), "units": b.units,
                               "estimated_cost": b.estimated_cost} for b in f.series]
        return data

    return {"user_id": r.user_id, "plan": r.plan, "currency": r.currency, "period_start": iso(r.period_start),
            "period_end": iso(r.period_end), "by": r.by, "features": [feature(f) for f in r.features]}


def report_csv(r) -> None:
    """One row per feature and bucket (the whole period without --by); money in minor units."""
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["user_id", "key", "start", "end", "units", "estimated_cost", "currency"])
    for f in r.features:
        spans = f.series if f.series is not None else [None]
        for b in spans:
            if b is None:
                w.writerow([r.user_id, f.key, iso(r.period_start), iso(r.period_end), f.total_amount, f.estimated_cost, r.currency])
            else:
                w.writerow([r.user_id, f.key, iso(b.start), iso(b.end), b.units, b.estimated_cost, r.currency])
    sys.stdout.flush()


def included_line(r, f) -> str | None:
    """Why the usage is billed in full although the plan includes credits (the docs' rule)."""
    if f.included is None:
        return None
    return (f"Included in {r.plan}: {f.included:,} {f.key} credits a period ({f.on_renewal}), {f.credits_left:,} left. "
            f"Recorded usage is billed in full; credits are used by usagebill charge and credits consume.")


def _bar(units: int, top: int, width: int) -> str:
    if top <= 0 or units <= 0:
        return ""
    eighths = max(1, round(units / top * width * 8))
    return BARS[8] * (eighths // 8) + (BARS[eighths % 8] if eighths % 8 else "")


def render_chart(r) -> None:
    """Per feature: one bar per bucket with its units and estimated cost, then the total."""
    from rich.table import Table
    from rich.text import Text

    con = out_console()
    con.print(f"{r.user_id} on {r.plan}, per {r.by} (UTC): {iso(r.period_start)} .. {iso(r.period_end)}")
    for f in r.features:
        rows = [(to_datetime(b.start).strftime(LABELS[r.by]), f"{b.units:,}", format_money(b.estimated_cost, r.currency))
                for b in f.series]
        widths = [max([len(x[i]) for x in rows] + [1]) for i in range(3)]
        room = con.width - sum(widths) - 3  # one space between the four columns
        show_cost = room >= 8  # a narrow terminal drops the cost column (the total says it) before the bars shrink
        bar_width = room if show_cost else max(4, con.width - widths[0] - widths[1] - 2)
        top = max([b.units for b in f.series] + [0])
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, width=bar_width)
        grid.add_column(justify="right", no_wrap=True)
        if show_cost:
            grid.add_column(justify="right", no_wrap=True)
        for b, (label, units, money) in zip(f.series, rows):
            bar = Text(_bar(b.units, top, bar_width), style=None if no_color() else "cyan")
            grid.add_row(label, bar, units, *([money] if show_cost else []))
        con.print("")
        con.print(f"{f.display_name} ({f.key}) at {format_unit_price(f.unit_price, r.currency)}")
        con.print(grid)
        con.print(f"Total: {f.total_amount:,} {f.key}, {format_money(f.estimated_cost, r.currency)} estimated "
                  f"({f.events:,} events)")
        line = included_line(r, f)
        if line:
            con.print(line)


def render_summary(r) -> None:
    table(
        f"{r.user_id} on {r.plan}: {iso(r.period_start)} .. {iso(r.period_end)}",
        [Column("feature", "key"), Column("name", "display_name", drop=2), Column("used", "units", right=True),
         Column("unit price", right=True, drop=1), Column("estimated cost", right=True),
         Column("included", "included_credits", right=True, drop=3),
         Column("period start", plain_only=True), Column("period end", plain_only=True)],
        [[f.key, f.display_name, f.total_amount, format_unit_price(f.unit_price, r.currency),
          format_money(f.estimated_cost, r.currency), f.included, iso(r.period_start), iso(r.period_end)]
         for f in r.features],
    )


def render_series_plain(r) -> None:
    table(None, [Column("key"), Column("start"), Column("end"), Column("units", right=True),
                 Column("estimated cost", right=True)],
          [[f.key, iso(b.start), iso(b.end), b.units, format_money(b.estimated_cost, r.currency)]
           for f in r.features for b in f.series])


@cli.command("summary")
@click.argument("user_id")
@click.option("--key", help="One feature [default: every usage feature of the plan].")
@click.option("--by", type=click.Choice(["hour", "day", "week"]), help="Usage per hour, day or week of the period: a bar chart.")
@click.option("--daily", is_flag=True, help="Same as --by day.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV on stdout (money in minor units).")
@json_option
@pass_state
def summary(state, user_id, key, by, daily, as_csv, as_json) -> None:
    """Usage so far this period and what it will cost, from the ledger (no Stripe call); with
    --daily or --by, as a bar chart with units and estimated cost per bar.

    --json prints one object whatever the options: the period and a list of features (each
    with its series of buckets when --by is given).

    \b
    Example:
      usagebill summary alice
      usagebill summary alice --daily
      usagebill summary alice --by week --csv > alice.csv
    """
    from ..reports import usage_report

    if daily and by not in (None, "day"):
        raise click.UsageError("--daily is --by day: give one of them")
    r = usage_report(state.billing, user_id, key, "day" if daily else by)
    if as_json:
        emit_json(report_json(r))
    elif as_csv:
        report_csv(r)
    elif not r.features:
        click.echo(f"{user_id}'s plan has no usage features", err=True)
    elif r.by and plain():
        render_series_plain(r)
    elif r.by:
        render_chart(r)
    else:
        render_summary(r)
        if not plain():
            for line in filter(None, (included_line(r, f) for f in r.features)):
                out_console().print(line)


@cli.command("top")
@click.option("--period", type=click.Choice(["current", "previous"]), default="current", show_default=True,
              help="Each customer's current billing period, or the one before it.")
@click.option("--by", type=click.Choice(["cost", "units"]), default="cost", show_default=True, help="How to rank.")
@click.option("--limit", type=click.IntRange(1), default=10, show_default=True, help="How many customers (per currency).")
@json_option
@pass_state
def top_cmd(state, period, by, limit, as_json) -> None:
    """The customers with the most usage, each in its own billing period, from the ledger (no
    Stripe call): the operator's morning look.

    \b
    Example:
      usagebill top
      usagebill top --period previous --by units --limit 20
    """
    from ..reports import top

    rows = top(state.billing, period, by, limit)
    if as_json:
        emit_json([{"rank": i, "user_id": x.user_id, "plan": x.plan, "currency": x.currency,
                    "period_start": iso(x.period_start), "period_end": iso(x.period_end), "units": x.units,
                    "estimated_cost": x.estimated_cost, "events": x.events, "features": x.features}
                   for i, x in _ranked(rows)])
        return
    table(f"Top {len(rows)} customer(s) by {by}, {period} period", [
        Column("#", "rank", right=True), Column("customer", "user_id"), Column("plan", drop=2),
        Column("units", right=True), Column("estimated cost", right=True), Column("events", right=True, drop=3),
        Column("period", drop=1, terminal_only=True), Column("period start", plain_only=True),
        Column("period end", plain_only=True), Column("currency", plain_only=True),
    ], [[i, x.user_id, x.plan, x.units, format_money(x.estimated_cost, x.currency), x.events,
         f"{iso(x.period_start)[:10]} .. {iso(x.period_end)[:10]}", iso(x.period_start), iso(x.period_end), x.currency]
        for i, x in _ranked(rows)])


def _ranked(rows):
    """Rank 1, 2, 3... within each currency."""
    seen: dict[str, int] = {}
    for x in rows:
        seen[x.currency] = seen.get(x.currency, 0) + 1
        yield seen[x.currency], x
