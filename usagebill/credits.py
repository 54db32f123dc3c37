"""Pre-paid units per feature. ``consume`` is atomic and never takes the balance below zero:
with too few credits it consumes nothing and reports ``success=False``.

A balance has two parts: what is left of the plan's allocation (renewed each period, see
allocations.py) and granted lots (by hand, bought, auto top-ups), each kept until used or
until its own expiry. Consumption takes the allocation first, then the lots, soonest expiry
first (lots without expiry last)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import allocations, balances
from .balances import CREDITS as TABLE
from .balances import Entry
from .config import Feature
from .context import Context
from .errors import ValidationError
from .idempotency import remember, replay
from .ledger import balances as journal
from .renewals import refresh
from .rules import check_key, check_units
from .timeparse import iso, parse_time
from .wallet import Wallet, wallet_currency


@dataclass(frozen=True)
class CreditChange:
    user_id: str
    key: str
    delta: int
    balance: int
    replayed: bool = False
    expires_at: int | None = None


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


@dataclass(frozen=True)
class GrantLot:
    remaining: int
    expires_at: int | None


@dataclass(frozen=True)
class CreditBalance:
    """A balance and its parts: ``balance == included + granted``."""

    user_id: str
    key: str
    balance: int
    included: int  # left of the plan's allocation: a reset renewal expires it
    granted: int  # granted lots: kept until used or expired
    lots: tuple[GrantLot, ...] = ()


class Credits:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def _read(self, user_id: str, key: str) -> None:
        """Reads accept any feature a plan defines (credits may outlive a plan change)."""
        self.ctx.customer(user_id)
        self.ctx.feature(key)
        refresh(self.ctx, user_id)

    def get_balance(self, user_id: str, key: str) -> int:
        self._read(user_id, key)
        return balances.balance(self.ctx.ledger, TABLE, user_id, key)

    def get_parts(self, user_id: str, key: str) -> CreditBalance:
        """The balance with its included and granted parts."""
        self._read(user_id, key)
        ledger = self.ctx.ledger
        lots = tuple(GrantLot(r["remaining"], r["expires_at"]) for r in journal.open_grants(ledger, user_id, key))
        included = allocations.left(ledger, user_id, allocations.credits_target(key))
        return CreditBalance(user_id, key, balances.balance(ledger, TABLE, user_id, key), included,
                             sum(lot.remaining for lot in lots), lots)

    def grant(self, user_id: str, key: str, amount, idempotency_key: str | None = None, expires=None) -> CreditChange:
        """Add credits by hand (a correction, a goodwill gesture, a purchase); they stay until
        used or until ``expires`` (a time; default: never), whatever the plan's renewals do."""
        amount = check_units(amount)
        check_key(idempotency_key)
        expires_at = None if expires is None else parse_time(expires, what="--expires")
        ctx = self.ctx
        request = {"key": key, "amount": amount, **({"expires_at": expires_at} if expires_at is not None else {})}
        with ctx.ledger.transaction(user_id):
            ctx.customer(user_id)
            ctx.customer_feature(user_id, key)
            refresh(ctx, user_id)
            done = replay(ctx.ledger, user_id, idempotency_key, "credits.grant", request)
            if done is not None:
                return CreditChange(**{**done, "replayed": True})
            now = ctx.now_for(user_id)
            if expires_at is not None and expires_at <= now:
                raise ValidationError(f"--expires {iso(expires_at)} is not after {user_id!r}'s now ({iso(now)})")
            after = self.add_lot(user_id, key, amount, "grant", now, expires_at, idempotency_key)
            result = CreditChange(user_id, key, amount, after, expires_at=expires_at)
            remember(ctx.ledger, user_id, idempotency_key, "credits.grant", request, asdict(result), now)
        return result

    def add_lot(self, user_id: str, key: str, amount: int, reason: str, now: int, expires_at: int | None = None,
                idempotency_key: str | None = None) -> int:
        """A granted lot and its journal row (inside the caller's transaction); the new balance."""
        after = balances.append(self.ctx.ledger, TABLE, user_id, key, amount, reason, now,
                                idempotency_key=idempotency_key, expires_at=expires_at)
        journal.insert_grant(self.ctx.ledger, user_id, key, amount, expires_at, reason, now)
        return after

    def take(self, user_id: str, key: str, amount: int, reason: str, now: int, idempotency_key: str | None = None) -> int:
        """Take ``amount`` credits the balance holds (inside the caller's transaction): the
        allocation first, then lots by expiry. Returns the new balance."""
        ledger = self.ctx.ledger
        rest = amount - allocations.take(ledger, user_id, allocations.credits_target(key), amount)
        for lot in journal.open_grants(ledger, user_id, key) if rest else ():
            used = min(lot["remaining"], rest)
            journal.set_grant_remaining(ledger, lot["id"], lot["remaining"] - used)
            rest -= used
            if not rest:
                break
        return balances.append(ledger, TABLE, user_id, key, -amount, reason, now, idempotency_key=idempotency_key)

    def consume(self, user_id: str, key: str, amount, idempotency_key: str | None = None) -> ConsumeResult:
        """Take ``amount`` credits, all or nothing. An auto top-up, when the customer's plan
        gives the feature one, buys credits from the wallet (only if the wallet covers them)."""
        amount = check_units(amount)
        check_key(idempotency_key)
        ctx = self.ctx
        request = {"key": key, "amount": amount}
        with ctx.ledger.transaction(user_id):
            ctx.customer(user_id)
            feature = ctx.customer_feature(user_id, key)
            refresh(ctx, user_id)
            done = replay(ctx.ledger, user_id, idempotency_key, "credits.consume", request)
            if done is not None:
                return ConsumeResult(**{**done, "replayed": True})
            now = ctx.now_for(user_id)
            journal.read_feature(ctx.ledger, user_id, key, allocations.credits_target(key))  # one read for both
            bal = balances.balance(ctx.ledger, TABLE, user_id, key)
            bought = 0
            if bal < amount and feature.auto_top_up:
                blocks = -(-(amount - bal) // feature.auto_top_up.amount)
                bought = self._top_up(user_id, feature, blocks, now)
                bal += bought
            if bal < amount:
                return ConsumeResult(user_id, key, False, amount, 0, bal)
            bal = self.take(user_id, key, amount, "consume", now, idempotency_key)
            if feature.auto_top_up and bal < feature.auto_top_up.threshold:
                got = self._top_up(user_id, feature, 1, now)
                bought, bal = bought + got, bal + got
            result = ConsumeResult(user_id, key, True, amount, amount, bal, bought)
            remember(ctx.ledger, user_id, idempotency_key, "credits.consume", request, asdict(result), now)
        return result

    def _top_up(self, user_id: str, feature: Feature, blocks: int, now: int) -> int:
        """Buy ``blocks`` auto top-ups from the wallet if it covers them; returns credits bought."""
        units = blocks * feature.auto_top_up.amount
        wallet = Wallet(self.ctx)
        currency = wallet_currency(self.ctx, user_id)
        if currency is None:
            return 0
        have = balances.balance(self.ctx.ledger, balances.WALLET, user_id)
        if wallet.units_covered(user_id, feature.key, feature.price_per_credit, have) < units:
            return 0
        wallet.pay_for_units(user_id, feature.key, units, feature.price_per_credit, currency,
                             f"auto_top_up:{feature.key}", now)
        self.add_lot(user_id, feature.key, units, "auto_top_up", now)
        return units

    def history(self, user_id: str, key: str | None = None, limit: int | None = None, since=None) -> list[Entry]:
        """Every change, newest first, with the balance after it (``limit`` newest rows,
        ``since`` a time: rows from then on)."""
        self.ctx.customer(user_id)
        if key is not None:
            self.ctx.feature(key)
        refresh(self.ctx, user_id)
        since_ts = None if since is None else parse_time(since, what="--since")
        return balances.history(self.ctx.ledger, TABLE, user_id, key, limit, since_ts)
