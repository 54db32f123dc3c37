"""Lazy renewal without webhooks: on any read or write of a customer's credits or wallet,
every period of its subscription that has started since the last one applied gets its
allocation, once per (customer, feature or wallet, period start): idle periods included, a
re-subscription within a period excluded (see allocations.py). Granted credits whose expiry
has passed expire here too."""

from __future__ import annotations

from typing import Iterator, NamedTuple

from . import allocations
from .balances import CREDITS, WALLET, append
from .config import Allocation
from .context import Context, Subscription
from .ledger import balances as journal

MAX_PERIODS = 10_000  # periods applied in one go (200 years of weeks): a bound, not a limit met


class Target(NamedTuple):
    table: str
    unit: str  # feature key or currency
    name: str  # credits:<feature> | wallet
    grant: Allocation


def targets(sub: Subscription) -> Iterator[Target]:
    """Every allocation the plan grants."""
    for key, feature in sub.plan.features.items():
        if feature.credits is not None:
            yield Target(CREDITS, key, allocations.credits_target(key), feature.credits)
    if sub.plan.wallet is not None:
        yield Target(WALLET, sub.currency, allocations.WALLET_TARGET, sub.plan.wallet)


def periods_due(sub: Subscription, last_start: int | None, now: int) -> Iterator[tuple[tuple[int, int], bool]]:
    """(period, is the subscription's first) for each period started by ``now`` after the one
    starting at ``last_start`` (all of them from the first when None)."""
    first = sub.period(sub.created_at)
    period = first if last_start is None else _next(sub, sub.period(last_start))
    for _ in range(MAX_PERIODS):
        if period is None or period[0] > now:
            return
        yield period, period == first
        period = _next(sub, period)


def _next(sub: Subscription, period: tuple[int, int]) -> tuple[int, int] | None:
    following = sub.period(period[1])
    return following if following[0] > period[0] else None  # a mirrored period out of step: stop


def expire_grants(ctx: Context, user_id: str, now: int) -> None:
    """Granted credits whose expiry has passed: what is left of each lot expires."""
    for lot in journal.grants_due_to_expire(ctx.ledger, user_id, now):
        journal.set_grant_remaining(ctx.ledger, lot["id"], 0)
        append(ctx.ledger, CREDITS, user_id, lot["feature"], -lot["remaining"], "grant_expired", now,
               expires_at=lot["expires_at"])


def refresh(ctx: Context, user_id: str) -> None:
    """Apply what is due for the customer: expiries, then every period's allocations."""
    if ctx.ledger.in_transaction:  # the transaction keeps the snapshot already
        _refresh(ctx, user_id)
        return
    with ctx.snapshots_of([user_id]):  # one read of the snapshot for the checks below, not four
        _refresh(ctx, user_id)


def _refresh(ctx: Context, user_id: str) -> None:
    ledger = ctx.ledger
    now = ctx.now_for(user_id)
    # what is due, from the customer's snapshot (usagebill.context): no statement of its own
    next_expiry = ctx.next_expiry(user_id)
    expiring = next_expiry is not None and next_expiry <= now
    sub = ctx.subscription(user_id)
    wanted = list(targets(sub)) if sub is not None else []
    if wanted:
        # renewed for this period when its latest renewal is this period's (periods are applied
        # in order); a latest renewal after this period's start (a re-subscription with another
        # anchor) is looked at closely below, as a renewal not yet applied would be
        start, latest = sub.period(now)[0], ctx.renewed(user_id)
        wanted = [t for t in wanted if latest.get(t.name) != start]
    if not expiring and not wanted:
        return  # the common case: a read, no write transaction
    with ledger.transaction(user_id):
        if expiring:
            expire_grants(ctx, user_id, now)
        for t in wanted:
            last = journal.last_renewal_start(ledger, user_id, t.name, sub.id)
            for period, first in periods_due(sub, last, now):
                allocations.renew(ledger, t.table, user_id, t.unit, t.name, t.grant, period, sub.id, now, first=first)
