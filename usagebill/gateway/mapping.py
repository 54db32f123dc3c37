"""Which Stripe object stands for which piece of the config: the mapping keys (one place, so
sync, subscribe and delivery agree). The SQL that stores the mapping is in ``ledger/mapping.py``;
its functions are re-exported here so the gateway reads ``mapping.get(ledger, key)``."""

from __future__ import annotations

from ..ledger.mapping import all_keys, bind, fingerprint, forget, get, put

__all__ = [
    "all_keys", "bind", "fingerprint", "forget", "get", "put", "key_of",
    "meter_key", "feature_product_key", "plan_product_key", "plan_price_key", "usage_price_key", "event_name",
]


def key_of(obj) -> str | None:
    """Our mapping key of a Stripe object (product, price), kept in its metadata."""
    meta = obj.metadata.to_dict() if obj.metadata is not None else {}
    return meta.get("usagebill_key")


def meter_key(feature: str) -> str:
    return f"meter:{feature}"


def feature_product_key(feature: str) -> str:
    return f"product:feature:{feature}"


def plan_product_key(plan: str) -> str:
    return f"product:plan:{plan}"


def plan_price_key(plan: str, currency: str, interval: str) -> str:
    return f"price:plan:{plan}:{currency}:{interval}"


def usage_price_key(plan: str, feature: str, currency: str, interval: str) -> str:
    return f"price:usage:{plan}:{feature}:{currency}:{interval}"


def event_name(feature: str) -> str:
    """The Billing Meter event name of a usage feature: the feature key itself (keys are
    lower-case letters, digits and _; unique in the config, so no two features collide)."""
    return feature
