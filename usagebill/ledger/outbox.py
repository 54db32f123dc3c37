"""The ledger side of delivery: which usage events still have to reach Stripe, and what became
of the others. Plain SQL over the ledger; no Stripe here.

An event with no ``event_delivery`` row has never been sent. Statuses of the others:

- ``sending``: sent on its own (identifier = event id) at least once, outcome not confirmed.
  Still pending, and never coalesced later: Stripe may already hold it under its own id.
- ``batched``: part of a coalesced batch (``delivery_batches``) not confirmed yet. Still
  pending, and re-sent only as that batch, with the batch's identifier.
- ``delivered``: Stripe has it, on its own or in its batch.
- ``failed``: Stripe refused it for good; ``last_error`` says why.

Claims (``sending``, ``batched``) are written in ``BEGIN IMMEDIATE`` transactions, so two
pushes running at once never send one event under two identifiers."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterator

from .db import Ledger, Row

# delivery states (event_delivery.status; delivery_batches.status uses BATCH_PENDING, DELIVERED, FAILED)
SENDING = "sending"
BATCHED = "batched"
DELIVERED = "delivered"
FAILED = "failed"
BATCH_PENDING = "pending"
DISSOLVED = "dissolved"  # a batch Stripe never got, sent over 23 hours ago: its events were freed
LATE = "late"  # its period's invoice was final: claimed for a late-usage invoice item, not confirmed
INVOICED = "invoiced"  # billed as a late-usage invoice item (on the customer's next invoice)
# what callers see of one event: still to deliver, or its final state
PENDING = "pending"

PENDING_SQL = f"(d.event_id IS NULL OR d.status IN ('{SENDING}', '{BATCHED}', '{LATE}'))"
_PAGE = 500


@dataclass(frozen=True)
class Scope:
    """Which events a push or a status looks at: all, one customer's, or some events."""

    user_id: str | None = None
    event_ids: tuple[str, ...] | None = None

    def where(self, alias: str = "e") -> tuple[str, list]:
        sql, args = "", []
        if self.user_id is not None:
            sql += f" AND {alias}.user_id = ?"
            args.append(self.user_id)
        if self.event_ids is not None:
            sql += f" AND {alias}.id IN ({','.join('?' * len(self.event_ids)) or 'NULL'})"
            args.extend(self.event_ids)
        return sql, args


@dataclass(frozen=True)
class Batch:
    """A coalesced meter event: several usage events of one customer, feature and period."""

    id: str  # ubb_..., the meter event identifier
    user_id: str
    feature: str
    amount: int
    timestamp: int
    events: int
    cursor: tuple[int, str] = (0, "")  # (created_at, id): where the next page of batches starts


def _now() -> int:
    return int(time.time())


def pending_events(ledger: Ledger, scope: Scope, *, never_sent: bool = False,
                   sent_since: int | None = None) -> Iterator[Row]:
    """Pending events not in a batch, oldest first, read a page at a time (a ledger may hold
    millions). ``never_sent`` keeps only those never sent at all (safe to coalesce);
    ``sent_since`` leaves out those first sent before it (``stale_items``)."""
    status = "d.event_id IS NULL" if never_sent else "(d.event_id IS NULL OR d.status = 'sending')"
    if sent_since is not None and not never_sent:
        status = (f"(d.event_id IS NULL OR (d.status = 'sending' AND "
                  f"COALESCE(d.first_sent_at, d.updated_at) >= {int(sent_since)}))")
    where, args = scope.where()
    after = 0
    while True:
        rows = ledger.all(
            "SELECT e.seq, e.id, e.user_id, e.feature, e.amount, e.timestamp FROM usage_events e "
            f"LEFT JOIN event_delivery d ON d.event_id = e.id WHERE e.seq > ? AND {status}{where} "
            "ORDER BY e.seq LIMIT ?",
            [after, *args, _PAGE],
        )
        if not rows:
            return
        yield from rows
        after = rows[-1]["seq"]


