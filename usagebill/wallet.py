"""Pre-paid money, in minor units of one currency per wallet. It can go negative.

Units paid from the wallet cost exactly their price: a charge rounds its cost *up* to a whole
minor unit and carries what it paid ahead (less than one minor unit) to the next charge of
the same feature. So however the units are split, the wallet's total debit for N units is
N x price rounded up, never a unit free (at 0.4 cents a unit, the first unit takes 1 cent
and the next two are paid by it)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from decimal import Decimal, localcontext

from . import allocations, balances
from .balances import WALLET as TABLE
from .balances import Entry
from .context import Context
from .errors import ValidationError
from .idempotency import remember, replay
from .ledger import balances as journal
from .money import CURRENCIES, PRECISION
from .renewals import refresh
from .rules import check_key, check_money
from .timeparse import parse_time



@dataclass(frozen=True)
class WalletChange:
    user_id: str
    currency: str
    delta: int
    balance: int
    replayed: bool = False


@dataclass(frozen=True)
class WalletBalance:
    user_id: str
    currency: str | None
    balance: int
    included: int = 0  # what is left of the plan's wallet allocation (part of the balance)


def wallet_currency(ctx: Context, user_id: str) -> str | None:
    """The currency the wallet's first row fixed, or None for a wallet never used."""
    row = balances.last(ctx.ledger, TABLE, user_id)
    return None if row is None else row["unit"]


def check_currency(ctx: Context, user_id: str, currency: str) -> None:
    """One currency per wallet: refuse a subscription or a charge in another one."""
    have = wallet_currency(ctx, user_id)
    if have is not None and have != currency.lower():
        raise ValidationError(
            f"{user_id!r}'s wallet is in {have.upper()}, not {currency.upper()}: one currency per wallet, "
            "nothing was changed"
        )


class Wallet:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def currency(self, user_id: str, given: str | None = None) -> str | None:
        """The wallet's currency: fixed by its first row, else the subscription's, else ``given``."""
        if given is not None:
            check_currency(self.ctx, user_id, given)
        have = wallet_currency(self.ctx, user_id)
        if have is not None:
            return have
        sub = self.ctx.subscription(user_id)
        if sub is not None:
            if given is not None and given.lower() != sub.currency:
                raise ValidationError(f"{user_id!r} is billed in {sub.currency}; the wallet must be too, not {given.lower()}")
            return sub.currency
        if given is not None and given.lower() not in CURRENCIES:
            raise ValidationError(f"unknown currency {given!r}")
        return None if given is None else given.lower()

    def get_balance(self, user_id: str) -> WalletBalance:
        self.ctx.customer(user_id)
        refresh(self.ctx, user_id)
        ledger = self.ctx.ledger
        return WalletBalance(user_id, self.currency(user_id), balances.balance(ledger, TABLE, user_id),
                             allocations.left(ledger, user_id, allocations.WALLET_TARGET))

    def top_up(self, user_id: str, amount, currency: str | None = None, idempotency_key: str | None = None) -> WalletChange:
        """Add money (minor units)."""
        return self._change(user_id, check_money(amount), currency, idempotency_key, "top_up")

    def consume(self, user_id: str, amount, idempotency_key: str | None = None) -> WalletChange:
        """Take money (minor units); the balance may go negative."""
        return self._change(user_id, -check_money(amount), None, idempotency_key, "consume")

    def _change(self, user_id: str, delta: int, currency: str | None, idempotency_key: str | None, reason: str) -> WalletChange:
        check_key(idempotency_key)
        ctx = self.ctx
        request = {"amount": abs(delta), "currency": currency}
        with ctx.ledger.transaction(user_id):
            ctx.customer(user_id)
            done = replay(ctx.ledger, user_id, idempotency_key, f"wallet.{reason}", request)
            if done is not None:
                return WalletChange(**{**done, "replayed": True})
            refresh(ctx, user_id)
            cur = self.currency(user_id, currency)
            if cur is None:
                raise ValidationError(f"{user_id!r} has no subscription to take a currency from: give a currency")
            now = ctx.now_for(user_id)
            if delta < 0:
                after = self.debit(user_id, cur, -delta, reason, now, idempotency_key)
            else:
                after = balances.append(ctx.ledger, TABLE, user_id, cur, delta, reason, now, idempotency_key=idempotency_key)
            result = WalletChange(user_id, cur, delta, after)
            remember(ctx.ledger, user_id, idempotency_key, f"wallet.{reason}", request, asdict(result), now)
        return result

    def debit(self, user_id: str, currency: str, amount: int, reason: str, now: int, idempotency_key: str | None = None) -> int:
        """Take ``amount`` minor units (inside the caller's transaction), the plan's allocation
        first; returns the balance after."""
        after = balances.append(self.ctx.ledger, TABLE, user_id, currency, -amount, reason, now,
                                idempotency_key=idempotency_key)
        allocations.wallet_spent(self.ctx.ledger, user_id, amount)
        return after

    # -- paying for units at a (possibly fractional) price --------------------------------------

    def _paid_ahead(self, user_id: str, feature: str) -> Decimal:
        return Decimal(journal.paid_ahead(self.ctx.ledger, user_id, feature) or 0)

    def units_covered(self, user_id: str, feature: str, price: Decimal, balance: int) -> int:
        """How many units at ``price`` the wallet's ``balance`` (and what was paid ahead) covers."""
        if price == 0:
            return 2**63
        with localcontext() as c:
            c.prec = PRECISION
            return max(0, math.floor((balance + self._paid_ahead(user_id, feature)) / price))

    def pay_for_units(
        self, user_id: str, feature: str, units: int, price: Decimal, currency: str, reason: str, now: int,
        idempotency_key: str | None = None,
    ) -> tuple[int, int]:
        """Debit ``units`` x ``price``: rounded up, what was paid ahead first, the overpaid
        fraction carried. Returns (minor units debited, balance after)."""
        ledger = self.ctx.ledger
        with localcontext() as c:
            c.prec = PRECISION
            owed = units * price - self._paid_ahead(user_id, feature)
            debit = max(0, math.ceil(owed))
            journal.set_paid_ahead(ledger, user_id, feature, str(debit - owed))
        if debit:
            return debit, self.debit(user_id, currency, debit, reason, now, idempotency_key)
        return 0, balances.balance(ledger, TABLE, user_id)

    def history(self, user_id: str, limit: int | None = None, since=None) -> list[Entry]:
        """Every change, newest first (``limit`` newest rows, ``since`` a time: rows from then on)."""
        self.ctx.customer(user_id)
        refresh(self.ctx, user_id)
        since_ts = None if since is None else parse_time(since, what="--since")
        return balances.history(self.ctx.ledger, TABLE, user_id, None, limit, since_ts)
