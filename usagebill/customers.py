"""Customers in the ledger, and the ledger's view of test-clock time."""

from __future__ import annotations

from dataclasses import dataclass

from .context import Context
from .errors import ValidationError
from .ledger import accounts, outbox
from .rules import check_email, check_user_id
from .timeparse import iso


@dataclass(frozen=True)
class Customer:
    user_id: str
    email: str | None
    stripe_customer_id: str | None
    test_clock: str | None
    created_at: int
    created: bool = False  # False when add() found it already there
    removed_at: int | None = None


def _customer(row, created=False) -> Customer:
    return Customer(
        user_id=row["user_id"],
        email=row["email"],
        stripe_customer_id=row["stripe_customer_id"],
        test_clock=row["test_clock"],
        created_at=row["created_at"],
        created=created,
        removed_at=row["removed_at"],
    )


@dataclass(frozen=True)
class Removal:
    user_id: str
    deleted: bool  # True: no history, the row is gone; False: retired, its history kept
    history: dict  # what the ledger keeps: subscriptions, usage events, credit and wallet rows


class Customers:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def add(
        self, user_id: str, email: str | None = None, test_clock: str | None = None, stripe_customer_id: str | None = None
    ) -> Customer:
        """Add a customer; adding one that exists with the same details returns it unchanged
        (safe to repeat), with other details is an error."""
        check_user_id(user_id)
        check_email(email)
        ledger = self.ctx.ledger
        with ledger.transaction(user_id):
            row = accounts.get_customer(ledger, user_id)
            if row is not None and row["removed_at"] is not None:
                raise ValidationError(
                    f"customer {user_id!r} was removed on {iso(row['removed_at'])} and its history stays under "
                    "that id: add the customer under another user id"
                )
            if row is not None:
                for field, value in (("email", email), ("test_clock", test_clock), ("stripe_customer_id", stripe_customer_id)):
                    if value is not None and row[field] != value:
                        raise ValidationError(
                            f"customer {user_id!r} exists with {field} {row[field]!r}, not {value!r}"
                        )
                return _customer(row)
            accounts.insert_customer(ledger, user_id, email, stripe_customer_id, test_clock, self.ctx.clock())
            return _customer(accounts.get_customer(ledger, user_id), created=True)

    def get(self, user_id: str) -> Customer:
        return _customer(self.ctx.customer(user_id))

    def find(self, user_id: str) -> Customer | None:
        row = accounts.get_customer(self.ctx.ledger, check_user_id(user_id))
        return None if row is None else _customer(row)

    def list(self) -> list[Customer]:
        """The customers, without the removed ones."""
        return [_customer(r) for r in accounts.list_customers(self.ctx.ledger) if r["removed_at"] is None]

    def update(self, user_id: str, *, email: str | None = None, stripe_customer_id: str | None = None) -> Customer:
        """Change a customer's e-mail or Stripe id in the ledger (``gateway.accounts.update_customer``
        changes Stripe first, then calls this)."""
        check_email(email)
        with self.ctx.ledger.transaction(user_id):
            self.ctx.customer(user_id)
            if email is not None:
                accounts.set_email(self.ctx.ledger, user_id, email)
            if stripe_customer_id is not None:
                accounts.set_stripe_customer(self.ctx.ledger, user_id, stripe_customer_id)
        return self.get(user_id)

    def remove(self, user_id: str) -> Removal:
        """Remove a customer: refused while it has an active subscription or usage not yet
        delivered to Stripe. A customer with no
        history at all is deleted (its user id is free again); one with history is retired: its
        subscriptions, usage events, credit and wallet rows stay in the ledger (usage events are
        immutable, and reconcile checks closed periods against them), it leaves ``list``, and
        its user id cannot be added again. Stripe is not touched: the Stripe customer and its
        invoices stay as they are."""
        ctx = self.ctx
        with ctx.ledger.transaction(user_id):
            ctx.customer(user_id)
            sub = ctx.subscription(user_id)
            if sub is not None:
                raise ValidationError(
                    f"customer {user_id!r} has an active {sub.plan.name!r} subscription: cancel it first "
                    f"(usagebill cancel {user_id})"
                )
            pending = self.pending_usage(user_id)
            if pending:
                raise ValidationError(
                    f"customer {user_id!r} has {pending} usage event(s) not delivered to Stripe yet: "
                    f"deliver them first (usagebill push {user_id})"
                )
            history = accounts.customer_history(ctx.ledger, user_id)
            if not any(history.values()):
                accounts.delete_customer(ctx.ledger, user_id)
                return Removal(user_id, True, history)
            accounts.retire_customer(ctx.ledger, user_id, ctx.clock())
            return Removal(user_id, False, history)

    def pending_usage(self, user_id: str) -> int:
        """The customer's usage events not delivered to Stripe yet."""
        return outbox.count_pending(self.ctx.ledger, outbox.Scope(user_id=user_id))

    def forget_new(self, user_id: str) -> None:
        """Take out a customer added a moment ago whose Stripe side could not be made."""
        with self.ctx.ledger.transaction(user_id):
            if self.ctx.subscription(user_id) is None:
                self.remove(user_id)

    def link_stripe(self, user_id: str, stripe_customer_id: str) -> None:
        with self.ctx.ledger.transaction(user_id):
            self.ctx.customer(user_id)
            accounts.set_stripe_customer(self.ctx.ledger, user_id, stripe_customer_id)

    def set_clock_time(self, clock_id: str, frozen_time: int, name: str | None = None) -> None:
        """Record a test clock's current time (after creating, reading or advancing it)."""
        with self.ctx.ledger.transaction():
            accounts.upsert_clock(self.ctx.ledger, clock_id, frozen_time, name, self.ctx.clock())