def claim_for_sending(ledger: Ledger, event_ids: list[str]) -> set[str]:
    """Mark events as being sent on their own; returns those this caller may send (not
    batched, delivered or failed by another push meanwhile)."""
    now = _now()
    with ledger.transaction() as db:
        db.executemany(
            "INSERT INTO event_delivery (event_id, status, attempts, updated_at, first_sent_at) VALUES (?, 'sending', 1, ?, ?) "
            "ON CONFLICT (event_id) DO UPDATE SET attempts = event_delivery.attempts + 1, updated_at = excluded.updated_at, "
            "first_sent_at = COALESCE(event_delivery.first_sent_at, excluded.first_sent_at) "
            "WHERE event_delivery.status = 'sending'",
            [(i, now, now) for i in event_ids],
        )
        rows = db.execute(
            f"SELECT event_id FROM event_delivery WHERE status = 'sending' AND event_id IN ({','.join('?' * len(event_ids))})",
            event_ids,
        ).fetchall()
    return {r[0] for r in rows}


def mark_events(ledger: Ledger, delivered: list[str], failed: dict[str, str]) -> None:
    """Record Stripe's verdicts on events sent on their own, in one transaction; the first
    verdict stands (another push may have sent the same event meanwhile)."""
    now = _now()
    with ledger.transaction() as db:
        db.executemany(
            "INSERT INTO event_delivery (event_id, status, attempts, updated_at) VALUES (?, 'delivered', 1, ?) "
            "ON CONFLICT (event_id) DO UPDATE SET status = 'delivered', last_error = NULL, "
            "updated_at = excluded.updated_at WHERE event_delivery.status = 'sending'",
            [(i, now) for i in delivered],
        )
        db.executemany(
            "INSERT INTO event_delivery (event_id, status, attempts, last_error, updated_at) VALUES (?, 'failed', 1, ?, ?) "
            "ON CONFLICT (event_id) DO UPDATE SET status = 'failed', last_error = excluded.last_error, "
            "updated_at = excluded.updated_at WHERE event_delivery.status = 'sending'",
            [(i, reason, now) for i, reason in failed.items()],
        )


def coalesce(
    ledger: Ledger,
    scope: Scope,
    group_of: Callable[[Row], Hashable | None],
    *,
    after_seq: int,
    limit: int,
) -> tuple[list[Batch], int]:
    """Group up to ``limit`` never-sent events after ``after_seq`` into batches, one per
    ``group_of(event)`` (None: leave the event alone), and write the batches and their links
    in one transaction, before anything is sent: a retry after a crash re-sends the same
    batch identifiers. Returns the batches and the last seq looked at (0 when none)."""
    where, args = scope.where()
    now = _now()
    with ledger.transaction() as db:
        rows = db.execute(
            "SELECT e.seq, e.id, e.user_id, e.feature, e.amount, e.timestamp FROM usage_events e "
            f"LEFT JOIN event_delivery d ON d.event_id = e.id WHERE e.seq > ? AND d.event_id IS NULL{where} "
            "ORDER BY e.seq LIMIT ?",
            [after_seq, *args, limit],
        ).fetchall()
        groups: dict[Hashable, list[Row]] = {}
        for row in rows:
            key = group_of(row)
            if key is not None:
                groups.setdefault(key, []).append(row)
        batches = []
        for members in groups.values():
            batch = Batch(
                id="ubb_" + uuid.uuid4().hex,
                user_id=members[0]["user_id"],
                feature=members[0]["feature"],
                amount=sum(r["amount"] for r in members),
                # the latest event's time: inside the period, and inside Stripe's window
                # whenever the newest event is
                timestamp=max(r["timestamp"] for r in members),
                events=len(members),
            )
            db.execute(
                "INSERT INTO delivery_batches (id, user_id, feature, amount, timestamp, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                (batch.id, batch.user_id, batch.feature, batch.amount, batch.timestamp, now, now),
            )
            db.executemany(
                "INSERT INTO event_delivery (event_id, status, attempts, batch_id, updated_at) VALUES (?, 'batched', 0, ?, ?)",
                [(r["id"], batch.id, now) for r in members],
            )
            batches.append(Batch(**{**batch.__dict__, "cursor": (now, batch.id)}))
    return batches, (rows[-1]["seq"] if rows else 0)


