"""Pre-paid money, in minor units of one currency per wallet. It can go negative."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import balances
from .balances import WALLET as TABLE
from .balances import Entry
from .context import Context
from .errors import ValidationError
from .idempotency import remember, replay
from .money import CURRENCIES
from .renewals import refresh
from .rules import check_key, check_money


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


class Wallet:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def currency(self, user_id: str, given: str | None = None) -> str | None:
        """The wallet's currency: fixed by its first row, else the subscription's, else ``given``."""
        row = balances.last(self.ctx.ledger, TABLE, user_id)
        if row is not None:
            if given is not None and given.lower() != row["unit"]:
                raise ValidationError(f"{user_id!r}'s wallet is in {row['unit']}, not {given.lower()}")
            return row["unit"]
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
        return WalletBalance(user_id, self.currency(user_id), balances.balance(self.ctx.ledger, TABLE, user_id))

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
        with ctx.ledger.transaction():
            ctx.customer(user_id)
            done = replay(ctx.ledger, user_id, idempotency_key, f"wallet.{reason}", request)
            if done is not None:
                return WalletChange(**{**done, "replayed": True})
            refresh(ctx, user_id)
            cur = self.currency(user_id, currency)
            if cur is None:
                raise ValidationError(f"{user_id!r} has no subscription to take a currency from: give a currency")
            now = ctx.now_for(user_id)
            after = balances.append(ctx.ledger, TABLE, user_id, cur, delta, reason, now, idempotency_key=idempotency_key)
            result = WalletChange(user_id, cur, delta, after)
            remember(ctx.ledger, user_id, idempotency_key, f"wallet.{reason}", request, asdict(result), now)
        return result

    def history(self, user_id: str, limit: int | None = None) -> list[Entry]:
        self.ctx.customer(user_id)
        refresh(self.ctx, user_id)
        return balances.history(self.ctx.ledger, TABLE, user_id, None, limit)
