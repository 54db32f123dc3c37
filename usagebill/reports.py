"""Reports from the ledger: a customer's usage this period, per feature and per time bucket
(``summary --by day``), and the customers with the most usage (``top``). No SQL here (it is
in ``ledger/reports.py``), no Click, no rich."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .errors import ValidationError
from .ledger import reports as queries
from .money import cost
from .periods import period_at

# bucket size in seconds and where buckets begin: UTC hours and days; weeks from Monday
# (1970-01-05 was a Monday, four days after the Unix epoch)
BUCKETS = {"hour": (3600, 0), "day": (86400, 0), "week": (7 * 86400, 4 * 86400)}
PERIODS = ("current", "previous")
RANKINGS = ("cost", "units")


@dataclass(frozen=True)
class Bucket:
    start: int  # the bucket's start, clipped to the period
    end: int
    units: int
    estimated_cost: int  # minor units, this bucket's units at the unit price, rounded once


@dataclass(frozen=True)
class FeatureUsage:
    key: str
    display_name: str
    total_amount: int
    estimated_cost: int  # of the total, rounded once (the buckets' costs may differ by rounding)
    unit_price: Decimal
    events: int
    included: int | None  # the plan's credits allocation per period, if any
    on_renewal: str | None
    credits_left: int | None  # the customer's credit balance for the feature, when included
    series: list[Bucket] | None  # with ``by`` only


@dataclass(frozen=True)
class UsageReport:
    user_id: str
    plan: str
    currency: str
    period_start: int
    period_end: int
    now: int  # the customer's now (its test clock's time)
    by: str | None
    features: list[FeatureUsage]


def check_bucket(by: str | None) -> str | None:
    if by is not None and by not in BUCKETS:
        raise ValidationError(f"--by must be one of {', '.join(BUCKETS)}, not {by!r}")
    return by


def buckets(start: int, end: int, by: str) -> list[tuple[int, int]]:
    """The buckets covering [start, end), the first and last clipped to it."""
    size, offset = BUCKETS[by]
    edges = []
    b = offset + (start - offset) // size * size
    while b < end:
        edges.append((max(b, start), min(b + size, end)))
        b += size
    return edges


def usage_report(billing, user_id: str, key: str | None = None, by: str | None = None) -> UsageReport:
    """The customer's usage this period, per usage feature (or one); with ``by``, also per
    hour, day or week of the period up to the customer's now."""
    check_bucket(by)
    ctx = billing.ctx
    summaries = [billing.usage.get_summary(user_id, key)] if key else billing.usage.get_summaries(user_id)
    sub = ctx.require_subscription(user_id)
    now = ctx.now_for(user_id)
    start, end = sub.period(now)
    features = []
    for s in summaries:
        feature = sub.plan.features[s.key]
        series = None
        if by is not None:
            size, offset = BUCKETS[by]
            units = queries.usage_buckets(ctx.ledger, user_id, s.key, start, end, size, offset)
            aligned = [(a, b, units.get(offset + (a - offset) // size * size, 0)) for a, b in buckets(start, end, by)
                       if a <= now]  # up to the bucket of the customer's now
            series = [Bucket(a, b, n, cost(n, s.unit_price)) for a, b, n in aligned]
        features.append(FeatureUsage(
            key=s.key, display_name=s.display_name, total_amount=s.total_amount, estimated_cost=s.estimated_cost,
            unit_price=s.unit_price, events=s.events,
            included=feature.credits.allocation if feature.credits else None,
            on_renewal=feature.credits.on_renewal if feature.credits else None,
            credits_left=billing.credits.get_balance(user_id, s.key) if feature.credits else None, series=series,
        ))
    return UsageReport(user_id, sub.plan.name, sub.currency, start, end, now, by, features)


@dataclass(frozen=True)
class TopCustomer:
    user_id: str
    plan: str
    currency: str
    period_start: int
    period_end: int
    units: int  # every usage feature's units
    estimated_cost: int  # the sum of each feature's cost, each rounded once
    events: int
    features: dict[str, int]  # units per feature


def top(billing, period: str = "current", by: str = "cost", limit: int = 10) -> list[TopCustomer]:
    """The customers with the most usage in their current (or previous) billing period, each
    in its own period (its anchor, its test clock); ranked within each currency."""
    if period not in PERIODS:
        raise ValidationError(f"--period must be one of {', '.join(PERIODS)}, not {period!r}")
    if by not in RANKINGS:
        raise ValidationError(f"--by must be one of {', '.join(RANKINGS)}, not {by!r}")
    ctx = billing.ctx
    subs, windows = [], []
    for uid in queries.active_customers(ctx.ledger):
        sub = ctx.subscription(uid)
        start, end = sub.period(ctx.now_for(uid))
        if period == "previous":
            start, end = period_at(sub.anchor, sub.interval, start - 1)
        subs.append((sub, start, end))
        windows += [(uid, k, start, end) for k, f in sub.plan.features.items() if f.track_usage]
    used = queries.usage_in_windows(ctx.ledger, windows)
    rows = []
    for sub, start, end in subs:
        usage = {k: used[(sub.user_id, k)] for k, f in sub.plan.features.items() if (sub.user_id, k) in used}
        if not usage:
            continue
        rows.append(TopCustomer(
            user_id=sub.user_id, plan=sub.plan.name, currency=sub.currency, period_start=start, period_end=end,
            units=sum(u for u, _ in usage.values()),
            estimated_cost=sum(cost(u, sub.plan.features[k].price_per_credit) for k, (u, _) in usage.items()),
            events=sum(n for _, n in usage.values()), features={k: u for k, (u, _) in usage.items()},
        ))
    rank = (lambda r: (-r.estimated_cost, -r.units, r.user_id)) if by == "cost" else (lambda r: (-r.units, r.user_id))
    ranked = sorted(rows, key=rank)
    # amounts in different currencies do not compare: rank within each (the top spender's first)
    out: list[TopCustomer] = []
    for currency in dict.fromkeys(r.currency for r in ranked):
        out += [r for r in ranked if r.currency == currency][:limit]
    return out
