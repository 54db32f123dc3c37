"""The ledger's self-checks, for ``usagebill doctor``: SQLite's own integrity check (on a SQLite
ledger), then the
invariants the ledger keeps (every journal row's balance follows from the one before it, a
credit balance is its allocation part plus its granted lots, no usage event is both
pending and part of a delivered batch, and the usage totals are their events' sums). Each
check yields findings, one line each."""

from __future__ import annotations

from typing import Iterator

from . import outbox as states
from .db import Ledger, StoreError

MAX_PER_CHECK = 20  # findings listed per check; the count says how many there were


def integrity(ledger: Ledger) -> Iterator[str]:
    if ledger.dialect != "sqlite":
        return  # PostgreSQL checks its pages and foreign keys itself, on every write
    rows = [r[0] for r in ledger.all("PRAGMA integrity_check")]
    if rows != ["ok"]:
        for r in rows[:MAX_PER_CHECK]:
            yield f"SQLite integrity check: {r}"
    for r in ledger.all("PRAGMA foreign_key_check")[:MAX_PER_CHECK]:
        yield f"SQLite foreign key check: a row of {r[0]} (rowid {r[1]}) points at a missing row of {r[2]}"


def _journal_breaks(ledger: Ledger, table: str, unit: str) -> Iterator[str]:
    rows = ledger.all(
        f"SELECT id, user_id, {unit} AS unit, delta, balance_after, "
        f"LAG(balance_after, 1, 0) OVER (PARTITION BY user_id, {unit} ORDER BY id) AS before "
        f"FROM {table}"
    )
    n = 0
    for r in rows:
        if r["before"] + r["delta"] != r["balance_after"]:
            n += 1
            if n <= MAX_PER_CHECK:
                yield (f"{table} row {r['id']} ({r['user_id']}, {r['unit']}): {r['before']} {r['delta']:+} "
                       f"should be {r['before'] + r['delta']}, the row says {r['balance_after']}")
    if n > MAX_PER_CHECK:
        yield f"{table}: {n - MAX_PER_CHECK} more rows whose balance does not follow"


def journals(ledger: Ledger) -> Iterator[str]:
    yield from _journal_breaks(ledger, "credit_ledger", "feature")
    yield from _journal_breaks(ledger, "wallet_ledger", "currency")


def credit_parts(ledger: Ledger) -> Iterator[str]:
    """A credit balance is what is left of the plan's allocation plus the granted lots."""
    rows = ledger.all(
        "WITH last AS (SELECT user_id, feature, balance_after FROM credit_ledger c WHERE id = "
        "  (SELECT MAX(id) FROM credit_ledger d WHERE d.user_id = c.user_id AND d.feature = c.feature)), "
        "lots AS (SELECT user_id, feature, SUM(remaining) AS granted FROM credit_grants GROUP BY user_id, feature) "
        "SELECT last.user_id, last.feature, last.balance_after, COALESCE(a.remaining, 0) AS included, "
        "COALESCE(lots.granted, 0) AS granted FROM last "
        "LEFT JOIN allocations_left a ON a.user_id = last.user_id AND a.target = 'credits:' || last.feature "
        "LEFT JOIN lots ON lots.user_id = last.user_id AND lots.feature = last.feature"
    )
    bad = [r for r in rows if r["included"] + r["granted"] != r["balance_after"]]
    for r in bad[:MAX_PER_CHECK]:
        yield (f"credits of {r['user_id']} ({r['feature']}): balance {r['balance_after']}, but included "
               f"{r['included']} + granted {r['granted']} = {r['included'] + r['granted']}")