def pending_batches(ledger: Ledger, scope: Scope, *, after: tuple[int, str] = (0, ""),
                    sent_since: int | None = None) -> Iterator[Batch]:
    """Batches written but not confirmed (a crash or an outage came between), oldest first;
    ``sent_since`` leaves out those written (and first sent) before it (``stale_items``)."""
    if scope.event_ids is not None:
        return  # a push of given events sends those events only
    where, args = scope.where("b")
    if sent_since is not None:
        where += f" AND b.created_at >= {int(sent_since)}"
    while True:
        rows = ledger.all(
            "SELECT b.*, (SELECT COUNT(*) FROM event_delivery d WHERE d.batch_id = b.id) AS events "
            f"FROM delivery_batches b WHERE (b.created_at, b.id) > (?, ?) AND b.status = 'pending'{where} "
            "ORDER BY b.created_at, b.id LIMIT ?",
            [*after, *args, _PAGE],
        )
        if not rows:
            return
        for r in rows:
            yield Batch(r["id"], r["user_id"], r["feature"], r["amount"], r["timestamp"], r["events"],
                        (r["created_at"], r["id"]))
        after = (rows[-1]["created_at"], rows[-1]["id"])


def mark_batches(ledger: Ledger, delivered: list[str], failed: dict[str, str]) -> None:
    """Record Stripe's verdicts on batches; their events follow, in the same transaction."""
    now = _now()
    with ledger.transaction() as db:
        for batch_id in delivered:
            db.execute("UPDATE delivery_batches SET status = 'delivered', updated_at = ? WHERE id = ?", (now, batch_id))
            db.execute(
                "UPDATE event_delivery SET status = 'delivered', attempts = attempts + 1, updated_at = ? "
                "WHERE batch_id = ? AND status = 'batched'",
                (now, batch_id),
            )
        for batch_id, reason in failed.items():
            db.execute("UPDATE delivery_batches SET status = 'failed', updated_at = ? WHERE id = ? AND status = 'pending'",
                       (now, batch_id))
            db.execute(
                "UPDATE event_delivery SET status = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ? "
                "WHERE batch_id = ? AND status = 'batched'",
                (reason, now, batch_id),
            )


def count_pending(ledger: Ledger, scope: Scope) -> int:
    where, args = scope.where()
    row = ledger.one(
        f"SELECT COUNT(*) FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id WHERE {PENDING_SQL}{where}",
        args,
    )
    return int(row[0])


@dataclass(frozen=True)
class FailedEvent:
    id: str
    user_id: str
    feature: str
    amount: int
    timestamp: int
    reason: str


@dataclass(frozen=True)
class DeliveryStatus:
    pending: int
    delivered: int
    failed: int
    not_in_stripe: dict[str, int]  # pending events of customers without a Stripe id, per customer
    failed_events: list[FailedEvent]  # the most recent ones, newest first
    invoiced_late: int = 0  # events billed as late-usage invoice items (their period's invoice was final)
    late_items: list = field(default_factory=list)  # those LateItems, newest first


def status(ledger: Ledger, scope: Scope, *, failed_limit: int = 100) -> DeliveryStatus:
    where, args = scope.where()
    counts = {PENDING: 0, DELIVERED: 0, FAILED: 0, INVOICED: 0}
    for row in ledger.all(
        f"SELECT CASE WHEN d.status IN ('{DELIVERED}', '{FAILED}', '{INVOICED}') THEN d.status ELSE '{PENDING}' END AS s, "
        "COUNT(*) "
        f"FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id WHERE 1 = 1{where} GROUP BY s",
        args,
    ):
        counts[row[0]] = int(row[1])
    waiting = ledger.all(
        "SELECT e.user_id, COUNT(*) FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
        f"JOIN customers c ON c.user_id = e.user_id WHERE {PENDING_SQL} AND c.stripe_customer_id IS NULL{where} "
        "GROUP BY e.user_id ORDER BY e.user_id",
        args,
    )
    failed = ledger.all(
        "SELECT e.id, e.user_id, e.feature, e.amount, e.timestamp, d.last_error FROM usage_events e "
        f"JOIN event_delivery d ON d.event_id = e.id WHERE d.status = 'failed'{where} ORDER BY e.seq DESC LIMIT ?",
        [*args, failed_limit],
    )
    return DeliveryStatus(
        pending=counts[PENDING],
        delivered=counts[DELIVERED],
        failed=counts[FAILED],
        invoiced_late=counts[INVOICED],
        late_items=late_items(ledger, scope, limit=failed_limit),
        not_in_stripe={r[0]: int(r[1]) for r in waiting},
        failed_events=[FailedEvent(r[0], r[1], r[2], r[3], r[4], r[5] or "") for r in failed],
    )


def event_state(ledger: Ledger, event_id: str) -> tuple[str, str | None]:
    """(pending | delivered | failed | invoiced, why) of one event: Stripe's reason when it
    failed, the invoice item's description when it was billed late."""
    row = ledger.one("SELECT status, last_error FROM event_delivery WHERE event_id = ?", (event_id,))
    if row is None or row["status"] not in (DELIVERED, FAILED, INVOICED):
        return PENDING, None
    return row["status"], row["last_error"]


