"""Named migrations, applied in order and recorded in ``_migrations`` (llm's pattern).
Never edit a released migration: add a new one."""

from __future__ import annotations

import time
from typing import Callable

from ..errors import LedgerError

MIGRATIONS: list[Callable] = []


def migration(fn: Callable) -> Callable:
    MIGRATIONS.append(fn)
    return fn


def _applied(ledger) -> set[str] | None:
    """The migrations a ledger has, or None for a new one (no ``_migrations`` table yet)."""
    if not ledger.table_exists("_migrations"):
        return None
    return {r[0] for r in ledger.all("SELECT name FROM _migrations")}


def migrate(ledger) -> None:
    applied = _applied(ledger)
    if applied is not None and applied == {fn.__name__ for fn in MIGRATIONS}:
        return  # the common case, without importing sqlite_utils (start-up time)
    import sqlite_utils

    db = sqlite_utils.Database(ledger.conn)
    with ledger.transaction():
        if "_migrations" not in db.table_names():
            db["_migrations"].create({"name": str, "applied_at": int}, pk="name")
        done = {r["name"] for r in db["_migrations"].rows}
        known = {fn.__name__ for fn in MIGRATIONS}
        if done - known:
            raise LedgerError(
                f"{ledger.path}: made by a newer usagebill (unknown migrations: {', '.join(sorted(done - known))})"
            )
        for fn in MIGRATIONS:
            if fn.__name__ not in done:
                fn(db)
                db["_migrations"].insert({"name": fn.__name__, "applied_at": int(time.time())})


def _immutable(db, table: str) -> None:
    for op in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
        )


@migration
def m001_initial(db) -> None:
    db["customers"].create(
        {"user_id": str, "email": str, "stripe_customer_id": str, "test_clock": str, "created_at": int},
        pk="user_id",
        not_null={"created_at"},
    )
    # the ledger's view of each test clock's time, refreshed whenever a clock is read or advanced
    db["test_clocks"].create({"id": str, "frozen_time": int, "name": str, "updated_at": int}, pk="id")
    db.execute(
        """CREATE TABLE subscriptions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL REFERENCES customers(user_id),
            plan TEXT NOT NULL,             -- plan key (slug of the name)
            interval TEXT NOT NULL,
            currency TEXT NOT NULL,
            anchor INTEGER NOT NULL,        -- billing cycle anchor, Unix seconds
            status TEXT NOT NULL,           -- active | canceled
            created_at INTEGER NOT NULL,
            canceled_at INTEGER,
            stripe_subscription_id TEXT,
            period_start INTEGER,           -- mirrored from Stripe when known
            period_end INTEGER
        )"""
    )
    db.execute("CREATE UNIQUE INDEX subscriptions_one_active ON subscriptions (user_id) WHERE status = 'active'")
    db.execute(
        """CREATE TABLE usage_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,        -- sent to Stripe as the meter event identifier
            user_id TEXT NOT NULL,
            feature TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (amount > 0),
            timestamp INTEGER NOT NULL,
            recorded_at INTEGER NOT NULL,
            idempotency_key TEXT,
            source TEXT NOT NULL            -- record | charge | import
        )"""
    )
    db.execute("CREATE UNIQUE INDEX usage_events_key ON usage_events (user_id, idempotency_key)")
    db.execute("CREATE INDEX usage_events_by_time ON usage_events (user_id, feature, timestamp)")
    _immutable(db, "usage_events")
    db.execute(
        """CREATE TABLE event_delivery (
            event_id TEXT PRIMARY KEY REFERENCES usage_events(id),
            status TEXT NOT NULL,           -- delivered | failed
            attempts INTEGER NOT NULL DEFAULT 0,
            batch_id TEXT,
            last_error TEXT,
            updated_at INTEGER NOT NULL
        )"""
    )
    for name, unit in (("credit_ledger", "feature TEXT NOT NULL"), ("wallet_ledger", "currency TEXT NOT NULL")):
        db.execute(
            f"""CREATE TABLE {name} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                user_id TEXT NOT NULL,
                {unit},
                delta INTEGER NOT NULL,
                balance_after INTEGER NOT NULL,
                reason TEXT NOT NULL,
                period_start INTEGER,
                idempotency_key TEXT,
                created_at INTEGER NOT NULL
            )"""
        )
        _immutable(db, name)
    db.execute("CREATE INDEX credit_ledger_by_user ON credit_ledger (user_id, feature, id)")
    db.execute("CREATE INDEX wallet_ledger_by_user ON wallet_ledger (user_id, id)")
    # renewals applied, one row per (customer, feature or wallet, period): at most once
    db.execute(
        "CREATE TABLE renewals (user_id TEXT NOT NULL, target TEXT NOT NULL, period_start INTEGER NOT NULL, "
        "PRIMARY KEY (user_id, target, period_start))"
    )
    db.execute(
        """CREATE TABLE idempotency_keys (
            user_id TEXT NOT NULL,
            key TEXT NOT NULL,
            operation TEXT NOT NULL,
            request TEXT NOT NULL,          -- canonical JSON of the arguments
            response TEXT NOT NULL,         -- JSON of the original result
            created_at INTEGER NOT NULL,
            PRIMARY KEY (user_id, key)
        )"""
    )


