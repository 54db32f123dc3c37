"""What Stripe bills a subscription's usage at. ``sync`` moves a live subscription to a
changed ``price_per_credit`` at once: usage before the change is billed at the old price (an
invoice item on the next invoice), usage from the change on at the new price (the metered
line), as Stripe does for a flexible-billing-mode subscription. The ledger keeps each
subscription's prices over time (``ledger/subscription_prices.py``), so ``summary`` estimates
exactly what the invoice will say: one rounding per price, as Stripe rounds per line."""

from __future__ import annotations

from decimal import Decimal

from .context import Subscription
from .errors import ValidationError
from .ledger import Ledger, events, subscription_prices
from .money import cost


def segments(ledger: Ledger, sub: Subscription, key: str, start: int, end: int,
             config_price: Decimal) -> list[tuple[int, int, Decimal]]:
    """[(from, to, unit price)] covering what Stripe bills of [start, end). A subscription
    without recorded prices (made by the library alone, or before they were recorded) is billed
    at the config's price; one with recorded prices bills a feature only from the moment it
    was put on the subscription (none when sync has not added it yet)."""
    history = subscription_prices.history(ledger, sub.id)
    if not history:
        return [(start, end, config_price)]
    changes = history.get(key, [])
    out = []
    for i, (since, price) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else end
        lo, hi = max(since, start), min(until, end)
        if lo < hi:
            out.append((lo, hi, price))
    return out


def price_at(ledger: Ledger, sub: Subscription, key: str, t: int, config_price: Decimal) -> Decimal:
    """The unit price Stripe bills the feature's usage at second ``t`` (the config's when the
    subscription has no recorded prices)."""
    parts = segments(ledger, sub, key, t, t + 1, config_price)
    return parts[0][2] if parts else config_price


def estimate(ledger: Ledger, sub: Subscription, key: str, start: int, end: int,
             config_price: Decimal, known: tuple[int, int, int] | None = None) -> tuple[int, Decimal]:
    """(estimated cost in minor units, the unit price billed now) of [start, end).
    ``known``: (from, to, units) the caller has summed already, not read again."""
    parts = segments(ledger, sub, key, start, end, config_price)
    total = 0
    for lo, hi, price in parts:
        units = known[2] if known and known[:2] == (lo, hi) else events.usage_total(ledger, sub.user_id, key, lo, hi)[0]
        total += cost(units, price)
    return total, parts[-1][2] if parts else config_price


def record(ledger: Ledger, sub: Subscription, prices: dict[str, Decimal], since: int) -> None:
    """From ``since`` on, Stripe bills these features of ``sub`` at these unit prices."""
    with ledger.transaction(sub.user_id):
        for key, price in prices.items():
            subscription_prices.add(ledger, sub.id, key, price, since)


def check_billed(ledger: Ledger, sub: Subscription, key: str) -> None:
    """Usage of a feature that the customer's Stripe subscription does not bill yet (added to
    billing.toml, not synced) would be delivered and never invoiced: refuse it."""
    if sub.priced_since and key not in sub.priced_since:  # the features it has prices of
        raise ValidationError(
            f"usage feature {key!r} is not on {sub.user_id!r}'s Stripe subscription yet, so Stripe would not bill it: "
            "run usagebill sync (it adds new features to live subscriptions)"
        )