def outbox(ledger: Ledger) -> Iterator[str]:
    """Delivery states that cannot both be true: the next push would re-send delivered usage."""
    checks = [
        ("usage event(s) marked pending or failed inside a batch Stripe confirmed",
         "SELECT d.event_id FROM event_delivery d JOIN delivery_batches b ON b.id = d.batch_id "
         "WHERE b.status = 'delivered' AND d.status != 'delivered'"),
        ("usage event(s) marked delivered inside a batch Stripe has not confirmed",
         "SELECT d.event_id FROM event_delivery d JOIN delivery_batches b ON b.id = d.batch_id "
         "WHERE b.status != 'delivered' AND d.status = 'delivered'"),
        ("usage event(s) in a batch the ledger does not have",
         "SELECT d.event_id FROM event_delivery d LEFT JOIN delivery_batches b ON b.id = d.batch_id "
         "WHERE d.batch_id IS NOT NULL AND b.id IS NULL"),
        ("delivery record(s) of usage events the ledger does not have",
         "SELECT d.event_id FROM event_delivery d LEFT JOIN usage_events e ON e.id = d.event_id WHERE e.id IS NULL"),
        ("delivery record(s) in an unknown state",
         "SELECT event_id FROM event_delivery WHERE status NOT IN "
         f"({', '.join(repr(x) for x in (states.QUEUED, states.SENDING, states.BATCHED, states.DELIVERED, states.FAILED, states.LATE, states.INVOICED))})"),
        ("usage event(s) billed as late usage by an invoice item the ledger does not have",
         f"SELECT d.event_id FROM event_delivery d LEFT JOIN late_items l ON l.id = d.late_item_id "
         f"WHERE d.status IN ('{states.LATE}', '{states.INVOICED}') AND l.id IS NULL"),
        ("usage event(s) below the delivery watermark without a delivery row (no push would send them)",
         f"SELECT e.id FROM usage_events e WHERE e.seq < (SELECT CAST(value AS INTEGER) FROM settings WHERE key = "
         f"'{states.WATERMARK}') AND NOT EXISTS (SELECT 1 FROM event_delivery d WHERE d.event_id = e.id)"),
        ("coalesced batch(es) whose amount is not the sum of their events",
         "SELECT b.id FROM delivery_batches b LEFT JOIN event_delivery d ON d.batch_id = b.id "
         f"LEFT JOIN usage_events e ON e.id = d.event_id WHERE b.status != '{states.DISSOLVED}' "
         "GROUP BY b.id HAVING b.amount != COALESCE(SUM(e.amount), 0)"),
    ]
    for what, sql in checks:
        ids = [r[0] for r in ledger.all(sql)]
        if ids:
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            yield f"{len(ids)} {what}: {shown}"


def usage_totals(ledger: Ledger) -> Iterator[str]:
    """The hourly and daily usage totals (``ledger.totals``) are their events' sums: summary
    and top read them, so a total off by a unit would be an estimate off by its price."""
    for span, name in ((3600, "hour"), (86400, "day")):
        bucket = f"timestamp - timestamp % {span}"
        sums = (f"SELECT user_id, feature, {bucket} AS since, SUM(amount) AS units, COUNT(*) AS n "
                f"FROM usage_events GROUP BY user_id, feature, {bucket}")
        rows = ledger.all(
            f"SELECT e.user_id, e.feature, e.since, e.units, e.n, t.units AS t_units, t.events AS t_n FROM ({sums}) e "
            f"LEFT JOIN usage_totals t ON t.user_id = e.user_id AND t.feature = e.feature AND t.span = {span} "
            "AND t.since = e.since WHERE t.units IS NULL OR t.units <> e.units OR t.events <> e.n "
            "UNION ALL "
            "SELECT t.user_id, t.feature, t.since, 0, 0, t.units, t.events FROM usage_totals t "
            f"WHERE t.span = {span} AND NOT EXISTS (SELECT 1 FROM usage_events e WHERE e.user_id = t.user_id "
            f"AND e.feature = t.feature AND e.timestamp >= t.since AND e.timestamp < t.since + {span})"
        )
        for r in rows[:MAX_PER_CHECK]:
            yield (f"usage totals of {r['user_id']} ({r['feature']}), the {name} from {r['since']}: "
                   f"{r['t_units'] or 0} units in {r['t_n'] or 0} events, but its events are {r['units']} in {r['n']}")
        if len(rows) > MAX_PER_CHECK:
            yield f"usage totals: {len(rows) - MAX_PER_CHECK} more {name}s that are not their events' sums"


CHECKS = (integrity, journals, credit_parts, outbox, usage_totals)


def run(ledger: Ledger) -> list[str]:
    """Every finding of every check; a check that cannot even run is a finding too."""
    findings: list[str] = []
    for check in CHECKS:
        try:
            findings.extend(check(ledger))
        except StoreError as e:
            findings.append(f"{check.__name__}: cannot check ({e})")
    return findings


def stripe_ids(ledger: Ledger) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(mapping key, Stripe id) of every mapped catalogue object, and (user id, subscription
    id) of every active subscription the ledger mirrors from Stripe."""
    mapped = [(r[0], r[1]) for r in ledger.all("SELECT key, stripe_id FROM stripe_objects ORDER BY key")]
    subs = [(r[0], r[1]) for r in ledger.all(
        "SELECT user_id, stripe_subscription_id FROM subscriptions WHERE status = 'active' "
        "AND stripe_subscription_id IS NOT NULL ORDER BY user_id")]
    return mapped, subs
