"""``sync``'s second half: the live subscriptions follow ``billing.toml``.

For each active subscription of the ledger, its Stripe items are compared with the prices
the config asks for (found by the ``usagebill_key`` each price carries):

- a usage feature added to the plan: a metered item is added; usage is billed from that
  moment on (Stripe bills an item added mid-period from when it was added);
- a changed ``price_per_credit``: the metered item moves to the new price at once; Stripe
  bills the usage so far at the old price on an invoice item and the rest of the period at
  the new price, both on the next invoice (flexible billing mode, with prorations). Pending
  usage of the customer is delivered first, so the old price covers all of it;
- a changed base price: the item moves without prorations; the period already paid stays
  at the old price, the next one is billed at the new price.

The ledger records each metered price with the moment it took effect
(``billed_prices``), so ``summary`` estimates what the invoice will say. The moment also
goes into the Stripe item's metadata (``usagebill_price_since``): a sync interrupted between
Stripe and the ledger is completed by the next one.

On the invoice, the usage before a price change is an invoice item (``proration`` true,
``parent.subscription_details.subscription_item`` set, its line's ``pricing.price_details``
naming the old price and the feature's product): whoever counts billed units per feature
(reconcile) counts those lines by product, like the metered lines."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .. import billed_prices
from ..billing import Billing
from ..context import Subscription
from ..errors import UsagebillError
from ..ledger import accounts as ledger_accounts
from ..ledger import subscription_prices
from ..money import format_money, format_unit_price
from . import mapping
from .accounts import deliver_first, usage_prices
from .client import Connection, stripe_errors

SINCE = "usagebill_price_since"


@dataclass(frozen=True)
class Change:
    """One change to one live subscription."""

    verb: str  # add | move
    user_id: str
    stripe_subscription_id: str
    key: str  # the mapping key of the new price
    price_id: str  # "(new ...)" in a dry run, for a price sync would create
    item_id: str | None  # the item that moves (None for an add)
    metered: bool
    feature: str | None
    unit_price: Decimal  # the new unit price (minor units)
    detail: str  # for people: what changes and when it takes effect


def plan(billing: Billing, conn: Connection, ids: dict[str, str], *, dry_run: bool = False) -> list[Change]:
    """The changes that would bring every active subscription in line with the config, given
    the Stripe ids of the config's prices (``ids``: mapping key -> price id). Unless
    ``dry_run``, also completes the ledger's record of the prices Stripe bills (a subscription
    from before they were recorded; a sync cut short between Stripe and the ledger)."""
    changes: list[Change] = []
    config_plans = {p.key: p for p in billing.config.plans}
    rows = [r for r in ledger_accounts.active_subscriptions(billing.ledger)
            # ledger-only ones have nothing in Stripe; a plan gone was refused before (live_plans)
            if r["stripe_subscription_id"] and r["plan"] in config_plans]
    if not rows:
        return changes
    with stripe_errors("sync subscriptions"):
        # one list (100 a page, items included) rather than a retrieve per subscription
        live = {s.id: s for s in conn.client.v1.subscriptions.list(params={"limit": 100}).auto_paging_iter()
                if s.status in ("active", "past_due", "trialing")}
        for row in rows:
            remote = live.get(row["stripe_subscription_id"])
            if remote is not None:
                items = remote["items"].data
                if remote["items"].has_more:  # a list embeds the first 10
                    items = list(conn.client.v1.subscription_items.list(
                        params={"subscription": remote.id, "limit": 100}).auto_paging_iter())
                sub = billing.subscriptions.active(row["user_id"])
                changes += _changes(billing, sub, remote, items, config_plans[row["plan"]], ids, dry_run)
    return changes


def _changes(billing: Billing, sub: Subscription, remote, remote_items: list, plan, ids: dict[str, str],
             dry_run: bool) -> list[Change]:
    items = {mapping.key_of(item.price): item for item in remote_items if mapping.key_of(item.price)}
    recorded = subscription_prices.history(billing.ledger, sub.id)
    if not recorded and not dry_run:  # subscribed before the ledger recorded prices
        billed_prices.record(billing.ledger, sub, usage_prices(remote_items), remote.start_date)
        recorded = subscription_prices.history(billing.ledger, sub.id)
    out = []
    wanted = [(mapping.plan_price_key(plan.key, sub.currency, sub.interval), None)] + [
        (mapping.usage_price_key(plan.key, k, sub.currency, sub.interval), f)
        for k, f in plan.features.items() if f.track_usage
    ]
    for key, feature in wanted:
        price_id = ids.get(key)
        if price_id is None:
            continue
        item = items.get(key)
        metered = feature is not None
        unit = Decimal(feature.price_per_credit) if metered else Decimal(plan.price_for(sub.interval, sub.currency).amount)
        if item is not None and item.price.id == price_id:
            if metered and not dry_run and _last_price(recorded, feature.key) != unit:
                since = int((item.metadata.to_dict() if item.metadata else {}).get(SINCE, item.created))
                billed_prices.record(billing.ledger, sub, {feature.key: unit}, since)  # finish a sync cut short
            continue
        common = dict(user_id=sub.user_id, stripe_subscription_id=sub.stripe_subscription_id, key=key,
                      price_id=price_id, metered=metered, feature=feature.key if metered else None, unit_price=unit)
        if item is None:
            if metered:
                out.append(Change("add", item_id=None, detail=f"{feature.display_name} at "
                                  f"{format_unit_price(unit, sub.currency)} per unit, billed from now on", **common))
            continue
        old = Decimal(item.price.unit_amount_decimal if item.price.unit_amount_decimal is not None else item.price.unit_amount)
        if metered and getattr(remote.billing_mode, "type", "flexible") == "classic":
            raise UsagebillError(
                f"{sub.user_id}'s subscription {remote.id} is in Stripe's classic billing mode, which drops the usage "
                f"before a price change instead of billing it at the old price: migrate it to flexible billing mode "
                f"(Stripe's subscription migrate call), then run sync again"
            )
        if metered:
            detail = (f"{feature.display_name}: {format_unit_price(old, sub.currency)} -> "
                      f"{format_unit_price(unit, sub.currency)} per unit from now; the usage so far this period "
                      "is billed at the old price on the next invoice")
        else:
            detail = (f"{plan.name}: {format_money(int(old), sub.currency)} -> {format_money(int(unit), sub.currency)} "
                      f"per {sub.interval} from the next period (this one is already billed)")
        out.append(Change("move", item_id=item.id, detail=detail, **common))
    return out


def _last_price(recorded: dict, feature: str) -> Decimal | None:
    history = recorded.get(feature)
    return history[-1][1] if history else None


def apply(billing: Billing, conn: Connection, changes: list[Change]) -> None:
    """Make the changes in Stripe, then in the ledger, customer by customer. A customer whose
    metered price moves gets its pending usage delivered first."""
    delivered: set[str] = set()
    for ch in changes:
        if ch.metered and ch.user_id not in delivered:
            deliver_first(billing, conn, ch.user_id, "its prices were not changed")
            delivered.add(ch.user_id)
        sub = billing.subscriptions.require(ch.user_id)
        since = billing.now_for(ch.user_id)
        with stripe_errors(f"sync subscription of {ch.user_id}"):
            items = conn.client.v1.subscription_items
            if ch.verb == "add":
                items.create(
                    params={"subscription": ch.stripe_subscription_id, "price": ch.price_id,
                            "metadata": {SINCE: str(since)}},
                    options={"idempotency_key": f"usagebill-add-{ch.stripe_subscription_id}-{ch.price_id}-{since}"},
                )
            else:
                items.update(
                    ch.item_id,
                    params={"price": ch.price_id, "metadata": {SINCE: str(since)},
                            "proration_behavior": "create_prorations" if ch.metered else "none"},
                    # with the moment: a price may come back within Stripe's 24-hour key window
                    options={"idempotency_key": f"usagebill-move-{ch.item_id}-{ch.price_id}-{since}"},
                )
        if ch.metered:
            billed_prices.record(billing.ledger, sub, {ch.feature: ch.unit_price}, since)

