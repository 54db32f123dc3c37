"""Customers, their subscriptions and the ledger's view of test-clock time: every SQL
statement over the ``customers``, ``subscriptions`` and ``test_clocks`` tables."""

from __future__ import annotations


from .db import Ledger, Row

ACTIVE = "active"
CANCELED = "canceled"


# -- customers -------------------------------------------------------------------------------

def get_customer(ledger: Ledger, user_id: str) -> Row | None:
    return ledger.one("SELECT * FROM customers WHERE user_id = ?", (user_id,))


# the customer, its test clock's time (and whether an advance of it is unfinished), and its
# active subscription with what the billing rules need of it, in one statement: a write
# transaction of one customer reads all of it first, and on PostgreSQL each statement is a
# round trip (usagebill.context keeps it for the rest of the transaction, until a write)
_SNAPSHOT = (
    "SELECT c.user_id, c.email, c.stripe_customer_id, c.test_clock, c.created_at, c.removed_at, "
    "t.frozen_time AS clock_time, "
    "(SELECT 1 FROM clock_advances a WHERE a.clock_id = c.test_clock) AS clock_advancing, "
    "s.id AS s_id, s.plan AS s_plan, s.interval AS s_interval, s.currency AS s_currency, s.anchor AS s_anchor, "
    "s.status AS s_status, s.created_at AS s_created_at, s.canceled_at AS s_canceled_at, "
    "s.stripe_subscription_id AS s_stripe_subscription_id, s.period_start AS s_period_start, "
    "s.period_end AS s_period_end, "
    "(SELECT p.period_end FROM period_invoices p WHERE p.subscription_id = s.id AND p.finalized_at IS NOT NULL "
    " ORDER BY p.period_end DESC LIMIT 1) AS s_closed_until, "
    "(SELECT p.invoice_id FROM period_invoices p WHERE p.subscription_id = s.id AND p.finalized_at IS NOT NULL "
    " ORDER BY p.period_end DESC LIMIT 1) AS s_closed_invoice, "
    "(SELECT MAX(o.canceled_at) FROM subscriptions o WHERE o.user_id = c.user_id AND o.id < s.id) AS s_previous_end, "
    "(SELECT {agg}(q.feature || '=' || q.since, ',') FROM (SELECT sp.feature, MAX(sp.effective_from) AS since "
    " FROM subscription_prices sp WHERE sp.subscription_id = s.id GROUP BY sp.feature) q) AS s_priced_since, "
    # what a renewal check needs (usagebill.renewals.refresh): the soonest expiry of a granted
    # lot with credits left, and the latest period each allocation was renewed for
    "(SELECT MIN(g.expires_at) FROM credit_grants g WHERE g.user_id = c.user_id AND g.remaining > 0 "
    " AND g.expires_at IS NOT NULL) AS next_expiry, "
    "(SELECT {agg}(r.target || '=' || r.since, ',') FROM (SELECT rn.target, MAX(rn.period_start) AS since "
    " FROM renewals rn WHERE rn.user_id = c.user_id GROUP BY rn.target) r) AS renewed "
    f"FROM customers c LEFT JOIN test_clocks t ON t.id = c.test_clock "
    f"LEFT JOIN subscriptions s ON s.user_id = c.user_id AND s.status = '{ACTIVE}' WHERE c.user_id = ?"
)


def snapshot(ledger: Ledger, user_id: str) -> Row | None:
    """The customer with its clock and active subscription (``s_*`` columns, NULL without
    one); None for an unknown customer."""
    return ledger.one(_SNAPSHOT.replace("{agg}", ledger.string_agg), (user_id,))


def snapshots(ledger: Ledger, user_ids: list[str]) -> dict[str, Row]:
    """``snapshot`` of many customers, a statement per 500 (an import's new customers of a
    batch: on PostgreSQL one round trip each would cost more than the rows); unknown ones
    are left out."""
    found: dict[str, Row] = {}
    sql = _SNAPSHOT.replace("{agg}", ledger.string_agg).replace("WHERE c.user_id = ?", "WHERE c.user_id IN ({})")
    for i in range(0, len(user_ids), 500):
        chunk = user_ids[i:i + 500]
        found.update((r["user_id"], r) for r in ledger.all(sql.format(", ".join("?" * len(chunk))), chunk))
    return found


def list_customers(ledger: Ledger) -> list[Row]:
    return ledger.all("SELECT * FROM customers ORDER BY user_id")


