"""What every primitive needs: the config, the ledger, each customer's clock, and the
customer's active subscription and current billing period."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable

from .config import Config, Feature, Plan
from .errors import ConfigError, NotFoundError, UsagebillError
from .ledger import Ledger, accounts, subscription_prices
from .ledger import clocks as ledger_clocks
from .periods import now as real_now
from .periods import period_at
from .rules import check_user_id
from .suggest import did_you_mean


@dataclass(frozen=True)
class Subscription:
    id: int
    user_id: str
    plan_key: str
    interval: str
    currency: str
    anchor: int
    status: str
    created_at: int
    stripe_subscription_id: str | None = None
    period_start: int | None = None  # mirrored from Stripe
    period_end: int | None = None
    closed_until: int | None = None  # periods before this are invoiced for good (usagebill.closing)
    closed_invoice: str | None = None  # the last finalized invoice
    canceled_at: int | None = None
    usage_from: int = 0  # its first usage second: the anchor, or one past the previous one's end
    config: Config | None = field(default=None, repr=False, compare=False)
    # feature -> when Stripe began billing it at its current price (subscribe, or a sync that
    # added it or changed its price); earlier usage of it is billed already, or never
    priced_since: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.usage_from < self.anchor:
            object.__setattr__(self, "usage_from", self.anchor)

    @property
    def plan(self) -> Plan:
        """The subscription's plan in the config. A plan the config no longer has is an error
        for this customer only, when its plan is needed: other customers, and this one's
        periods, delivery and cancellation, keep working."""
        try:
            return self.config.plan(self.plan_key)
        except NotFoundError:
            raise ConfigError(
                f"customer {self.user_id!r} is subscribed to plan {self.plan_key!r}, which {self.config.path.name} "
                f"no longer has: put the plan back, or cancel the subscription (usagebill cancel {self.user_id})"
            ) from None

    @property
    def plan_name(self) -> str:
        """The plan's name, or its key when the config no longer has it."""
        found = [p for p in self.config.plans if p.key == self.plan_key]
        return found[0].name if found else self.plan_key

    def period(self, at: int) -> tuple[int, int]:
        """The billing period containing ``at``: Stripe's mirrored one when it covers ``at``,
        else computed from the anchor."""
        if self.period_start is not None and self.period_end is not None and self.period_start <= at < self.period_end:
            return self.period_start, self.period_end
        return period_at(self.anchor, self.interval, at)

    @property
    def price(self):
        return self.plan.price_for(self.interval, self.currency)


