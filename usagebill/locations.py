"""Where things live on disk: the ledger (a SQLite file, or a PostgreSQL URL from the config)
and the built-in sandbox's state file."""

from __future__ import annotations

import os
from pathlib import Path

from .ledger.db import is_url


def sandbox_path_for(ledger: str | os.PathLike, config_path: str | os.PathLike | None = None) -> Path:
    """The built-in sandbox's state: ``sandbox.db`` beside a SQLite ledger; for a PostgreSQL
    ledger (no folder of its own) ``.usagebill/sandbox.db`` beside the config."""
    target = os.fspath(ledger)
    if is_url(target):
        return (Path(config_path).parent if config_path is not None else Path(".")) / ".usagebill" / "sandbox.db"
    p = Path(target)
    return (Path(".") if target == ":memory:" else p.parent) / "sandbox.db"
