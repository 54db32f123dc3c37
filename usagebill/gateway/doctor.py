"""``usagebill doctor``: the ledger's self-checks (``ledger.checks``), then whether what the
ledger points at in Stripe is still there: every mapped price, product and meter live, every
active subscription still active."""

from __future__ import annotations

from ..billing import Billing
from ..ledger import checks
from .client import Connection

LIVE_SUBSCRIPTION = ("active", "trialing", "past_due")


def _retrieve(conn: Connection, key: str, stripe_id: str):
    c = conn.client.v1
    kind = key.split(":", 1)[0]
    if kind == "price":
        return c.prices.retrieve(stripe_id), lambda o: bool(o.active)
    if kind == "product":
        return c.products.retrieve(stripe_id), lambda o: bool(o.active)
    if kind == "meter":
        return c.billing.meters.retrieve(stripe_id), lambda o: o.status == "active"
    return None, None


def stripe_findings(billing: Billing, conn: Connection) -> list[str]:
    import stripe

    findings = []
    mapped, subscriptions = checks.stripe_ids(billing.ledger)
    for key, stripe_id in mapped:
        try:
            obj, live = _retrieve(conn, key, stripe_id)
        except stripe.InvalidRequestError as e:
            findings.append(f"{key} points at {stripe_id}, which Stripe does not have ({e.user_message or e}); run usagebill sync")
            continue
        if obj is not None and not live(obj):
            findings.append(f"{key} points at {stripe_id}, which is archived in Stripe; run usagebill sync")
    for user_id, sub_id in subscriptions:
        try:
            status = conn.client.v1.subscriptions.retrieve(sub_id).status
        except stripe.InvalidRequestError as e:
            findings.append(f"{user_id}'s subscription {sub_id} is not in Stripe ({e.user_message or e})")
            continue
        if status not in LIVE_SUBSCRIPTION:
            findings.append(f"{user_id}'s subscription {sub_id} is active in the ledger but {status} in Stripe")
    return findings


def doctor(billing: Billing, conn: Connection | None) -> list[str]:
    """Every finding, the ledger's first; ``conn`` None checks the ledger alone."""
    findings = checks.run(billing.ledger)
    if conn is not None:
        from .client import stripe_errors

        with stripe_errors("doctor"):
            findings.extend(stripe_findings(billing, conn))
    return findings