class Context:
    def __init__(self, config: Config, ledger: Ledger, clock: Callable[[], int] | None = None):
        self.config = config
        self.ledger = ledger
        self.clock = clock or real_now
        # set by whoever holds a Stripe connection: takes a test clock's time from Stripe
        # when an advance of it was not finished in the ledger (see gateway.clocks)
        self.refresh_clock: Callable[[str], None] | None = None
        self._memo = None  # (ledger.writes, user_id, snapshot row): see _snapshot
        self._many = None  # (ledger.writes, {user_id: snapshot row}, user ids read): see snapshots_of

    @contextmanager
    def snapshots_of(self, user_ids):
        """Within: the snapshots of ``user_ids`` read at once (``accounts.snapshots``), each
        served from that read until the ledger is written (the importer's checks of a
        batch's new customers: one statement per 500, not three per customer)."""
        ids = []
        for u in user_ids:
            try:
                ids.append(check_user_id(u))
            except UsagebillError:
                pass  # refused, with its message, when looked up one by one
        rows = accounts.snapshots(self.ledger, ids)
        self._many = (self.ledger.writes, rows, set(ids))
        try:
            yield
        finally:
            self._many = None

    def _snapshot(self, user_id: str):
        """The customer, its clock and its active subscription in one statement; inside a
        write transaction kept until the transaction writes anything (a write transaction
        of one customer reads these several times, and each read is a round trip on
        PostgreSQL). Outside a transaction each call reads afresh (but in ``snapshots_of``)."""
        ledger = self.ledger
        many = self._many
        if many is not None and many[0] == ledger.writes and user_id in many[2]:
            return many[1].get(user_id)
        memo = self._memo
        if ledger.in_transaction and memo is not None and memo[0] == ledger.writes and memo[1] == user_id:
            return memo[2]
        row = accounts.snapshot(ledger, check_user_id(user_id))
        self._memo = (ledger.writes, user_id, row) if ledger.in_transaction else None
        return row

    def customer(self, user_id: str):
        row = self._snapshot(user_id)
        if row is None:
            raise NotFoundError(f"unknown customer {user_id!r} (add it with: usagebill customers add {user_id})")
        return row

    def now_for(self, user_id: str) -> int:
        """The customer's "now": its test clock's time when it has one, else real time."""
        row = self._snapshot(user_id)
        frozen = row["clock_time"] if row is not None and row["test_clock"] else None
        if frozen is None:
            return self.clock()
        if self.refresh_clock is not None and row["clock_advancing"]:
            stale = ledger_clocks.stale_clock_of(self.ledger, user_id)
            if stale is not None:
                self.refresh_clock(stale["clock_id"])
                frozen = accounts.clock_time(self.ledger, user_id)
        return int(frozen)

    def next_expiry(self, user_id: str) -> int | None:
        """When the customer's first granted lot with credits left expires (None: none does)."""
        row = self._snapshot(user_id)
        return None if row is None else row["next_expiry"]

    def renewed(self, user_id: str) -> dict[str, int]:
        """Each allocation target's latest renewed period start."""
        row = self._snapshot(user_id)
        text = None if row is None else row["renewed"]
        return {t: int(since) for t, since in (p.rsplit("=", 1) for p in text.split(","))} if text else {}

    def subscription(self, user_id: str) -> Subscription | None:
        row = self._snapshot(user_id)
        if row is None or row["s_id"] is None:
            return None
        priced = row["s_priced_since"]
        return Subscription(
            id=row["s_id"],
            user_id=row["user_id"],
            plan_key=row["s_plan"],
            interval=row["s_interval"],
            currency=row["s_currency"],
            anchor=row["s_anchor"],
            status=row["s_status"],
            created_at=row["s_created_at"],
            stripe_subscription_id=row["s_stripe_subscription_id"],
            period_start=row["s_period_start"],
            period_end=row["s_period_end"],
            closed_until=row["s_closed_until"],
            closed_invoice=row["s_closed_invoice"],
            canceled_at=row["s_canceled_at"],
            usage_from=row["s_previous_end"] + 1 if row["s_previous_end"] is not None else row["s_anchor"],
            config=self.config,
            priced_since={k: int(v) for k, v in (p.split("=") for p in priced.split(","))} if priced else {},
        )

    def subscription_from_row(self, row) -> Subscription:
        from .ledger.closing import last_closed, previous_end

        closed = last_closed(self.ledger, row["id"])
        return self.subscription_of(
            row, closed_until=closed.period_end if closed else None, closed_invoice=closed.invoice_id if closed else None,
            before=previous_end(self.ledger, row["user_id"], row["id"]),
            priced_since=subscription_prices.latest(self.ledger, row["id"]))

    def subscription_of(self, row, *, closed_until: int | None, closed_invoice: str | None, before: int | None,
                        priced_since: dict) -> Subscription:
        """A subscription from its ledger row and what else the ledger holds of it, read by the
        caller (``subscription_from_row``: one at a time; reconcile: many at once): its last
        finalized period's end and invoice, when the customer's subscription before it ended,
        and when each feature's current price took effect."""
        return Subscription(
            id=row["id"],
            user_id=row["user_id"],
            plan_key=row["plan"],
            interval=row["interval"],
            currency=row["currency"],
            anchor=row["anchor"],
            status=row["status"],
            created_at=row["created_at"],
            stripe_subscription_id=row["stripe_subscription_id"],
            period_start=row["period_start"],
            period_end=row["period_end"],
            closed_until=closed_until,
            closed_invoice=closed_invoice,
            canceled_at=row["canceled_at"],
            # the second a subscription is cancelled in is its own (its final invoice bills it)
            usage_from=before + 1 if before is not None else row["anchor"],
            config=self.config,
            priced_since=priced_since,
        )

    def require_subscription(self, user_id: str) -> Subscription:
        self.customer(user_id)
        sub = self.subscription(user_id)
        if sub is None:
            raise NotFoundError(
                f"customer {user_id!r} has no active subscription (subscribe it with: usagebill subscribe {user_id} PLAN)"
            )
        return sub

    def feature(self, key: str) -> Feature:
        """A feature by key, from any plan (for credits, which may be granted by hand)."""
        for plan in self.config.plans:
            if key in plan.features:
                return plan.features[key]
        keys = self.config.feature_keys()
        raise NotFoundError(f"unknown feature {key!r}{did_you_mean(key, keys)} (features: {', '.join(keys) or 'none'})")

    def customer_feature(self, user_id: str, key: str) -> Feature:
        """The feature as the customer's own plan defines it (its price, auto top-up), never
        another plan's feature of the same key. Without a subscription, the bare feature:
        credits may be held, but no plan gives an auto top-up or a price."""
        sub = self.subscription(user_id)
        if sub is not None:
            return self.plan_feature(sub, key)
        return replace(self.feature(key), auto_top_up=None, price_per_credit=None, credits=None)

    def plan_feature(self, sub: Subscription, key: str) -> Feature:
        self.feature(key)  # unknown anywhere: say so first
        if key not in sub.plan.features:
            raise NotFoundError(f"plan {sub.plan.name!r} of customer {sub.user_id!r} has no feature {key!r}")
        return sub.plan.features[key]
