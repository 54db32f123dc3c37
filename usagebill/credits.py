"""Pre-paid units per feature. ``consume`` is atomic and never takes the balance below zero:
with too few credits it consumes nothing and reports ``success=False``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import balances
from .balances import CREDITS as TABLE
from .balances import WALLET, Entry
from .config import Feature
from .context import Context
from .idempotency import remember, replay
from .money import cost
from .renewals import refresh
from .rules import check_key, check_units


@dataclass(frozen=True)
class CreditChange:
    user_id: str
    key: str
    delta: int
    balance: int
    replayed: bool = False


@dataclass(frozen=True)
class ConsumeResult:
    user_id: str
    key: str
    success: bool
    requested: int
    consumed: int
    balance: int
    topped_up: int = 0  # credits bought from the wallet by auto top-up
    replayed: bool = False


class Credits:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def _prepare(self, user_id: str, key: str) -> Feature:
        self.ctx.customer(user_id)
        feature = self.ctx.feature(key)
        refresh(self.ctx, user_id)
        return feature

    def get_balance(self, user_id: str, key: str) -> int:
        self._prepare(user_id, key)
        return balances.balance(self.ctx.ledger, TABLE, user_id, key)

    def grant(self, user_id: str, key: str, amount, idempotency_key: str | None = None) -> CreditChange:
        """Add credits by hand (a correction, a goodwill gesture, a purchase)."""
        amount = check_units(amount)
        check_key(idempotency_key)
        ctx = self.ctx
        request = {"key": key, "amount": amount}
        with ctx.ledger.transaction():
            self._prepare(user_id, key)
            done = replay(ctx.ledger, user_id, idempotency_key, "credits.grant", request)
            if done is not None:
                return CreditChange(**{**done, "replayed": True})
            now = ctx.now_for(user_id)
            after = balances.append(ctx.ledger, TABLE, user_id, key, amount, "grant", now, idempotency_key=idempotency_key)
            result = CreditChange(user_id, key, amount, after)
            remember(ctx.ledger, user_id, idempotency_key, "credits.grant", request, asdict(result), now)
        return result

    def consume(self, user_id: str, key: str, amount, idempotency_key: str | None = None) -> ConsumeResult:
        """Take ``amount`` credits, all or nothing. An auto top-up, when the feature has one,
        buys credits from the wallet (only if the wallet covers them)."""
        amount = check_units(amount)
        check_key(idempotency_key)
        ctx = self.ctx
        request = {"key": key, "amount": amount}
        with ctx.ledger.transaction():
            feature = self._prepare(user_id, key)
            done = replay(ctx.ledger, user_id, idempotency_key, "credits.consume", request)
            if done is not None:
                return ConsumeResult(**{**done, "replayed": True})
            now = ctx.now_for(user_id)
            bal = balances.balance(ctx.ledger, TABLE, user_id, key)
            bought = 0
            if bal < amount and feature.auto_top_up:
                blocks = -(-(amount - bal) // feature.auto_top_up.amount)
                bought = self._top_up(user_id, feature, blocks, now)
                bal += bought
            if bal < amount:
                return ConsumeResult(user_id, key, False, amount, 0, bal)
            bal = balances.append(ctx.ledger, TABLE, user_id, key, -amount, "consume", now, idempotency_key=idempotency_key)
            if feature.auto_top_up and bal < feature.auto_top_up.threshold:
                got = self._top_up(user_id, feature, 1, now)
                bought, bal = bought + got, bal + got
            result = ConsumeResult(user_id, key, True, amount, amount, bal, bought)
            remember(ctx.ledger, user_id, idempotency_key, "credits.consume", request, asdict(result), now)
        return result

    def _top_up(self, user_id: str, feature: Feature, blocks: int, now: int) -> int:
        """Buy ``blocks`` auto top-ups from the wallet if it covers them; returns credits bought."""
        from .wallet import Wallet

        units = blocks * feature.auto_top_up.amount
        price = cost(units, feature.price_per_credit)
        currency = Wallet(self.ctx).currency(user_id)
        if currency is None or balances.balance(self.ctx.ledger, WALLET, user_id) < price:
            return 0
        balances.append(self.ctx.ledger, WALLET, user_id, currency, -price, f"auto_top_up:{feature.key}", now)
        balances.append(self.ctx.ledger, TABLE, user_id, feature.key, units, "auto_top_up", now)
        return units

    def history(self, user_id: str, key: str | None = None, limit: int | None = None) -> list[Entry]:
        """Every change, newest first, with the balance after it."""
        self.ctx.customer(user_id)
        if key is not None:
            self.ctx.feature(key)
        refresh(self.ctx, user_id)
        return balances.history(self.ctx.ledger, TABLE, user_id, key, limit)
