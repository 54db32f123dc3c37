"""The plan's allocation (included credits, included wallet money) kept apart from what was
granted, bought or topped up: what is left of it, how a period's renewal changes it, and
consumption taking it first.

Per period of a subscription, for each target (``credits:<feature>``, ``wallet``):

* ``reset``: the unused part of the previous allocation expires, the new one is granted.
  Nothing else expires: granted credits stay, and a wallet's debt stays owed (what is left
  of a wallet allocation is never more than a positive balance, so expiring it never turns
  a debt into money).
* ``add``: the new allocation is added to what is left.
* A re-subscription within a period already granted (cancel and subscribe again, or another
  plan) is not a new period: it tops the period up to the new plan's allocation when that is
  higher (100 -> 500 grants 400), and grants nothing when it is the same or lower.
"""

from __future__ import annotations

from .balances import WALLET, append
from .config import Allocation
from .ledger import Ledger
from .ledger import balances as journal

WALLET_TARGET = "wallet"


def credits_target(feature: str) -> str:
    return f"credits:{feature}"


def left(ledger: Ledger, user_id: str, target: str) -> int:
    return journal.allocation_left(ledger, user_id, target)


def take(ledger: Ledger, user_id: str, target: str, amount: int) -> int:
    """Consume up to ``amount`` from what is left of the allocation; returns what it took."""
    remaining = journal.allocation_left(ledger, user_id, target)
    taken = min(remaining, amount)
    if taken:
        journal.set_allocation_left(ledger, user_id, target, remaining - taken)
    return taken


def renew(
    ledger: Ledger, table: str, user_id: str, unit: str, target: str, grant: Allocation, period: tuple[int, int],
    subscription_id: int, now: int, *, first: bool,
) -> bool:
    """Apply the allocation of ``period`` once (keyed by customer, target, period start);
    ``first`` for the subscription's first period. Returns whether it was applied now."""
    covered = journal.allocation_covering(ledger, user_id, target, period[0], subscription_id) if first else None
    level = grant.allocation if covered is None else max(covered, grant.allocation)
    if not journal.claim_renewal(ledger, user_id, target, period[0], period[1], subscription_id, level):
        return False
    remaining = journal.allocation_left(ledger, user_id, target)
    if covered is not None:  # a re-subscription within a granted period: top up only
        delta, reason, remaining = level - covered, "plan_grant", remaining + level - covered
        if not delta:
            return True
    elif grant.on_renewal == "reset":
        delta, remaining = grant.allocation - remaining, grant.allocation
        reason = "plan_grant" if first else "renewal_reset"
    else:
        delta, remaining = grant.allocation, remaining + grant.allocation
        reason = "plan_grant" if first else "renewal_add"
    after = append(ledger, table, user_id, unit, delta, reason, now, period_start=period[0])
    if table == WALLET:
        remaining = min(remaining, max(after, 0))  # an allocation that paid a debt is spent
    journal.set_allocation_left(ledger, user_id, target, remaining)
    return True


def wallet_spent(ledger: Ledger, user_id: str, amount: int) -> None:
    """Money taken from a wallet takes the allocation first."""
    take(ledger, user_id, WALLET_TARGET, amount)

