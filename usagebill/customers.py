"""Customers in the ledger, and the ledger's view of test-clock time."""

from __future__ import annotations

from dataclasses import dataclass

from .context import Context
from .errors import ValidationError
from .ledger import accounts
from .rules import check_user_id


@dataclass(frozen=True)
class Customer:
    user_id: str
    email: str | None
    stripe_customer_id: str | None
    test_clock: str | None
    created_at: int
    created: bool = False  # False when add() found it already there


def _customer(row, created=False) -> Customer:
    return Customer(
        user_id=row["user_id"],
        email=row["email"],
        stripe_customer_id=row["stripe_customer_id"],
        test_clock=row["test_clock"],
        created_at=row["created_at"],
        created=created,
    )


class Customers:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def add(
        self, user_id: str, email: str | None = None, test_clock: str | None = None, stripe_customer_id: str | None = None
    ) -> Customer:
        """Add a customer; adding one that exists with the same details returns it unchanged
        (safe to repeat), with other details is an error."""
        check_user_id(user_id)
        if email is not None and ("@" not in email or len(email) > 512 or email != email.strip()):
            raise ValidationError(f"not an e-mail address: {email!r}")
        ledger = self.ctx.ledger
        with ledger.transaction():
            row = accounts.get_customer(ledger, user_id)
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

    def list(self) -> list[Customer]:
        return [_customer(r) for r in accounts.list_customers(self.ctx.ledger)]

    def link_stripe(self, user_id: str, stripe_customer_id: str) -> None:
        with self.ctx.ledger.transaction():
            self.ctx.customer(user_id)
            accounts.set_stripe_customer(self.ctx.ledger, user_id, stripe_customer_id)

    def set_clock_time(self, clock_id: str, frozen_time: int, name: str | None = None) -> None:
        """Record a test clock's current time (after creating, reading or advancing it)."""
        with self.ctx.ledger.transaction():
            accounts.upsert_clock(self.ctx.ledger, clock_id, frozen_time, name, self.ctx.clock())
