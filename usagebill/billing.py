"""The Billing facade: one object over the config and the ledger, with ``.customers``,
``.subscriptions``, ``.usage``, ``.credits``, ``.wallet`` and the ``charge`` waterfall."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from . import charges, ownership
from .charges import ChargeResult
from .config import Config, load_config
from .context import Context
from .credits import Credits
from .customers import Customers
from .delivery import Delivery, deliver_event, deliver_pending
from .ledger import Ledger, open_ledger
from .locations import sandbox_path_for
from .subscriptions import Subscriptions
from .usage import Usage, UsageEvent
from .wallet import Wallet


def default_db_path(config: Config) -> str | Path:
    """``[ledger] url`` or ``[ledger] path`` from the config, else ``.usagebill/ledger.db``
    beside the config."""
    return config.ledger_url or config.ledger_path or Path(config.path).parent / ".usagebill" / "ledger.db"


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
        self.config = config
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
        self.sandbox_path: Path | None = None  # the built-in sandbox's state (None: beside the ledger)
        self.ctx.refresh_clock = self._refresh_clock

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
        adopting: bool = False,
        sandbox_db: str | Path | None = None,
    ) -> "Billing":
        """Open the config and its ledger. Usage is delivered to the Stripe that ``api_key``
        (default ``STRIPE_API_KEY``) names: test mode for ``sk_test_`` keys, live mode for
        ``sk_live_`` keys with ``live=True``; without a key the built-in sandbox (state beside
        the ledger), or the one served at ``sandbox_url`` (default ``USAGEBILL_SANDBOX_URL``).
        A ledger belongs to one config (``usagebill.ownership``); ``adopting`` skips that check
        for ``usagebill config adopt``, which makes this config the ledger's. ``db_path`` may be
        a PostgreSQL URL; the built-in sandbox then keeps its state in ``sandbox_db`` (default
        ``.usagebill/sandbox.db`` beside the config)."""
        config = load_config(config_path)
        target = db_path if db_path is not None else default_db_path(config)
        ledger = open_ledger(target)
        if not adopting:
            try:
                ownership.check(ledger, config_path)
            except BaseException:
                ledger.close()
                raise
        billing = cls(config, ledger, on_usage_recorded=on_usage_recorded, clock=clock,
                      api_key=api_key, live=live, sandbox_url=sandbox_url, on_connect=on_connect)
        billing.sandbox_path = Path(sandbox_db) if sandbox_db is not None else sandbox_path_for(target, config.path)
        return billing

    @property
    def connection(self):
        """The Stripe connection (a ``gateway.client.Connection``), opened on first use and
        bound to the ledger (a ledger belongs to one Stripe). Imports the stripe SDK."""
        if self._connection is None:
            from .gateway.client import connect

            api_key, live, sandbox_url = self._stripe
            self.use_connection(connect(
                ledger_path=self.db_path,
                sandbox_path=self.sandbox_path,
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

    def _refresh_clock(self, clock_id: str) -> None:
        """A customer's now is read while an advance of its test clock is unfinished: take the
        clock's time from Stripe first (``gateway.clocks``)."""
        from .gateway.clocks import refresh_stale_clock

        refresh_stale_clock(self, self.connection, clock_id)

    def deliver(self, event_id: str, push: bool = True) -> Delivery:
        """Deliver a usage event just written (``push``), or tell its state (not ``push``)."""
        return deliver_event(self, event_id, push=push)

    def deliver_pending(self) -> Delivery:
        """Deliver every pending event (what ``usagebill push`` does), as one verdict."""
        return deliver_pending(self)

    @property
    def db_path(self) -> str:
        return self.ledger.path

    def now(self) -> int:
        """The billing's clock (real time unless one was given), Unix seconds."""
        return self.ctx.clock()

    def now_for(self, user_id: str) -> int:
        """A customer's now: its test clock's time when it has one, else ``now()``."""
        return self.ctx.now_for(user_id)

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
        """The waterfall, atomically: credits first (the plan's allocation, then granted
        credits), then whole units paid from the wallet at the feature's price, the rest
        recorded as usage (see usagebill.charges), then delivered to Stripe (``push``; the
        verdict is ``result.delivery``)."""
        result, event = charges.charge(
            self.ctx, self.usage, self.credits, self.wallet, user_id, key, units, idempotency_key
        )
        if result.usage_event_id is None:
            return result
        result = replace(result, delivery=self.deliver(result.usage_event_id, push))
        if event is not None:
            self.usage.notify(replace(event, delivery=result.delivery))
        return result
