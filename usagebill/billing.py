"""The Billing facade: one object over the config and the ledger, with ``.customers``,
``.subscriptions``, ``.usage``, ``.credits``, ``.wallet`` and the ``charge`` waterfall."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import charges, ownership
from .charges import ChargeResult
from .config import Config, load_config
from .context import Context
from .credits import Credits
from .customers import Customers
from .ledger import Ledger, open_ledger
from .subscriptions import Subscriptions
from .usage import Usage, UsageEvent
from .wallet import Wallet


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
    ):
        self.config = config
        self.ledger = ledger
        self.ctx = Context(config, ledger, clock)
        self.customers = Customers(self.ctx)
        self.subscriptions = Subscriptions(self.ctx)
        self.usage = Usage(self.ctx, on_usage_recorded)
        self.credits = Credits(self.ctx)
        self.wallet = Wallet(self.ctx)

    @classmethod
    def open(
        cls,
        config_path: str | Path,
        db_path: str | Path | None = None,
        *,
        on_usage_recorded: Callable[[UsageEvent], None] | None = None,
        clock: Callable[[], int] | None = None,
        adopting: bool = False,
    ) -> "Billing":
        """``adopting``: skip the check that the ledger belongs to this config (for
        ``usagebill config adopt``, which makes it so)."""
        config = load_config(config_path)
        ledger = open_ledger(db_path if db_path is not None else default_db_path(config))
        if not adopting:
            try:
                ownership.check(ledger, config_path)
            except BaseException:
                ledger.close()
                raise
        return cls(config, ledger, on_usage_recorded=on_usage_recorded, clock=clock)

    @property
    def db_path(self) -> str:
        return self.ledger.path

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> "Billing":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def charge(self, user_id: str, key: str, units, idempotency_key: str | None = None) -> ChargeResult:
        """The waterfall, atomically: credits first (the plan's allocation, then granted
        credits), then whole units paid from the wallet at the feature's price, the rest
        recorded as usage (see usagebill.charges)."""
        result, event = charges.charge(
            self.ctx, self.usage, self.credits, self.wallet, user_id, key, units, idempotency_key
        )
        if event is not None and self.usage.on_usage_recorded is not None:
            self.usage.on_usage_recorded(event)
        return result
