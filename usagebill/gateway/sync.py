"""``sync``: billing.toml -> Stripe Products, Prices and Billing Meters, idempotently.

Objects are found again by lookup key (prices), ``metadata.usagebill_key`` (products) and
event name (meters) — never by name alone — and every list is paginated. An unchanged config
makes no write call. A changed amount makes a new Price that takes over the lookup key
(``transfer_lookup_key``) and archives the old one; what the config no longer has is archived.
Then the live subscriptions follow (``live_subscriptions``): new usage features are added to
them, changed prices replace the old ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from ..billing import Billing
from ..config import Config
from ..errors import UsagebillError
from .. import live_plans
from . import live_subscriptions, mapping
from .client import Connection, stripe_errors

LOOKUP_PREFIX = "usagebill:"


@dataclass(frozen=True)
class Action:
    verb: str  # create | update | archive | reactivate | replace; for a subscription: add | move
    kind: str  # product | price | meter | subscription
    key: str  # the mapping key (price:plan:pro:usd:month ...); for a subscription, the user id
    detail: str = ""
    stripe_id: str | None = None


@dataclass
class SyncResult:
    actions: list[Action] = field(default_factory=list)
    dry_run: bool = False

    @property
    def writes(self) -> int:
        return len(self.actions)


@dataclass
class _Want:
    """One object the config asks for."""

    kind: str
    key: str
    fields: dict  # what sync manages, compared with Stripe's copy
    create: Callable[[dict], dict]  # params to create it, given the ids made so far


def _lookup_key(key: str) -> str:
    return LOOKUP_PREFIX + key.split(":", 1)[1]  # price:plan:pro:usd:month -> usagebill:plan:pro:usd:month


def wanted(config: Config) -> list[_Want]:
    """Everything the config needs in Stripe, in dependency order."""
    out: list[_Want] = []
    usage_features: dict[str, Any] = {}
    for plan in config.plans:
        for key, f in plan.features.items():
            if f.track_usage:
                usage_features.setdefault(key, f)
    for key, f in usage_features.items():
        out.append(_Want("meter", mapping.meter_key(key), {
            "display_name": f.display_name, "event_name": mapping.event_name(key), "formula": "sum",
        }, lambda ids, key=key, f=f: {
            "display_name": f.display_name,
            "event_name": mapping.event_name(key),
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        }))
        pkey = mapping.feature_product_key(key)
        out.append(_Want("product", pkey, {"name": f.display_name, "active": True},
                         lambda ids, f=f, pkey=pkey: {"name": f.display_name, "metadata": {"usagebill_key": pkey}}))
    for plan in config.plans:
        pkey = mapping.plan_product_key(plan.key)
        out.append(_Want("product", pkey, {"name": plan.name, "active": True},
                         lambda ids, plan=plan, pkey=pkey: {"name": plan.name, "metadata": {"usagebill_key": pkey}}))
        for price in plan.prices:
            key = mapping.plan_price_key(plan.key, price.currency, price.interval)
            out.append(_Want("price", key, {
                "unit_amount_decimal": str(Decimal(price.amount)), "currency": price.currency,
                "interval": price.interval, "usage_type": "licensed", "product": pkey, "nickname": plan.name,
            }, lambda ids, price=price, key=key, pkey=pkey, plan=plan: {
                "unit_amount": price.amount, "currency": price.currency, "product": ids[pkey],
                "recurring": {"interval": price.interval, "usage_type": "licensed"},
                "lookup_key": _lookup_key(key), "nickname": plan.name, "metadata": {"usagebill_key": key},
            }))
            for fkey, f in plan.features.items():
                if not f.track_usage:
                    continue
                key = mapping.usage_price_key(plan.key, fkey, price.currency, price.interval)
                fpkey, mkey = mapping.feature_product_key(fkey), mapping.meter_key(fkey)
                out.append(_Want("price", key, {
                    "unit_amount_decimal": str(f.price_per_credit), "currency": price.currency,
                    "interval": price.interval, "usage_type": "metered", "product": fpkey, "meter": mkey,
                    "nickname": f"{plan.name}: {f.display_name}",
                }, lambda ids, price=price, key=key, f=f, fpkey=fpkey, mkey=mkey, plan=plan: {
                    "unit_amount_decimal": str(f.price_per_credit), "currency": price.currency, "product": ids[fpkey],
                    "recurring": {"interval": price.interval, "usage_type": "metered", "meter": ids[mkey]},
                    "lookup_key": _lookup_key(key), "nickname": f"{plan.name}: {f.display_name}",
                    "metadata": {"usagebill_key": key},
                }))
    return out


class _Stripe:
    """What Stripe has now: every product, price and meter, listed once (paginated)."""

    def __init__(self, conn: Connection):
        c = conn.client.v1
        self.products = {mapping.key_of(p): p for p in _every(c.products.list, {"limit": 100}) if mapping.key_of(p)}
        self.prices: dict[str, Any] = {}
        self.our_prices: list[Any] = []
        for p in _every(c.prices.list, {"limit": 100}):
            key = mapping.key_of(p)
            if key:
                self.our_prices.append(p)
            if p.lookup_key and p.lookup_key.startswith(LOOKUP_PREFIX) and key:
                self.prices[key] = p
        self.meters = {m.event_name: m for m in _every(c.billing.meters.list, {"limit": 100})}
        self.ids: dict[str, str] = {}


def _every(list_fn, params) -> list:
    return list(list_fn(params=params).auto_paging_iter())


def _price_fields(p, product_keys: dict[str, str], meter_keys: dict[str, str]) -> dict:
    rec = p.recurring
    fields = {
        "unit_amount_decimal": str(Decimal(p.unit_amount_decimal if p.unit_amount_decimal is not None else p.unit_amount)),
        "currency": p.currency,
        "interval": rec.interval if rec else None,
        "usage_type": rec.usage_type if rec else None,
        "product": product_keys.get(p.product if isinstance(p.product, str) else p.product.id),
        "nickname": p.nickname,
    }
    if rec and rec.usage_type == "metered":
        fields["meter"] = meter_keys.get(rec.meter)
    return fields


def _same_price(want: dict, have: dict) -> bool:
    return all(
        (Decimal(want[k]) == Decimal(have[k]) if k == "unit_amount_decimal" else want[k] == have.get(k))
        for k in want if k != "nickname"
    )


def sync(billing: Billing, conn: Connection, *, dry_run: bool = False) -> SyncResult:
    """Bring Stripe's catalogue, then the live subscriptions, in line with ``billing.config``
    (see ``live_subscriptions`` for what a subscription gets and when a new price takes
    effect). Refused, before any write, when the config drops what active subscriptions use.
    For a script or a test: change the config object (``billing.config = ...``) and call this."""
    live_plans.check(billing.config, billing.ledger)
    result = SyncResult(dry_run=dry_run)
    with stripe_errors("sync"):
        have = _Stripe(conn)
        _apply(billing, conn, have, wanted(billing.config), result)
    changes = live_subscriptions.plan(billing, conn, have.ids, dry_run=dry_run)
    if not dry_run:
        live_subscriptions.apply(billing, conn, changes)
    result.actions += [Action(ch.verb, "subscription", ch.user_id, ch.detail, ch.stripe_subscription_id) for ch in changes]
    return result


def _apply(billing: Billing, conn: Connection, have: _Stripe, wants: list[_Want], result: SyncResult) -> None:
    c = conn.client.v1
    ids = have.ids
    dry = result.dry_run

    def act(verb, kind, key, detail="", call=None):
        stripe_id = None
        if not dry and call is not None:
            stripe_id = call()
        result.actions.append(Action(verb, kind, key, detail, stripe_id))
        return stripe_id

    wanted_keys = {w.key for w in wants}
    for w in wants:
        if w.kind == "meter":
            m = have.meters.get(w.fields["event_name"])
            if m is None:
                ids[w.key] = act("create", "meter", w.key, f"event {w.fields['event_name']}",
                                 lambda: c.billing.meters.create(params=w.create(ids)).id) or f"(new {w.key})"
            else:
                if m.default_aggregation.formula != "sum" or m.customer_mapping.event_payload_key != "stripe_customer_id" \
                        or m.value_settings.event_payload_key != "value":
                    raise UsagebillError(
                        f"Stripe already has a meter for event {m.event_name!r} ({m.id}) that usagebill cannot use "
                        f"(formula {m.default_aggregation.formula}); rename the feature or remove that meter"
                    )
                ids[w.key] = m.id
                if m.status != "active":
                    act("reactivate", "meter", w.key, m.id, lambda: c.billing.meters.reactivate(m.id).id)
                if m.display_name != w.fields["display_name"]:
                    act("update", "meter", w.key, f"display name {m.display_name!r} -> {w.fields['display_name']!r}",
                        lambda: c.billing.meters.update(m.id, params={"display_name": w.fields["display_name"]}).id)
        elif w.kind == "product":
            p = have.products.get(w.key)
            if p is None:
                ids[w.key] = act("create", "product", w.key, w.fields["name"],
                                 lambda: c.products.create(params=w.create(ids)).id) or f"(new {w.key})"
            else:
                ids[w.key] = p.id
                changes = {}
                if p.name != w.fields["name"]:
                    changes["name"] = w.fields["name"]
                if not p.active:
                    changes["active"] = True
                if changes:
                    act("update", "product", w.key, ", ".join(f"{k} -> {v!r}" for k, v in changes.items()),
                        lambda: c.products.update(p.id, params=changes).id)
        else:
            _apply_price(c, have, w, ids, act)
        if not dry and not ids[w.key].startswith("(new"):
            mapping.put(billing.ledger, w.key, ids[w.key], w.fields)
    _archive(c, billing, have, wanted_keys, act, dry)


def _apply_price(c, have: _Stripe, w: _Want, ids: dict, act) -> None:
    p = have.prices.get(w.key)
    product_keys = {v: k for k, v in ids.items() if k.startswith("product:")}
    meter_keys = {v: k for k, v in ids.items() if k.startswith("meter:")}
    if p is None:
        ids[w.key] = act("create", "price", w.key, _describe_price(w.fields),
                         lambda: c.prices.create(params=w.create(ids)).id) or f"(new {w.key})"
        return
    have_fields = _price_fields(p, product_keys, meter_keys)
    if not _same_price(w.fields, have_fields):
        # price fields are immutable in Stripe: a new price takes over the lookup key
        ids[w.key] = act(
            "replace", "price", w.key, f"{_describe_price(have_fields)} -> {_describe_price(w.fields)}",
            lambda: _replace_price(c, p, w.create(ids)),
        ) or f"(new {w.key})"
        return
    ids[w.key] = p.id
    changes = {}
    if not p.active:
        changes["active"] = True
    if p.nickname != w.fields["nickname"]:
        changes["nickname"] = w.fields["nickname"]
    if changes:
        act("update", "price", w.key, ", ".join(f"{k} -> {v!r}" for k, v in changes.items()),
            lambda: c.prices.update(p.id, params=changes).id)


def _replace_price(c, old, params: dict) -> str:
    new = c.prices.create(params={**params, "transfer_lookup_key": True})
    c.prices.update(old.id, params={"active": False})
    return new.id


def _describe_price(f: dict) -> str:
    kind = "per unit, metered" if f.get("usage_type") == "metered" else "licensed"
    return f"{f['unit_amount_decimal']} {f['currency']}/{f['interval']} {kind}"


def _archive(c, billing: Billing, have: _Stripe, wanted_keys: set[str], act, dry: bool) -> None:
    """Deactivate what the config no longer has (our prices, products and meters), and
    leftovers: an active price of ours that is not the one holding its lookup key."""
    for p in have.our_prices:
        key = mapping.key_of(p)
        if p.active and (key not in wanted_keys or have.prices.get(key) is not p):
            act("archive", "price", key, p.id, lambda p=p: c.prices.update(p.id, params={"active": False}).id)
    for key, p in have.products.items():
        if key not in wanted_keys and p.active:
            act("archive", "product", key, p.id, lambda p=p: c.products.update(p.id, params={"active": False}).id)
    for key, meter_id in mapping.all_keys(billing.ledger, "meter:").items():
        if key in wanted_keys:
            continue
        m = next((m for m in have.meters.values() if m.id == meter_id), None)
        if m is not None and m.status == "active":
            act("archive", "meter", key, m.id, lambda m=m: c.billing.meters.deactivate(m.id).id)
    if not dry:
        for key in mapping.all_keys(billing.ledger):
            if key not in wanted_keys and not key.startswith("meter:"):
                mapping.forget(billing.ledger, key)
