"""Invoices as Stripe makes them: list, show (with every line), and preview the upcoming one."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..billing import Billing
from ..errors import NotFoundError
from ..ledger import closing as period_invoices
from ..ledger.closing import PeriodInvoice
from . import mapping
from .client import Connection, stripe_errors


@dataclass(frozen=True)
class Line:
    description: str  # the product's name ("API Calls"), as a person reads the invoice
    stripe_description: str | None
    quantity: int
    unit_amount: Decimal  # minor units per unit
    amount: int
    period_start: int | None
    period_end: int | None


@dataclass(frozen=True)
class Invoice:
    id: str | None  # None for a preview
    number: str | None
    status: str | None
    billing_reason: str | None
    customer: str
    currency: str
    subtotal: int
    total: int
    amount_due: int
    created: int | None
    period_start: int | None
    period_end: int | None
    lines: list[Line]


def _product_names(billing: Billing) -> dict[str, str]:
    """Stripe product id -> the name the config gives it (no extra API call per line)."""
    names = {}
    for plan in billing.config.plans:
        pid = mapping.get(billing.ledger, mapping.plan_product_key(plan.key))
        if pid:
            names[pid] = plan.name
        for key, f in plan.features.items():
            pid = mapping.get(billing.ledger, mapping.feature_product_key(key))
            if pid:
                names[pid] = f.display_name
    return names


def _line(obj, names: dict[str, str]) -> Line:
    quantity = obj.quantity or 0
    product = unit = None
    pricing = getattr(obj, "pricing", None)
    details = getattr(pricing, "price_details", None) if pricing is not None else None
    if details is not None:
        product = details.product
    if pricing is not None and getattr(pricing, "unit_amount_decimal", None) is not None:
        unit = Decimal(pricing.unit_amount_decimal)
    elif getattr(obj, "price", None) is not None:
        price = obj.price
        product = product or (price.product if isinstance(price.product, str) else price.product.id)
        unit = Decimal(price.unit_amount_decimal if price.unit_amount_decimal is not None else price.unit_amount)
    if unit is None:
        unit = Decimal(obj.amount) / quantity if quantity else Decimal(obj.amount)
    period = getattr(obj, "period", None)
    return Line(
        description=names.get(product, obj.description or ""),
        stripe_description=obj.description,
        quantity=quantity,
        unit_amount=unit,
        amount=obj.amount,
        period_start=period.start if period else None,
        period_end=period.end if period else None,
    )


def _invoice(inv, lines, names) -> Invoice:
    return Invoice(
        id=getattr(inv, "id", None),
        number=inv.number,
        status=inv.status,
        billing_reason=inv.billing_reason,
        customer=inv.customer if isinstance(inv.customer, str) else inv.customer.id,
        currency=inv.currency,
        subtotal=inv.subtotal,
        total=inv.total,
        amount_due=inv.amount_due,
        created=inv.created,
        period_start=inv.period_start,
        period_end=inv.period_end,
        lines=[_line(x, names) for x in lines],
    )


def _stripe_customer(billing: Billing, user_id: str) -> str:
    c = billing.customers.get(user_id)
    if not c.stripe_customer_id:
        raise NotFoundError(f"customer {user_id!r} is not in Stripe: run usagebill customers add {user_id}")
    return c.stripe_customer_id


def list_invoices(billing: Billing, conn: Connection, user_id: str) -> list[Invoice]:
    """Every invoice of the customer, newest first, with its lines."""
    customer = _stripe_customer(billing, user_id)
    names = _product_names(billing)
    with stripe_errors(f"invoices of {user_id}"):
        out = []
        for inv in conn.client.v1.invoices.list(params={"customer": customer, "limit": 100}).auto_paging_iter():
            out.append(_invoice(inv, _all_lines(conn, inv), names))
        return out


def _all_lines(conn: Connection, inv) -> list:
    if not inv.lines.has_more:
        return list(inv.lines.data)
    return list(conn.client.v1.invoices.line_items.list(inv.id, params={"limit": 100}).auto_paging_iter())


def get_invoice(billing: Billing, conn: Connection, invoice_id: str) -> Invoice:
    with stripe_errors(f"invoice {invoice_id}", typed_ids=(invoice_id,)):
        inv = conn.client.v1.invoices.retrieve(invoice_id)
        return _invoice(inv, _all_lines(conn, inv), _product_names(billing))


def preview_invoice(billing: Billing, conn: Connection, user_id: str) -> Invoice:
    """The upcoming invoice of the customer's subscription, with the usage so far."""
    customer = _stripe_customer(billing, user_id)
    sub = billing.subscriptions.get(user_id)
    params: dict = {"customer": customer}
    if sub is not None and sub.stripe_subscription_id:
        params["subscription"] = sub.stripe_subscription_id
    with stripe_errors(f"preview invoice of {user_id}"):
        inv = conn.client.v1.invoices.create_preview(params=params)
        return _invoice(inv, list(inv.lines.auto_paging_iter()) if inv.lines.has_more else list(inv.lines.data),
                        _product_names(billing))


def mirror_period_invoices(billing: Billing, conn: Connection, sub) -> list[PeriodInvoice]:
    """Mirror into the ledger Stripe's invoices of a subscription's billing periods (which
    invoice bills each period's usage, and whether it is final yet): the closing rule and
    reconcile read them (``usagebill.closing``). The subscription's first invoice bills no
    usage (its base price only) and is not a period's."""
    if not sub.stripe_subscription_id:
        return []
    with stripe_errors(f"invoices of {sub.user_id}"):
        listed = conn.client.v1.invoices.list(params={"subscription": sub.stripe_subscription_id, "limit": 100})
        found = [p for p in (period_invoice(sub.id, inv) for inv in listed.auto_paging_iter()) if p is not None]
    period_invoices.put(billing.ledger, found)
    return found


def period_invoice(subscription_id: int, inv) -> PeriodInvoice | None:
    """The billing period an invoice of the subscription bills the usage of, or None for an
    invoice that bills no period's usage. ``inv`` is the SDK's Invoice or the same object as
    plain JSON (both are read by subscript)."""
    # renewals, and the final invoice of a cancel (which may be zero-length: a cancel at the
    # very second a period began bills that second)
    if inv["billing_reason"] != "subscription_cycle" or inv["period_end"] < inv["period_start"]:
        return None
    finalized = inv["status_transitions"]["finalized_at"] if inv["status"] != "draft" else None
    if inv["status"] != "draft" and finalized is None:
        finalized = inv["created"]  # final without a recorded time: final all the same
    return PeriodInvoice(subscription_id, inv["period_start"], inv["period_end"], inv["id"], inv["status"], finalized)
