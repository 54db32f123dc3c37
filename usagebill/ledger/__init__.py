"""The local SQLite ledger, and the only SQL of the package: ``db`` (connection,
transactions), ``migrations``, and one module per table family: ``events`` (usage events),
``balances`` (credit and wallet journals, renewals, allocations left, grant lots, wallet
remainders), ``accounts`` (customers, subscriptions, test-clock times), ``idempotency``
(operation keys). A second storage engine replaces this package."""

from .db import Ledger, open_ledger

__all__ = ["Ledger", "open_ledger"]
