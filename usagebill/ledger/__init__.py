"""The local SQLite ledger: schema, migrations, transactions."""

from .db import Ledger, open_ledger

__all__ = ["Ledger", "open_ledger"]
