"""usagebill: usage-based billing on Stripe, from the shell and from Python."""

from .billing import Billing, ChargeResult
from .config import Config, Feature, Plan, load_config
from .credits import ConsumeResult, CreditChange
from .errors import (
    ConfigError,
    ExitCode,
    IdempotencyError,
    InsufficientCreditsError,
    LedgerError,
    NotFoundError,
    StripeAPIError,
    UsagebillError,
    ValidationError,
)
from .usage import UsageEvent, UsageSummary
from .wallet import WalletBalance, WalletChange

__version__ = "0.1.0"

__all__ = [
    "Billing",
    "ChargeResult",
    "Config",
    "ConfigError",
    "ConsumeResult",
    "CreditChange",
    "ExitCode",
    "Feature",
    "IdempotencyError",
    "InsufficientCreditsError",
    "LedgerError",
    "NotFoundError",
    "Plan",
    "StripeAPIError",
    "UsageEvent",
    "UsageSummary",
    "UsagebillError",
    "ValidationError",
    "WalletBalance",
    "WalletChange",
    "load_config",
]