def event_user(ledger: Ledger, event_id: str) -> str:
    return ledger.one("SELECT user_id FROM usage_events WHERE id = ?", (event_id,))[0]


def has_pending_in_stripe(ledger: Ledger) -> bool:
    """Whether some pending event belongs to a customer in Stripe (else a push has nothing to send)."""
    return ledger.one(
        "SELECT 1 FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
        f"JOIN customers c ON c.user_id = e.user_id WHERE {PENDING_SQL} AND c.stripe_customer_id IS NOT NULL LIMIT 1"
    ) is not None


def stripe_customer_id(ledger: Ledger, user_id: str) -> str | None:
    row = ledger.one("SELECT stripe_customer_id FROM customers WHERE user_id = ?", (user_id,))
    return row["stripe_customer_id"] if row else None


def delivered_in_window(ledger: Ledger, user_id: str, feature: str, start: int, end: int,
                        recent_since: int) -> tuple[int, int, bool]:
    """(units sent as meter events and confirmed, units still pending, something confirmed
    since ``recent_since``) of one customer's feature with times in [start, end). Events go
    by their own time, coalesced batches by the batch's time (as Stripe sees them)."""
    single = ledger.one(
        "SELECT COALESCE(SUM(CASE WHEN d.status = 'delivered' AND d.batch_id IS NULL THEN e.amount END), 0), "
        f"COALESCE(SUM(CASE WHEN {PENDING_SQL} THEN e.amount END), 0), "
        "COUNT(CASE WHEN d.status = 'delivered' AND d.updated_at >= ? THEN 1 END) "
        "FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
        "WHERE e.user_id = ? AND e.feature = ? AND e.timestamp >= ? AND e.timestamp < ?",
        (recent_since, user_id, feature, start, end),
    )
    batched = ledger.one(
        "SELECT COALESCE(SUM(amount), 0), COUNT(CASE WHEN updated_at >= ? THEN 1 END) FROM delivery_batches "
        "WHERE status = 'delivered' AND user_id = ? AND feature = ? AND timestamp >= ? AND timestamp < ?",
        (recent_since, user_id, feature, start, end),
    )
    return int(single[0]) + int(batched[0]), int(single[1]), bool(single[2] or batched[1])


# -- late usage: events whose period's invoice was final before they reached Stripe ----------

@dataclass(frozen=True)
class LateItem:
    """One invoice item billing a customer's late usage of a feature in one period."""

    id: str  # ubl_..., the invoice item's idempotency key
    user_id: str
    feature: str
    subscription_id: int
    period_start: int
    period_end: int
    missed_invoice: str
    quantity: int
    unit_amount: str  # Decimal minor units
    currency: str
    description: str
    status: str = BATCH_PENDING  # pending | created | failed
    stripe_invoice_item_id: str | None = None
    events: int = 0


def _late(r) -> LateItem:
    return LateItem(r["id"], r["user_id"], r["feature"], r["subscription_id"], r["period_start"], r["period_end"],
                    r["missed_invoice"], r["quantity"], r["unit_amount"], r["currency"], r["description"], r["status"],
                    r["stripe_invoice_item_id"], r["events"])


def oldest_never_sent(ledger: Ledger, scope: Scope) -> dict[str, int]:
    """Customer -> the time of its oldest pending event never sent (late billing looks there)."""
    where, args = scope.where()
    return {r[0]: int(r[1]) for r in ledger.all(
        "SELECT e.user_id, MIN(e.timestamp) FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
        f"WHERE d.event_id IS NULL{where} GROUP BY e.user_id",
        args,
    )}


def never_sent_between(ledger: Ledger, scope: Scope, user_id: str, start: int, end: int) -> list[Row]:
    """Never-sent pending events of a customer with times in [start, end)."""
    where, args = scope.where()
    return ledger.all(
        "SELECT e.id, e.feature, e.amount, e.timestamp FROM usage_events e LEFT JOIN event_delivery d "
        f"ON d.event_id = e.id WHERE d.event_id IS NULL AND e.user_id = ? AND e.timestamp >= ? AND e.timestamp < ?{where} "
        "ORDER BY e.seq",
        [user_id, start, end, *args],
    )


