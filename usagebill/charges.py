"""The charge waterfall: included and granted credits first, then whole units paid from the
wallet at the feature's price (exactly, see wallet.py), the rest recorded as usage."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from . import balances
from .context import Context
from .credits import Credits
from .errors import InsufficientCreditsError
from .idempotency import remember, replay
from .ledger.events import CHARGE
from .renewals import refresh
from .rules import check_key, check_units
from .usage import Usage, UsageEvent
from .wallet import Wallet, check_currency

if TYPE_CHECKING:
    from .delivery import Delivery


@dataclass(frozen=True)
class ChargeResult:
    user_id: str
    key: str
    units: int
    from_credits: int
    from_wallet: int  # units paid from the wallet
    wallet_debit: int  # minor units taken from the wallet
    as_usage: int  # units recorded as post-paid usage
    usage_event_id: str | None
    credit_balance: int
    wallet_balance: int
    currency: str
    replayed: bool = False
    delivery: "Delivery | None" = None  # of the usage part, set by Billing.charge (None: no usage)


def charge(
    ctx: Context, usage: Usage, credits: Credits, wallet: Wallet, user_id: str, key: str, units,
    idempotency_key: str | None = None,
) -> tuple[ChargeResult, UsageEvent | None]:
    """Atomically: the result, and the usage event written (None when none or replayed). A
    feature that does not track usage and cannot be covered fails with nothing taken
    (InsufficientCreditsError)."""
    units = check_units(units, "units")
    check_key(idempotency_key)
    request = {"key": key, "units": units}
    ledger = ctx.ledger
    with ledger.transaction(user_id):
        sub = ctx.require_subscription(user_id)
        feature = ctx.plan_feature(sub, key)
        done = replay(ledger, user_id, idempotency_key, "charge", request)
        if done is not None:
            return ChargeResult(**{**done, "replayed": True, "delivery": None}), None
        refresh(ctx, user_id)
        now = ctx.now_for(user_id)
        credit_bal = balances.balance(ledger, balances.CREDITS, user_id, key)
        from_credits = min(max(credit_bal, 0), units)
        rest = units - from_credits
        wallet_bal = balances.balance(ledger, balances.WALLET, user_id)
        from_wallet = 0
        price = feature.price_per_credit
        if rest and price is not None:
            check_currency(ctx, user_id, sub.currency)
            from_wallet = min(rest, wallet.units_covered(user_id, key, price, wallet_bal))
        as_usage = rest - from_wallet
        if as_usage and not feature.track_usage:
            raise InsufficientCreditsError(
                f"not enough for {units} {key} of {user_id!r}: {credit_bal} credits, wallet covers "
                f"{from_wallet} more, and {key!r} does not track usage; nothing was taken"
            )
        if from_credits:
            credit_bal = credits.take(user_id, key, from_credits, "charge", now, idempotency_key)
        debit = 0
        if from_wallet:
            debit, wallet_bal = wallet.pay_for_units(user_id, key, from_wallet, price, sub.currency, f"charge:{key}",
                                                     now, idempotency_key)
        event = usage.insert(user_id, key, as_usage, None, None, CHARGE) if as_usage else None
        result = ChargeResult(
            user_id, key, units, from_credits, from_wallet, debit, as_usage,
            event.id if event else None, credit_bal, wallet_bal, sub.currency,
        )
        remember(ledger, user_id, idempotency_key, "charge", request, asdict(result), now)
    return result, event
