"""The config against the live subscriptions: what ``billing.toml`` may not drop while active
subscriptions still use it. A plan, one of its prices (currency and interval), or one of its
usage features that Stripe bills on live subscriptions cannot just disappear: its
subscribers would be billed for nothing, or their usage delivered and never billed. Removing
(or renaming: a removal plus an addition) is refused by ``config check`` and ``sync`` with a
message naming the subscriptions, until they are cancelled or the config is put back."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .errors import ConfigError
from .ledger import accounts, mapping, subscription_prices


@dataclass(frozen=True)
class InUse:
    what: str  # "plan 'team'", "feature 'ai_tokens' of plan 'Team'", ...
    users: tuple[str, ...]


def removed_in_use(config: Config, ledger) -> list[InUse]:
    """What active subscriptions use that the config no longer has, in a stable order."""
    found: dict[str, list[str]] = {}
    usage_keys = mapping.all_keys(ledger, "price:usage:")
    plans = {p.key: p for p in config.plans}
    for row in accounts.active_subscriptions(ledger):
        user, plan = row["user_id"], plans.get(row["plan"])
        if plan is None:
            found.setdefault(f"plan {row['plan']!r}", []).append(user)
            continue
        if not any(p.currency == row["currency"] and p.interval == row["interval"] for p in plan.prices):
            found.setdefault(f"the {row['currency']} {row['interval']} price of plan {plan.name!r}", []).append(user)
        # usage features Stripe bills on this subscription: recorded at subscribe / sync, or
        # (for older subscriptions) the metered prices sync made for the plan
        billed = set(subscription_prices.history(ledger, row["id"]))
        prefix = f"price:usage:{plan.key}:"
        suffix = f":{row['currency']}:{row['interval']}"
        billed |= {k[len(prefix):-len(suffix)] for k in usage_keys if k.startswith(prefix) and k.endswith(suffix)}
        for key in sorted(billed):
            f = plan.features.get(key)
            if f is None or not f.track_usage:
                found.setdefault(f"usage feature {key!r} of plan {plan.name!r}", []).append(user)
    return [InUse(what, tuple(sorted(users))) for what, users in found.items()]


def check(config: Config, ledger) -> None:
    """ConfigError naming every removal that active subscriptions still use."""
    problems = removed_in_use(config, ledger)
    if not problems:
        return
    parts = []
    for p in problems:
        users = ", ".join(p.users[:5]) + (f" and {len(p.users) - 5} more" if len(p.users) > 5 else "")
        parts.append(f"{p.what} ({len(p.users)} active subscription(s): {users})")
    raise ConfigError(
        f"{config.path.name}: removes what active subscriptions still use: {'; '.join(parts)}. "
        "Put it back, or cancel those subscriptions first (a rename is a removal plus an addition)"
    )


def check_config_file(config: Config, db_path=None) -> None:
    """``config check``: the same refusal, against the ledger when there is one (``db_path``,
    else the config's default); no ledger yet means no subscription to protect."""
    from pathlib import Path

    from .billing import default_db_path
    from .ledger import open_ledger
    from .ledger.db import is_url

    path = db_path if db_path is not None else default_db_path(config)
    if str(path) != ":memory:" and not is_url(path) and not Path(path).exists():
        return
    ledger = open_ledger(path)
    try:
        check(config, ledger)
    finally:
        ledger.close()