def claim_late(ledger: Ledger, item: LateItem, event_ids: list[str]) -> LateItem | None:
    """Write the late item and tie its events to it, in one transaction, before anything is
    sent (a retry re-sends the same idempotency key). Only events still never sent are taken
    (another push may have sent some meanwhile); None when none is left."""
    now = _now()
    marks = ",".join("?" * len(event_ids))
    with ledger.transaction() as db:
        rows = db.execute(
            "SELECT e.id, e.amount FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
            f"WHERE d.event_id IS NULL AND e.id IN ({marks})",
            event_ids,
        ).fetchall()
        if not rows:
            return None
        item = LateItem(**{**item.__dict__, "quantity": sum(r[1] for r in rows), "events": len(rows)})
        db.execute(
            "INSERT INTO late_items (id, user_id, feature, subscription_id, period_start, period_end, missed_invoice, "
            "quantity, unit_amount, currency, description, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item.id, item.user_id, item.feature, item.subscription_id, item.period_start, item.period_end,
             item.missed_invoice, item.quantity, item.unit_amount, item.currency, item.description, BATCH_PENDING,
             now, now),
        )
        db.executemany(
            f"INSERT INTO event_delivery (event_id, status, attempts, late_item_id, updated_at) VALUES (?, '{LATE}', 0, ?, ?)",
            [(r[0], item.id, now) for r in rows],
        )
    return item


def pending_late_items(ledger: Ledger, scope: Scope) -> list[LateItem]:
    """Late items written but not confirmed by Stripe (an earlier push was cut short)."""
    if scope.event_ids is not None:
        where, args = (f" AND l.id IN (SELECT late_item_id FROM event_delivery WHERE event_id IN "
                       f"({','.join('?' * len(scope.event_ids)) or 'NULL'}))", list(scope.event_ids))
    else:
        where, args = scope.where("l")
    return [_late(r) for r in ledger.all(
        "SELECT l.*, (SELECT COUNT(*) FROM event_delivery d WHERE d.late_item_id = l.id) AS events FROM late_items l "
        f"WHERE l.status = '{BATCH_PENDING}'{where} ORDER BY l.created_at, l.id",
        args,
    )]


def mark_late_item(ledger: Ledger, item_id: str, *, stripe_id: str | None = None, error: str | None = None) -> None:
    """Stripe made the invoice item (``stripe_id``) or refused it for good (``error``); its
    events follow, in the same transaction."""
    now = _now()
    status, event_status = ("created", INVOICED) if error is None else (FAILED, FAILED)
    with ledger.transaction() as db:
        db.execute("UPDATE late_items SET status = ?, stripe_invoice_item_id = ?, last_error = ?, updated_at = ? "
                   f"WHERE id = ? AND status = '{BATCH_PENDING}'", (status, stripe_id, error, now, item_id))
        db.execute(
            "UPDATE event_delivery SET status = ?, attempts = attempts + 1, last_error = ?, updated_at = ? "
            f"WHERE late_item_id = ? AND status = '{LATE}'",
            (event_status, error or "billed late: " + db.execute(
                "SELECT description FROM late_items WHERE id = ?", (item_id,)).fetchone()[0], now, item_id),
        )


def late_items(ledger: Ledger, scope: Scope, *, limit: int = 100) -> list[LateItem]:
    """Late items of every state, newest first (for ``status``)."""
    where, args = scope.where("l")
    return [_late(r) for r in ledger.all(
        "SELECT l.*, (SELECT COUNT(*) FROM event_delivery d WHERE d.late_item_id = l.id) AS events FROM late_items l "
        f"WHERE 1 = 1{where} ORDER BY l.created_at DESC, l.id DESC LIMIT ?",
        [*args, limit],
    )]


@dataclass(frozen=True)
class Units:
    """A customer's units of a feature in a window, by what became of them."""

    total: int
    pending: int  # not in Stripe yet (never sent, sending, batched, late item unconfirmed)
    failed: int  # refused by Stripe for good
    late: int  # billed as late-usage invoice items


def units_in_window(ledger: Ledger, user_id: str, feature: str, start: int, end: int) -> Units:
    r = ledger.one(
        f"SELECT COALESCE(SUM(e.amount), 0), COALESCE(SUM(CASE WHEN {PENDING_SQL} THEN e.amount END), 0), "
        f"COALESCE(SUM(CASE WHEN d.status = '{FAILED}' THEN e.amount END), 0), "
        f"COALESCE(SUM(CASE WHEN d.status = '{INVOICED}' THEN e.amount END), 0) "
        "FROM usage_events e LEFT JOIN event_delivery d ON d.event_id = e.id "
        "WHERE e.user_id = ? AND e.feature = ? AND e.timestamp >= ? AND e.timestamp < ?",
        (user_id, feature, start, end),
    )
    return Units(int(r[0]), int(r[1]), int(r[2]), int(r[3]))


