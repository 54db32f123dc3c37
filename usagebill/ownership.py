"""A ledger belongs to one billing.toml. Two configs sharing a ledger would each archive the
other's prices at ``sync`` and break each other's commands, so the ledger records its
config (as a path relative to the ledger's folder: moving the whole project keeps it) and
refuses another one. ``usagebill config adopt`` moves a ledger to a config deliberately.

A PostgreSQL ledger has no folder, and the servers sharing it each hold their own copy of the
config wherever they deploy it: it records the config's file name only."""

from __future__ import annotations

import os

from .errors import ConfigError
from .ledger import Ledger
from .ledger import settings

KEY = "config"


def identity(config_path: str | os.PathLike, ledger: Ledger) -> str:
    config = os.path.realpath(config_path)
    if ledger.dialect != "sqlite":
        return os.path.basename(config)
    return os.path.relpath(config, os.path.dirname(os.path.realpath(ledger.path)))


def check(ledger: Ledger, config_path: str | os.PathLike) -> None:
    """Bind a new ledger to this config; refuse a ledger bound to another one."""
    if ledger.path == ":memory:":
        return
    mine = identity(config_path, ledger)
    recorded = settings.get(ledger, KEY)
    if recorded is None:
        if not ledger.readonly:
            settings.put(ledger, KEY, mine)
        return
    if recorded != mine:
        if ledger.dialect != "sqlite":
            theirs = f"named {recorded}"
        else:
            theirs = os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(ledger.path)), recorded))
        raise ConfigError(
            f"the ledger {ledger.path} belongs to the config {theirs}, not {os.path.realpath(config_path)}: two "
            "configs sharing a ledger undo each other's Stripe catalogue. Use another --db, or, to move this "
            "ledger to this config on purpose: usagebill --config "
            f"{config_path} --db {ledger.path} config adopt"
        )


def adopt(ledger: Ledger, config_path: str | os.PathLike) -> tuple[str | None, str]:
    """Make ``config_path`` the ledger's config; returns (the previous one, the new one)."""
    before = settings.get(ledger, KEY)
    after = identity(config_path, ledger)
    settings.put(ledger, KEY, after)
    return before, after
