"""Domain errors. Each carries the exit code the CLI returns for it; no Click here."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes, for scripts."""

    OK = 0
    ERROR = 1
    USAGE = 2
    INSUFFICIENT_CREDITS = 3
    STRIPE_ERROR = 4
    PARTIAL_IMPORT = 5
    INTERRUPTED = 130


class UsagebillError(Exception):
    """Base class: a user-facing error with a one-line message."""

    exit_code: ExitCode = ExitCode.ERROR


class ConfigError(UsagebillError):
    """billing.toml is missing, unreadable or invalid."""


class ValidationError(UsagebillError):
    """A bad argument to a library call (amount, timestamp, feature...)."""


class NotFoundError(UsagebillError):
    """An unknown customer, plan, feature or object."""


class IdempotencyError(UsagebillError):
    """An idempotency key was reused with different arguments."""


class InsufficientCreditsError(UsagebillError):
    """Not enough credits (or wallet) to cover a charge; nothing was taken."""

    exit_code = ExitCode.INSUFFICIENT_CREDITS


class StripeAPIError(UsagebillError):
    """Stripe (or the sandbox) refused or failed a request."""

    exit_code = ExitCode.STRIPE_ERROR


class LedgerError(UsagebillError):
    """The ledger database cannot be opened or is from a newer usagebill."""