def insert_customer(
    ledger: Ledger, user_id: str, email: str | None, stripe_customer_id: str | None, test_clock: str | None, now: int
) -> None:
    ledger.execute(
        "INSERT INTO customers (user_id, email, stripe_customer_id, test_clock, created_at) VALUES (?, ?, ?, ?, ?)",
        (user_id, email, stripe_customer_id, test_clock, now),
    )


def set_stripe_customer(ledger: Ledger, user_id: str, stripe_customer_id: str) -> None:
    ledger.execute("UPDATE customers SET stripe_customer_id = ? WHERE user_id = ?", (stripe_customer_id, user_id))


def set_email(ledger: Ledger, user_id: str, email: str) -> None:
    ledger.execute("UPDATE customers SET email = ? WHERE user_id = ?", (email, user_id))


HISTORY_TABLES = ("subscriptions", "usage_events", "credit_ledger", "wallet_ledger")


def customer_history(ledger: Ledger, user_id: str) -> dict[str, int]:
    """How many rows of billing history the customer has, per table."""
    return {t: ledger.one(f"SELECT COUNT(*) FROM {t} WHERE user_id = ?", (user_id,))[0] for t in HISTORY_TABLES}


def delete_customer(ledger: Ledger, user_id: str) -> None:
    """Only for a customer without history (``customer_history`` all zero)."""
    ledger.execute("DELETE FROM idempotency_keys WHERE user_id = ?", (user_id,))
    ledger.execute("DELETE FROM customers WHERE user_id = ?", (user_id,))


def retire_customer(ledger: Ledger, user_id: str, now: int) -> None:
    ledger.execute("UPDATE customers SET removed_at = ? WHERE user_id = ? AND removed_at IS NULL", (now, user_id))


def clock_time(ledger: Ledger, user_id: str) -> int | None:
    """The frozen time of the customer's test clock, or None without one (or unknown yet)."""
    row = ledger.one(
        "SELECT c.test_clock, t.frozen_time FROM customers c LEFT JOIN test_clocks t ON t.id = c.test_clock "
        "WHERE c.user_id = ?",
        (user_id,),
    )
    if row is not None and row["test_clock"] and row["frozen_time"] is not None:
        return int(row["frozen_time"])
    return None


def upsert_clock(ledger: Ledger, clock_id: str, frozen_time: int, name: str | None, now: int) -> None:
    ledger.execute(
        "INSERT INTO test_clocks (id, frozen_time, name, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET frozen_time = excluded.frozen_time, "
        "name = COALESCE(excluded.name, test_clocks.name), updated_at = excluded.updated_at",
        (clock_id, int(frozen_time), name, now),
    )


# -- subscriptions ---------------------------------------------------------------------------

def active_subscription(ledger: Ledger, user_id: str) -> Row | None:
    # the status as a literal: SQLite uses the partial index subscriptions_one_active
    # (WHERE status = 'active') only for a query that names the same value
    return ledger.one(f"SELECT * FROM subscriptions WHERE user_id = ? AND status = '{ACTIVE}'", (user_id,))


def active_subscriptions(ledger: Ledger) -> list[Row]:
    """Every active subscription, by customer."""
    return ledger.all("SELECT * FROM subscriptions WHERE status = ? ORDER BY user_id", (ACTIVE,))


def insert_subscription(
    ledger: Ledger,
    user_id: str,
    plan: str,
    interval: str,
    currency: str,
    anchor: int,
    now: int,
    stripe_subscription_id: str | None,
    period: tuple[int, int] | None,
) -> int:
    return ledger.insert_id(
        "INSERT INTO subscriptions (user_id, plan, interval, currency, anchor, status, created_at, "
        "stripe_subscription_id, period_start, period_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            user_id, plan, interval, currency, anchor, ACTIVE, now, stripe_subscription_id,
            period[0] if period else None, period[1] if period else None,
        ),
    )


def count_subscriptions(ledger: Ledger, user_id: str) -> int:
    """Every subscription the customer has had, active or not."""
    return ledger.one("SELECT COUNT(*) FROM subscriptions WHERE user_id = ?", (user_id,))[0]


def cancel_subscription(ledger: Ledger, subscription_id: int, now: int) -> None:
    ledger.execute(
        "UPDATE subscriptions SET status = ?, canceled_at = ? WHERE id = ?", (CANCELED, now, subscription_id)
    )


def set_subscription_period(
    ledger: Ledger, subscription_id: int, start: int, end: int, stripe_subscription_id: str | None
) -> None:
    ledger.execute(
        "UPDATE subscriptions SET period_start = ?, period_end = ?, "
        "stripe_subscription_id = COALESCE(?, stripe_subscription_id) WHERE id = ?",
        (int(start), int(end), stripe_subscription_id, subscription_id),
    )
