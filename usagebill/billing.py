"""The Billing facade: one object over the config and the ledger, with ``.customers``,
``.subscriptions``, ``.usage``, ``.credits``, ``.wallet`` and the ``charge`` waterfall."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from . import balances
from .config import Config, load_config
from .context import Context
from .balances import CREDITS, WALLET
from .credits import Credits
from .customers import Customers
from .delivery import Delivery, deliver_event, deliver_pending
from .errors import InsufficientCreditsError
from .idempotency import remember, replay
from .ledger import Ledger, open_ledger
from .ledger.events import CHARGE
from .money import cost
from .renewals import refresh
from .rules import check_key, check_units
from .subscriptions import Subscriptions
from .usage import Usage, UsageEvent
from .wallet import Wallet


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
    delivery: Delivery | None = None  # of the usage part (None when there is none)


def default_db_path(config: Config) -> Path:
    """``[ledger] path`` from the config, else ``.usagebill/ledger.db`` beside the config."""
    return config.ledger_path or Path(config.path).parent / ".usagebill" / "ledger.db"


class Billing:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        *,
        on_usage_recorded: Callable[[UsageEvent], None] | None = None,
        clock: Callable[[], int] | None = None,
        api_key: str | None = None,
        live: bool = False,
        sandbox_url: str | None = None,
        on_connect: Callable[[object], None] | None = None,
    ):
        self.ledger = ledger
        self.ctx = Context(config, ledger, clock)
        self.customers = Customers(self.ctx)
        self.subscriptions = Subscriptions(self.ctx)
        self.usage = Usage(self.ctx, on_usage_recorded, deliverer=self)
        self.credits = Credits(self.ctx)
        self.wallet = Wallet(self.ctx)
        # which Stripe: chosen as the CLI chooses (the key, else the sandbox), opened on first use
        self._stripe = (api_key, live, sandbox_url)
        self._connection = None
        self._owns_connection = False
        self.on_connect = on_connect  # told the connection once it is open (the CLI's banner)

    @property
    def config(self) -> Config:
        return self.ctx.config

    @config.setter
    def config(self, config: Config) -> None:
        """A changed config (then ``gateway.sync.sync`` to make Stripe follow): one config for
        the facade and every primitive."""
        self.ctx.config = config

    @classmethod
    def open(
        cls,
        config_path: str | Path,
        db_path: str | Path | None = None,
        *,
        on_usage_recorded: Callable[[UsageEvent], None] | None = None,
        clock: Callable[[], int] | None = None,
        api_key: str | None = None,
        live: bool = False,
        sandbox_url: str | None = None,
        on_connect: Callable[[object], None] | None = None,
    ) -> "Billing":
        """Open the config and its ledger. Usage is delivered to the Stripe that ``api_key``
        (default ``STRIPE_API_KEY``) names: test mode for ``sk_test_`` keys, live mode for
        ``sk_live_`` keys with ``live=True``; without a key the built-in sandbox (state beside
        the ledger), or the one served at ``sandbox_url`` (default ``USAGEBILL_SANDBOX_URL``)."""
        config = load_config(config_path)
        ledger = open_ledger(db_path if db_path is not None else default_db_path(config))
        return cls(config, ledger, on_usage_recorded=on_usage_recorded, clock=clock,
                   api_key=api_key, live=live, sandbox_url=sandbox_url, on_connect=on_connect)

    @property
    def connection(self):
        """The Stripe connection (a ``gateway.client.Connection``), opened on first use and
        bound to the ledger (a ledger belongs to one Stripe). Imports the stripe SDK."""
        if self._connection is None:
            from .gateway.client import connect

            api_key, live, sandbox_url = self._stripe
            self.use_connection(connect(
                ledger_path=self.db_path,
                api_key=api_key if api_key is not None else os.environ.get("STRIPE_API_KEY"),
                live=live,
                sandbox_url=sandbox_url if sandbox_url is not None else os.environ.get("USAGEBILL_SANDBOX_URL"),
            ))
            self._owns_connection = True
            if self.on_connect is not None:
                self.on_connect(self._connection)
        return self._connection

    def use_connection(self, conn) -> None:
        """Deliver through ``conn`` (an in-memory sandbox in tests, say), bound to the ledger."""
        from .gateway.mapping import bind

        bind(self.ledger, conn.mode)
        self._connection = conn

    def deliver(self, event_id: str, push: bool = True) -> Delivery:
        """Deliver a usage event just written (``push``), or tell its state (not ``push``)."""
        return deliver_event(self, event_id, push=push)

    def deliver_pending(self) -> Delivery:
        """Deliver every pending event (what ``usagebill push`` does), as one verdict."""
        return deliver_pending(self)

    @property
    def db_path(self) -> str:
        return self.ledger.path

    def close(self) -> None:
        if self._owns_connection and getattr(self._connection, "sandbox", None) is not None:
            self._connection.sandbox.close()
        self.ledger.close()

    def __enter__(self) -> "Billing":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def charge(self, user_id: str, key: str, units, idempotency_key: str | None = None, *,
               push: bool = True) -> ChargeResult:
        """The waterfall, atomically: included credits first, then whole units paid from the
        wallet at the feature's price, the rest recorded as usage, then delivered to Stripe
        (``push``; the verdict is ``result.delivery``). A feature that does not track usage
        and cannot be covered fails with nothing taken (InsufficientCreditsError)."""
        result, event = self._charge(user_id, key, units, idempotency_key)
        if result.usage_event_id is None:
            return result
        result = replace(result, delivery=self.deliver(result.usage_event_id, push))
        if event is not None:
            self.usage.notify(replace(event, delivery=result.delivery))
        return result

    def _charge(self, user_id: str, key: str, units, idempotency_key: str | None) -> tuple[ChargeResult, UsageEvent | None]:
        units = check_units(units, "units")
        check_key(idempotency_key)
        ctx = self.ctx
        request = {"key": key, "units": units}
        with ctx.ledger.transaction():
            sub = ctx.require_subscription(user_id)
            feature = ctx.plan_feature(sub, key)
            done = replay(ctx.ledger, user_id, idempotency_key, "charge", request)
            if done is not None:
                return ChargeResult(**{**done, "replayed": True, "delivery": None}), None
            refresh(ctx, user_id)
            now = ctx.now_for(user_id)
            credit_bal = balances.balance(ctx.ledger, CREDITS, user_id, key)
            from_credits = min(max(credit_bal, 0), units)
            rest = units - from_credits
            wallet_bal = balances.balance(ctx.ledger, WALLET, user_id)
            from_wallet = debit = 0
            price = feature.price_per_credit
            if rest and price is not None:
                affordable = rest if price == 0 else max(0, math.floor(wallet_bal / price))
                from_wallet = min(rest, affordable)
                debit = cost(from_wallet, price)  # <= wallet_bal: rounding never passes a whole balance
            as_usage = rest - from_wallet
            if as_usage and not feature.track_usage:
                raise InsufficientCreditsError(
                    f"not enough for {units} {key} of {user_id!r}: {credit_bal} credits, wallet covers "
                    f"{from_wallet} more, and {key!r} does not track usage; nothing was taken"
                )
            if from_credits:
                credit_bal = balances.append(ctx.ledger, CREDITS, user_id, key, -from_credits, "charge", now, idempotency_key=idempotency_key)
            if from_wallet and debit:
                wallet_bal = balances.append(
                    ctx.ledger, WALLET, user_id, self.wallet.currency(user_id), -debit, f"charge:{key}", now, idempotency_key=idempotency_key
                )
            event = None
            if as_usage:
                event = self.usage.insert(user_id, key, as_usage, None, None, CHARGE)
            result = ChargeResult(
                user_id, key, units, from_credits, from_wallet, debit, as_usage,
                event.id if event else None, credit_bal, wallet_bal, sub.currency,
            )
            remember(ctx.ledger, user_id, idempotency_key, "charge", request, asdict(result), now)
        return result, event
