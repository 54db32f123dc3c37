"""config adopt: move a ledger to this billing.toml on purpose."""

from __future__ import annotations

from .app import json_option, pass_state
from .core_cmds import config_group
from .output import emit_json, say


@config_group.command("adopt")
@json_option
@pass_state
def config_adopt(state, as_json: bool) -> None:
    """Make this billing.toml the ledger's config (after moving or renaming it). A ledger
    refuses any other config: two configs sharing one would undo each other's Stripe
    catalogue at sync. Run usagebill sync --dry-run next to see what the new config changes.

    \b
    Example:
      usagebill --config billing.toml config adopt
    """
    from ..ownership import adopt

    state.adopting = True
    billing = state.billing
    before, after = adopt(billing.ledger, state.config_path)
    if as_json:
        emit_json({"ledger": billing.db_path, "config": after, "previous": before})
    else:
        say(f"The ledger {billing.db_path} now belongs to {state.config_path}"
            + (f" (it was {before}, relative to the ledger's folder)" if before and before != after else ""))
