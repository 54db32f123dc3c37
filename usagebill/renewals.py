"""Lazy renewal without webhooks: on any read or write of a customer's credits or wallet, the
plan allocations for the customer's current period are applied if they have not been yet,
once per (customer, feature or wallet, period start)."""

from __future__ import annotations

from .balances import CREDITS, WALLET, renew
from .context import Context, Subscription
from .ledger import balances as journal


def targets(sub: Subscription):
    """(table, unit, target, allocation) for every allocation the plan grants."""
    for key, feature in sub.plan.features.items():
        if feature.credits is not None:
            yield CREDITS, key, f"credits:{key}", feature.credits
    if sub.plan.wallet is not None:
        yield WALLET, sub.currency, "wallet", sub.plan.wallet


def refresh(ctx: Context, user_id: str) -> None:
    """Apply the current period's allocations for the customer, if due."""
    sub = ctx.subscription(user_id)
    if sub is None:
        return
    wanted = list(targets(sub))
    if not wanted:
        return
    now = ctx.now_for(user_id)
    start, _ = sub.period(now)
    done = journal.renewed_targets(ctx.ledger, user_id, start)
    if all(t in done for _, _, t, _ in wanted):
        return  # the common case: a read, no write transaction
    first_start = sub.period(sub.anchor)[0]
    with ctx.ledger.transaction():
        for table, unit, target, grant in wanted:
            renew(ctx.ledger, table, user_id, unit, target, grant, start, now, first=start == first_start)