def features_of(ledger: Ledger, user_id: str) -> list[str]:
    return [r[0] for r in ledger.all("SELECT DISTINCT feature FROM usage_events WHERE user_id = ? ORDER BY feature",
                                     (user_id,))]


# -- retrying refused usage (push --retry-failed) ----------------------------------------------

def failed_ids(ledger: Ledger, scope: Scope) -> list[str]:
    """The failed events in ``scope`` (all customers', one's, or the given ids), oldest first."""
    where, args = scope.where()
    return [r[0] for r in ledger.all(
        f"SELECT e.id FROM usage_events e JOIN event_delivery d ON d.event_id = e.id "
        f"WHERE d.status = '{FAILED}'{where} ORDER BY e.seq", args)]


def requeue_failed(ledger: Ledger, event_ids: list[str]) -> int:
    """Make failed events pending again, as if never sent, in one transaction; returns how
    many. Stripe refused them (or dropped them after accepting the stream), so it holds none
    of their identifiers: the next push may coalesce them, or bill them as late usage when
    their period's invoice is final, like any new event."""
    if not event_ids:
        return 0
    n = 0
    with ledger.transaction() as db:
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i:i + 500]
            n += db.execute(
                f"DELETE FROM event_delivery WHERE status = '{FAILED}' AND event_id IN ({','.join('?' * len(chunk))})",
                chunk).rowcount
    return n



# -- sent more than 23 hours ago and never confirmed ---------------------------------------------

STALE_AFTER = 23 * 3600  # Stripe keeps meter event identifiers unique for 24 hours only


@dataclass(frozen=True)
class Stale:
    """An event sent on its own, or a coalesced batch, first sent long enough ago that Stripe
    may have forgotten its identifier: re-sending it blindly could count it twice."""

    kind: str  # event | batch
    id: str
    user_id: str
    feature: str
    amount: int
    timestamp: int
    events: int = 1  # usage events it holds


def stale_items(ledger: Ledger, scope: Scope, sent_before: int) -> list[Stale]:
    where, args = scope.where()
    rows = ledger.all(
        "SELECT 'event', e.id, e.user_id, e.feature, e.amount, e.timestamp, 1 FROM usage_events e "
        f"JOIN event_delivery d ON d.event_id = e.id WHERE d.status = '{SENDING}' AND COALESCE(d.batch_id, NULL) IS NULL "
        f"AND COALESCE(d.first_sent_at, d.updated_at) < ?{where} ORDER BY e.seq",  # COALESCE: through m009's index, not batch_id's
        [int(sent_before), *args],
    )
    if scope.event_ids is None:
        bwhere, bargs = scope.where("b")
        rows += ledger.all(
            "SELECT 'batch', b.id, b.user_id, b.feature, b.amount, b.timestamp, "
            "(SELECT COUNT(*) FROM event_delivery d WHERE d.batch_id = b.id) FROM delivery_batches b "
            f"WHERE b.status = '{BATCH_PENDING}' AND b.created_at < ?{bwhere} ORDER BY b.created_at, b.id",
            [int(sent_before), *bargs],
        )
    return [Stale(*r) for r in rows]


def forget_unconfirmed(ledger: Ledger, event_ids: list[str], batch_ids: list[str]) -> None:
    """Stripe holds none of these (its totals say so): events sent on their own and batches
    become pending as if never sent; a batch is dissolved, its events freed."""
    with ledger.transaction() as db:
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i:i + 500]
            db.execute(f"DELETE FROM event_delivery WHERE status = '{SENDING}' AND batch_id IS NULL "
                       f"AND event_id IN ({','.join('?' * len(chunk))})", chunk)
        for batch_id in batch_ids:
            db.execute(f"DELETE FROM event_delivery WHERE batch_id = ? AND status = '{BATCHED}'", (batch_id,))
            db.execute(f"UPDATE delivery_batches SET status = '{DISSOLVED}', updated_at = ? WHERE id = ? "
                       f"AND status = '{BATCH_PENDING}'", (_now(), batch_id))