@migration
def m002_stripe(db) -> None:
    # one ledger talks to one Stripe: the sandbox, test mode or live mode (bound on first use)
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # config -> Stripe ids (e.g. price:plan:pro:usd:month, meter:api_calls), with a
    # fingerprint of the fields sync manages, so an unchanged config makes no write call
    db.execute(
        """CREATE TABLE stripe_objects (
            key TEXT PRIMARY KEY,
            stripe_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        )"""
    )
    # coalesced deliveries: the batch id is the meter event identifier, written before sending
    db.execute(
        """CREATE TABLE delivery_batches (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            feature TEXT NOT NULL,
            amount INTEGER NOT NULL,
            timestamp INTEGER NOT NULL,
            status TEXT NOT NULL,          -- pending | delivered | failed
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX event_delivery_by_batch ON event_delivery (batch_id)")


@migration
def m003_included_and_granted(db) -> None:
    """Included (plan) credits apart from granted ones; renewals that know their period and
    subscription; the wallet's sub-cent remainders."""
    # what is left of the plan's allocation, per customer and target (credits:<key> | wallet):
    # reset expires it, consumption takes it first
    db.execute(
        "CREATE TABLE allocations_left (user_id TEXT NOT NULL, target TEXT NOT NULL, "
        "remaining INTEGER NOT NULL CHECK (remaining >= 0), PRIMARY KEY (user_id, target))"
    )
    # credits granted by hand, bought or topped up: each lot stays until used or expired
    db.execute(
        """CREATE TABLE credit_grants (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            feature TEXT NOT NULL,
            amount INTEGER NOT NULL,
            remaining INTEGER NOT NULL CHECK (remaining >= 0),
            expires_at INTEGER,             -- NULL: never
            reason TEXT NOT NULL,
            created_at INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX credit_grants_open ON credit_grants (user_id, feature, remaining)")
    db.execute("ALTER TABLE credit_ledger ADD COLUMN expires_at INTEGER")
    # a renewal's period end, subscription and what it granted (a re-subscription within a
    # period tops up to the new plan's allocation instead of granting it again)
    db.execute("ALTER TABLE renewals ADD COLUMN period_end INTEGER")
    db.execute("ALTER TABLE renewals ADD COLUMN subscription_id INTEGER")
    db.execute("ALTER TABLE renewals ADD COLUMN granted INTEGER")
    # the part of a minor unit the customer has paid ahead, per feature (0 <= paid_ahead < 1,
    # a decimal string): wallet charges round up and carry it, so no split of units is cheaper
    db.execute(
        "CREATE TABLE wallet_remainders (user_id TEXT NOT NULL, feature TEXT NOT NULL, paid_ahead TEXT NOT NULL, "
        "PRIMARY KEY (user_id, feature))"
    )
    # credits held before this migration: one grant lot without expiry per customer and
    # feature (nothing vanishes at the next reset; the allocation part is not known any more)
    db.execute(
        """INSERT INTO credit_grants (user_id, feature, amount, remaining, expires_at, reason, created_at)
           SELECT user_id, feature, balance_after, balance_after, NULL, 'before_m003', created_at
           FROM credit_ledger c WHERE id = (SELECT MAX(id) FROM credit_ledger d
                                            WHERE d.user_id = c.user_id AND d.feature = c.feature)
             AND balance_after > 0"""
    )


@migration
def m004_closed_periods(db) -> None:
    # the ledger's mirror of Stripe's invoice of each billing period of a subscription: which
    # invoice bills its usage, and whether Stripe has finalized it (usagebill.closing)
    db.execute(
        """CREATE TABLE period_invoices (
            subscription_id INTEGER NOT NULL REFERENCES subscriptions(id),
            period_start INTEGER NOT NULL,
            period_end INTEGER NOT NULL,    -- [period_start, period_end): the usage it bills
            invoice_id TEXT NOT NULL,
            status TEXT NOT NULL,           -- Stripe's: draft | open | paid | uncollectible | void
            finalized_at INTEGER,           -- NULL while a draft: usage sent now is still billed
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (subscription_id, period_start)
        )"""
    )
    # usage that missed its period's final invoice, billed as one pending invoice item per
    # customer, feature and period; the id is the item's idempotency key, written before sending
    db.execute(
        """CREATE TABLE late_items (
            id TEXT PRIMARY KEY,            -- ubl_...
            user_id TEXT NOT NULL,
            feature TEXT NOT NULL,
            subscription_id INTEGER NOT NULL,
            period_start INTEGER NOT NULL,
            period_end INTEGER NOT NULL,
            missed_invoice TEXT NOT NULL,   -- the final invoice the usage was too late for
            quantity INTEGER NOT NULL,
            unit_amount TEXT NOT NULL,      -- Decimal minor units, the plan's price_per_credit
            currency TEXT NOT NULL,
            description TEXT NOT NULL,
            status TEXT NOT NULL,           -- pending | created | failed
            stripe_invoice_item_id TEXT,
            last_error TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )"""
    )
    db.execute("ALTER TABLE event_delivery ADD COLUMN late_item_id TEXT")
    db.execute("CREATE INDEX event_delivery_by_late_item ON event_delivery (late_item_id)")


@migration
def m005_customer_removed(db) -> None:
    # customers remove: a customer with history is retired (its rows stay), not deleted
    db.execute("ALTER TABLE customers ADD COLUMN removed_at INTEGER")


@migration
def m005_subscription_prices(db) -> None:
    # the unit price Stripe bills for each usage feature of a subscription, from a moment on
    # (subscribe, then each price change that sync makes), so summary estimates what Stripe bills
    db.execute(
        """CREATE TABLE subscription_prices (
            subscription_id INTEGER NOT NULL REFERENCES subscriptions(id),
            feature TEXT NOT NULL,
            unit_price TEXT NOT NULL,       -- Decimal, minor units per unit
            effective_from INTEGER NOT NULL,
            PRIMARY KEY (subscription_id, feature, effective_from)
        )"""
    )


@migration
def m006_clock_advances(db) -> None:
    # a test-clock advance in flight: its absolute target, written before Stripe is asked
    db.execute(
        """CREATE TABLE clock_advances (
            clock_id TEXT PRIMARY KEY,
            from_time INTEGER NOT NULL,
            target INTEGER NOT NULL,
            spec TEXT NOT NULL,             -- the --to as given (+1month2h, or a time)
            started_at INTEGER NOT NULL
        )"""
    )


@migration
def m007_first_sent(db) -> None:
    # when an event was first sent on its own: Stripe de-duplicates identifiers for 24 hours
    # only, so a push must not blindly re-send one sent longer ago (gateway.delivery)
    db.execute("ALTER TABLE event_delivery ADD COLUMN first_sent_at INTEGER")


@migration
def m008_usage_amount_in_time_index(db) -> None:
    # summary, summary --daily and top sum amounts over (customer, feature, time) ranges: with
    # the amount in the index they read it alone, not one table row per event (at 10^7 events
    # top went from 67 s to under 4 s). It replaces the old index: still two secondary indexes.
    db.execute("DROP INDEX usage_events_by_time")
    db.execute("CREATE INDEX usage_events_by_time ON usage_events (user_id, feature, timestamp, amount)")


@migration
def m009_sending_index(db) -> None:
    # every push looks for events sent long ago and never confirmed (outbox.stale_items): a
    # small index of the 'sending' rows keeps that O(unconfirmed), not O(every event delivered)
    db.execute("CREATE INDEX event_delivery_sending ON event_delivery (first_sent_at) WHERE status = 'sending'")


@migration
def m010_outbox_index_and_leases(db) -> None:
    # push and status find what is still to deliver in O(pending), not by reading every event
    # ever recorded (ledger/outbox.py): every event below the watermark (settings
    # outbox_watermark) has a delivery row, and the rows still pending (or failed) are in small
    # partial indexes ordered by the event's seq. What counts the whole history (delivered,
    # billed late) is kept in delivery_totals as events are delivered.
    db.execute("ALTER TABLE event_delivery ADD COLUMN seq INTEGER")
    # several push workers at once: a claim holds its rows for one worker until claimed_until
    for table in ("event_delivery", "delivery_batches", "late_items"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN claimed_until INTEGER")
        db.execute(f"ALTER TABLE {table} ADD COLUMN claimed_by TEXT")
    db.execute(
        "UPDATE event_delivery SET seq = (SELECT e.seq FROM usage_events e WHERE e.id = event_delivery.event_id) "
        "WHERE status NOT IN ('delivered', 'invoiced')"
    )
    db.execute(
        "CREATE INDEX event_delivery_open ON event_delivery (seq) WHERE status IN ('queued', 'sending', 'batched', 'late')"
    )
    db.execute("CREATE INDEX event_delivery_failed ON event_delivery (seq) WHERE status = 'failed'")
    # the 'sending' rows are in event_delivery_open now: m009's index of them would only cost
    # every send one more index entry to write and delete
    db.execute("DROP INDEX event_delivery_sending")
    # an event's row names a batch or a late item only when it was coalesced or billed late:
    # index those rows only (every event delivered on its own had a NULL entry in both)
    db.execute("DROP INDEX event_delivery_by_batch")
    db.execute("CREATE INDEX event_delivery_by_batch ON event_delivery (batch_id) WHERE batch_id IS NOT NULL")
    db.execute("DROP INDEX event_delivery_by_late_item")
    db.execute("CREATE INDEX event_delivery_by_late_item ON event_delivery (late_item_id) WHERE late_item_id IS NOT NULL")
    db.execute("CREATE INDEX delivery_batches_pending ON delivery_batches (created_at, id) WHERE status = 'pending'")
    db.execute("CREATE TABLE delivery_totals (status TEXT PRIMARY KEY, events INTEGER NOT NULL)")
    db.execute(
        "INSERT INTO delivery_totals (status, events) SELECT s.status, "
        "(SELECT COUNT(*) FROM event_delivery d WHERE d.status = s.status) FROM "
        "(SELECT 'delivered' AS status UNION ALL SELECT 'invoiced') s"
    )
    # the lowest seq of an event without a delivery row (or one past the last event)
    db.execute(
        "INSERT INTO settings (key, value) SELECT 'outbox_watermark', CAST(COALESCE("
        "(SELECT MIN(e.seq) FROM usage_events e WHERE NOT EXISTS (SELECT 1 FROM event_delivery d WHERE d.event_id = e.id)), "
        "(SELECT COALESCE(MAX(seq), 0) + 1 FROM usage_events)) AS TEXT)"
    )


@migration
def m011_usage_totals(db) -> None:
    # units and events per customer, feature, UTC hour and UTC day (ledger/totals.py), added to
    # by every insert of usage events in its transaction: summary reads a month as ~31 days,
    # ~46 hours and the events of two ends under an hour, not every event of the period (a
    # customer with 10^6 events in it took 80 ms); counted here for the events already there
    db.execute(
        """CREATE TABLE usage_totals (
            user_id TEXT NOT NULL,
            feature TEXT NOT NULL,
            span INTEGER NOT NULL,          -- 3600 (an hour) or 86400 (a day)
            since INTEGER NOT NULL,         -- its first second, a multiple of span
            units INTEGER NOT NULL,
            events INTEGER NOT NULL,
            PRIMARY KEY (user_id, feature, span, since)
        ) WITHOUT ROWID"""
    )
    for span in (3600, 86400):
        db.execute(
            "INSERT INTO usage_totals (user_id, feature, span, since, units, events) "
            f"SELECT user_id, feature, {span}, timestamp - timestamp % {span}, SUM(amount), COUNT(*) "
            f"FROM usage_events GROUP BY user_id, feature, timestamp - timestamp % {span}"
        )


@migration
def m012_subscriptions_by_user(db) -> None:
    # reading a customer's subscription asks when its previous one ended (closing.previous_end:
    # user_id = ? AND id < ?), which had no index but the rowid: a scan of every older
    # subscription, 1.5 ms per customer at 10,000 customers (an import of rows of 10,000
    # customers spent 14 s there; every record paid it once)
    db.execute("CREATE INDEX subscriptions_by_user ON subscriptions (user_id, id)")
