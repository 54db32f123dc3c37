"""The ledger side of delivery: which usage events still have to reach Stripe, and what became
of the others. Plain SQL over the ledger; no Stripe here.

An event with no ``event_delivery`` row has never been looked at by a push. Statuses of the
others:

- ``queued``: never sent (or as good as never sent: Stripe refused it and ``push
  --retry-failed`` queued it again, or a stale send Stripe never got). Pending; it has a row
  only so that the watermark (below) can pass it.
- ``sending``: sent on its own (identifier = event id) at least once, outcome not confirmed.
  Still pending, and never coalesced later: Stripe may already hold it under its own id.
- ``batched``: part of a coalesced batch (``delivery_batches``) not confirmed yet. Still
  pending, and re-sent only as that batch, with the batch's identifier.
- ``late``: tied to a late-usage invoice item (``late_items``) not confirmed yet. Pending.
- ``delivered``: Stripe has it, on its own or in its batch.
- ``invoiced``: billed as a late-usage invoice item.
- ``failed``: Stripe refused it for good; ``last_error`` says why.

**Finding what is pending in O(pending), not O(history).** Two structures, kept so that no
query walks every event ever recorded:

- the *watermark* (``settings.outbox_watermark``): every usage event whose ``seq`` is below it
  has an ``event_delivery`` row. Events without a row (new ones) are found by a range scan of
  the primary key from the watermark; a push that has looked at every event up to some seq
  gives the ones it could not send a ``queued`` row and moves the watermark past them
  (``advance_watermark``). Nothing ever deletes a delivery row, so no path can strand an
  event below it: what becomes pending again (a retry of refused events, a stale send Stripe
  never got, a dissolved batch) becomes ``queued``.
- partial indexes (m010) of the rows still pending (``event_delivery_open``, by seq) and of the
  failed ones (``event_delivery_failed``), and of the unconfirmed batches.

Delivered and invoiced totals (history-sized) are kept in ``delivery_totals``, changed in the
same transaction as the rows they count.

**Several pushes at once.** Claims are short transactions with no network call inside, take
rows in seq order (``ledger.skip_locked`` appended so a backend with row locks skips rows
another worker holds) and put a lease on what they take (``claimed_until``, ``claimed_by``):
a live worker's ``sending`` events, batches and late items are not sent again by another. A
lease runs out (``LEASE``), is renewed while its requests are in flight, is released when the
push ends, and a worker of this host whose process is gone (killed) loses its leases at once."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterator

from .db import Ledger, Row
from .events import last_seq

# delivery states (event_delivery.status; delivery_batches.status uses BATCH_PENDING, DELIVERED, FAILED)
QUEUED = "queued"  # never sent (or as if never sent), with a row so the watermark can pass it
SENDING = "sending"
BATCHED = "batched"
DELIVERED = "delivered"
FAILED = "failed"
BATCH_PENDING = "pending"
DISSOLVED = "dissolved"  # a batch Stripe never got (sent over 23 hours ago, or refused and retried): its events were freed
LATE = "late"  # its period's invoice was final: claimed for a late-usage invoice item, not confirmed
INVOICED = "invoiced"  # billed as a late-usage invoice item (on the customer's next invoice)
# what callers see of one event: still to deliver, or its final state
PENDING = "pending"

# the rows still to deliver: exactly the WHERE of m010's partial index event_delivery_open (a
# query must say it word for word for SQLite to read that index)
# the open states, as the partial index event_delivery_open spells them (a statement on the
# table alone), and as the queries that join it name it (``d``)
OPEN_ROW = f"status IN ('{QUEUED}', '{SENDING}', '{BATCHED}', '{LATE}')"
OPEN = f"d.{OPEN_ROW}"
PENDING_SQL = f"(d.event_id IS NULL OR {OPEN})"
QUEUED_ONLY = f" AND d.status = '{QUEUED}'"
_NO_ROW = "NOT EXISTS (SELECT 1 FROM event_delivery d WHERE d.event_id = e.id)"
_EVENT = "e.seq, e.id, e.user_id, e.feature, e.amount, e.timestamp"
_PAGE = 500

WATERMARK = "outbox_watermark"  # settings key: every event with a lower seq has a delivery row
ADVANCE_CHUNK = 20_000  # seqs looked at per transaction when the watermark moves
LEASE = 300  # seconds a claim is held for its worker (renewed while its requests are in flight)


@dataclass(frozen=True)
class Scope:
    """Which events a push or a status looks at: all, one customer's, or some events."""

    user_id: str | None = None
    event_ids: tuple[str, ...] | None = None

    @property
    def everything(self) -> bool:
        return self.user_id is None and self.event_ids is None

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


def _marks(items) -> str:
    return ",".join("?" * len(items))


# -- workers and their leases ------------------------------------------------------------------

@dataclass(frozen=True)
class Worker:
    """One push run: the name its claims carry (host, process, a tag of its own)."""

    id: str
    lease: int = LEASE

    @classmethod
    def new(cls, lease: int = LEASE) -> "Worker":
        return cls(f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}", lease)

    def until(self, now: int | None = None) -> int:
        return (_now() if now is None else now) + self.lease


def _gone(claimant: str) -> bool:
    """A worker of this host whose process no longer exists: its claims can be taken now."""
    parts = claimant.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


_LEASED = (  # (table, the rows whose lease matters) for each kind of claim
    ("event_delivery", f"{OPEN_ROW} AND status = '{SENDING}'"),
    ("delivery_batches", f"status = '{BATCH_PENDING}'"),
    ("late_items", f"status = '{BATCH_PENDING}'"),
)


def reap(ledger: Ledger, now: int | None = None) -> int:
    """Release the claims of workers of this host that were killed; returns how many
    claimants that was. (Those of other hosts run out after their lease.)"""
    now = _now() if now is None else now
    claimants: set[str] = set()
    for table, which in _LEASED:
        claimants.update(r[0] for r in ledger.all(
            f"SELECT DISTINCT claimed_by FROM {table} WHERE {which} AND claimed_until >= ?", (now,)) if r[0])
    gone = sorted(c for c in claimants if _gone(c))
    if gone:
        with ledger.transaction(rows_only=True) as db:
            for table, which in _LEASED:
                db.execute(f"UPDATE {table} SET claimed_until = NULL, claimed_by = NULL "
                           f"WHERE {which} AND claimed_by IN ({_marks(gone)})", gone)
    return len(gone)


def renew(ledger: Ledger, worker: Worker, now: int | None = None) -> None:
    """Extend the leases this worker holds (its requests are still in flight)."""
    until = worker.until(now)
    with ledger.transaction(rows_only=True) as db:
        for table, which in _LEASED:
            db.execute(f"UPDATE {table} SET claimed_until = ? WHERE {which} AND claimed_by = ?", (until, worker.id))


def release(ledger: Ledger, worker: Worker) -> None:
    """The push ends: what it claimed and did not settle can be taken by the next one at once."""
    if not any(ledger.one(f"SELECT 1 FROM {table} WHERE {which} AND claimed_by = ? LIMIT 1", (worker.id,))
               for table, which in _LEASED):
        return  # nothing held (the usual end): no write
    with ledger.transaction(rows_only=True) as db:
        for table, which in _LEASED:
            db.execute(f"UPDATE {table} SET claimed_until = NULL, claimed_by = NULL WHERE {which} AND claimed_by = ?",
                       (worker.id,))


def _free(alias: str) -> str:
    """Not held by a live lease (the ``?`` is now)."""
    return f"({alias}.claimed_until IS NULL OR {alias}.claimed_until < ?)"


# -- the watermark -------------------------------------------------------------------------------

def watermark(ledger: Ledger) -> int:
    row = ledger.one("SELECT value FROM settings WHERE key = ?", (WATERMARK,))
    return int(row[0]) if row else 0


def _set_watermark(db: Ledger, seq: int) -> None:
    db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
               (WATERMARK, str(int(seq))))


def advance_watermark(ledger: Ledger, upto: int) -> int:
    """Give every event below ``upto`` that has no delivery row a ``queued`` one and move the
    watermark to ``upto`` (never back). A push calls it for the seqs it looked at; the events
    it could not send (waiting for a customer or a meter, or cut short) are found again
    through the index of pending rows. Returns the watermark.

    Can an event be inserted below the watermark afterwards? Not while this runs in a
    transaction that names no customer and is not ``rows_only``: on SQLite it is the one
    writer, and seqs are handed out inside the writer's transaction, so it sees every event
    below the highest it sees; on PostgreSQL, where a sequence hands a seq out at INSERT and
    commits come in any order, that transaction holds the ledger-wide lock exclusively, and
    every transaction that inserts events (one customer's: shared; an import: exclusive)
    holds it too: none is in flight while the watermark moves."""
    while True:
        with ledger.transaction() as db:  # not rows_only: no event insert may be in flight
            low = watermark(db)
            stop = min(int(upto), low + ADVANCE_CHUNK)
            if stop <= low:
                return low
            now = _now()
            rows = db.all(f"SELECT e.seq, e.id FROM usage_events e WHERE e.seq >= ? AND e.seq < ? AND {_NO_ROW}",
                          (low, stop))
            db.executemany(
                f"INSERT INTO event_delivery (event_id, seq, status, attempts, updated_at) VALUES (?, ?, '{QUEUED}', 0, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                [(r[1], r[0], now) for r in rows],
            )
            _set_watermark(db, stop)


def heal(ledger: Ledger) -> None:
    """Pending or failed rows without their seq (written by an older usagebill, or by hand)
    get it: the indexes of pending and failed rows are ordered by it."""
    for which in (OPEN, f"d.status = '{FAILED}'"):
        if ledger.one(f"SELECT 1 FROM event_delivery d WHERE {which} AND d.seq IS NULL LIMIT 1") is None:
            continue
        with ledger.transaction(rows_only=True) as db:
            db.execute(f"UPDATE event_delivery SET seq = (SELECT e.seq FROM usage_events e WHERE e.id = event_delivery.event_id) "
                       f"WHERE {which.replace('d.', '')} AND seq IS NULL")


def _add_totals(db: Ledger, status: str, n: int) -> None:
    if n:
        db.execute("INSERT INTO delivery_totals (status, events) VALUES (?, ?) "
                   "ON CONFLICT (status) DO UPDATE SET events = delivery_totals.events + excluded.events", (status, n))


# -- looking for events: never looked at (above the watermark) and pending rows, merged by seq ---

def _fresh(db: Ledger, scope: Scope, after: int, limit: int, *, lock: bool = False) -> list[Row]:
    """Events without a delivery row after seq ``after``, in seq order. The watermark and
    ``after`` are made one bound here: given both, SQLite seeks to one of them and filters by
    the other, and the one it took was the watermark, so each page of a push walked again
    every event the push had already claimed (a 20,000-event push read 500,000 rows)."""
    where, args = scope.where()
    return db.all(
        f"SELECT {_EVENT}, NULL AS state FROM usage_events e WHERE e.seq > ? AND {_NO_ROW}{where} "
        f"ORDER BY e.seq LIMIT ?{db.skip_locked if lock else ''}",
        [max(after, watermark(db) - 1), *args, limit],
    )


def _rows(db: Ledger, scope: Scope, which: str, which_args: list, after: int, limit: int, *,
          lock: bool = False) -> list[Row]:
    """Pending rows (``which`` narrows them) after seq ``after``, in seq order."""
    where, args = scope.where()
    return db.all(
        f"SELECT d.seq, e.id, e.user_id, e.feature, e.amount, e.timestamp, d.status AS state FROM event_delivery d "
        f"JOIN usage_events e ON e.id = d.event_id WHERE {OPEN} AND {which} AND d.seq > ?{where} "
        f"ORDER BY d.seq LIMIT ?{db.skip_locked if lock else ''}",
        [*which_args, after, *args, limit],
    )


def _merged(fresh: list[Row], rows: list[Row], limit: int) -> list[Row]:
    """Both lists in seq order, as far as both are known: a list that came back full (``limit``
    rows) may have more rows after its last one, so nothing past that can be taken yet."""
    if not rows or not fresh:  # the common case: one of them (new events, or a backlog of rows)
        return fresh or rows
    out = sorted(fresh + rows, key=lambda r: r[0])  # seq comes first in both
    full = [r[-1][0] for r in (fresh, rows) if len(r) >= limit]
    if full:
        bound = min(full)
        out = [r for r in out if r[0] <= bound]
    return out


def pending_events(ledger: Ledger, scope: Scope) -> Iterator[Row]:
    """Pending events not in a batch or a late item (never sent, or sent on their own), oldest
    first, read a page at a time (a ledger may hold millions). Read only."""
    after = 0
    while True:
        page = _merged(_fresh(ledger, scope, after, _PAGE),
                       _rows(ledger, scope, f"d.status IN ('{QUEUED}', '{SENDING}')", [], after, _PAGE), _PAGE)
        if not page:
            return
        yield from page
        after = page[-1]["seq"]


# -- claiming events to send on their own ---------------------------------------------------------

@dataclass
class Cursor:
    """Where a push's look through the events got to (the last seq looked at)."""

    seq: int = 0
    done: bool = False


@dataclass
class Claim:
    events: list[Row] = field(default_factory=list)  # claimed for this worker, in seq order
    waiting: list[tuple[Row, str]] = field(default_factory=list)  # looked at, cannot go now: (event, why)


def _claimable(now: int, sent_since: int) -> tuple[str, list]:
    """Rows a push may send on their own: queued, or sent on their own without a live lease
    (and not so long ago that Stripe may have forgotten the identifier: ``stale_items``)."""
    return (f"(d.status = '{QUEUED}' OR (d.status = '{SENDING}' AND {_free('d')} "
            "AND COALESCE(d.first_sent_at, d.updated_at) >= ?))", [now, sent_since])


def claim_events(ledger: Ledger, scope: Scope, worker: Worker, cursor: Cursor,
                 why_not: Callable[[str, str], str | None], *, limit: int, sent_since: int,
                 look: int = 2_000) -> Claim:
    """Claim up to ``limit`` events to send on their own, oldest first after ``cursor``, in one
    short transaction: ``sending`` with this worker's lease. ``why_not(user_id, feature)`` says
    why that customer's events of that feature cannot go now (None: they can; asked once per
    pair and page); those are returned as waiting and left as they are. At most ``look`` events
    are looked at; ``cursor`` moves past them (``done`` at the end)."""
    now = _now()
    claim = Claim()
    until = worker.until(now)
    which, which_args = _claimable(now, sent_since)
    page = max(limit, 1)
    with ledger.transaction(rows_only=True) as db:
        looked = 0
        while len(claim.events) < limit and looked < look:
            fresh = _fresh(db, scope, cursor.seq, page, lock=True)
            held = _rows(db, scope, which, which_args, cursor.seq, page, lock=True)
            rows = _merged(fresh, held, page)
            if not rows:
                cursor.done = True
                break
            last = len(fresh) < page and len(held) < page  # nothing after these
            blocked = {pair: why for pair in {(r[2], r[3]) for r in rows} if (why := why_not(*pair))}
            need = limit - len(claim.events)
            if not blocked:  # the common case: every event of the page may go
                going = rows[:need]
                claim.events.extend(going)
                cursor.seq = going[-1][0]
                looked += len(going)
                if len(going) == need:
                    break
                if last:
                    cursor.done = True
                    break
                continue
            for row in rows:
                cursor.seq = row[0]
                looked += 1
                reason = blocked.get((row[2], row[3]))
                if reason:
                    claim.waiting.append((row, reason))
                else:
                    claim.events.append(row)
                    if len(claim.events) == limit:
                        break
            else:
                if last:
                    cursor.done = True
                    break
        if not claim.events:
            return claim
        queued = [r for r in claim.events if r[6] is not None]  # r[6]: the row's state (None: no row yet)
        fresh = [r for r in claim.events if r[6] is None]
        taken = db.executemany(
            f"UPDATE event_delivery SET status = '{SENDING}', attempts = attempts + 1, updated_at = ?, "
            "first_sent_at = COALESCE(first_sent_at, ?), claimed_until = ?, claimed_by = ? "
            f"WHERE event_id = ? AND (status = '{QUEUED}' OR (status = '{SENDING}' AND "
            "(claimed_until IS NULL OR claimed_until < ?)))",
            [(now, now, until, worker.id, r["id"], now) for r in queued],
        ) if queued else 0
        for i in range(0, len(fresh), 500):  # by seq, a statement per 500: no row of parameters per event
            seqs = [r[0] for r in fresh[i:i + 500]]
            if seqs[-1] - seqs[0] + 1 == len(seqs):  # consecutive (the common case): exactly that range, seqs being unique
                which_seqs, seq_args = "e.seq BETWEEN ? AND ?", [seqs[0], seqs[-1]]
            else:
                which_seqs, seq_args = f"e.seq IN ({_marks(seqs)})", seqs
            taken += db.execute(
                "INSERT INTO event_delivery (event_id, seq, status, attempts, updated_at, first_sent_at, claimed_until, "
                f"claimed_by) SELECT e.id, e.seq, '{SENDING}', 1, ?, ?, ?, ? FROM usage_events e "
                f"WHERE {which_seqs} ON CONFLICT (event_id) DO NOTHING",
                [now, now, until, worker.id, *seq_args],
            ).rowcount
        if taken != len(claim.events):  # another worker got some first
            ids = [r["id"] for r in claim.events]
            mine = {r[0] for r in db.all(
                f"SELECT event_id FROM event_delivery WHERE status = '{SENDING}' AND claimed_by = ? "
                f"AND event_id IN ({_marks(ids)})", [worker.id, *ids])}
            claim.events = [r for r in claim.events if r["id"] in mine]
    return claim


def mark_events(ledger: Ledger, delivered: list[str], failed: dict[str, str], *,
                held: tuple[str, int, int] | None = None) -> None:
    """Record Stripe's verdicts on events sent on their own, in one transaction; the first
    verdict stands (another push may have sent the same event meanwhile). An event without a
    delivery row (sent by hand, say) gets one. ``held`` (worker id, first seq, last seq): the
    delivered events are the ``sending`` rows that worker holds in that range of seqs (a
    claim's chunk: a push sends its claims in seq order, in chunks that do not overlap), so
    they are found through the index of open rows by seq, not one by one by id; any the
    worker no longer holds (its lease ran out and another push took them) are then looked up
    by id, as without ``held``."""
    now = _now()
    with ledger.transaction(rows_only=True) as db:
        n = 0
        rest = delivered
        if held is not None and delivered:
            who, first, last = held
            n = db.execute(
                f"UPDATE event_delivery SET status = '{DELIVERED}', last_error = NULL, updated_at = ?, claimed_until = NULL, "
                f"claimed_by = NULL WHERE seq BETWEEN ? AND ? AND {OPEN_ROW} AND status = '{SENDING}' "
                "AND claimed_by = ?",
                [now, first, last, who],
            ).rowcount
            if n > len(delivered):  # rows held that were not sent in this chunk: never so; refuse to guess
                raise RuntimeError(f"{n} rows held by {who} between seq {first} and {last}, {len(delivered)} delivered")
            rest = [] if n == len(delivered) else delivered
        for i in range(0, len(rest), 500):  # one statement per 500: the common case, kept cheap
            chunk = rest[i:i + 500]
            n += db.execute(
                f"UPDATE event_delivery SET status = '{DELIVERED}', last_error = NULL, updated_at = ?, claimed_until = NULL, "
                f"claimed_by = NULL WHERE event_id IN ({_marks(chunk)}) AND status = '{SENDING}'",
                [now, *chunk],
            ).rowcount
        m = db.executemany(
            f"UPDATE event_delivery SET status = '{FAILED}', last_error = ?, updated_at = ?, claimed_until = NULL, "
            f"claimed_by = NULL WHERE event_id = ? AND status = '{SENDING}'",
            [(reason, now, i) for i, reason in failed.items()],
        ) if failed else 0
        if n + m < len(delivered) + len(failed):
            ids = [*delivered, *failed]
            known = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                known.update(r[0] for r in db.all(f"SELECT event_id FROM event_delivery WHERE event_id IN ({_marks(chunk)})",
                                                  chunk))
            seq = "(SELECT e.seq FROM usage_events e WHERE e.id = ?)"
            # ON CONFLICT: another push may write its verdict between the read and these
            n += db.executemany(
                f"INSERT INTO event_delivery (event_id, seq, status, attempts, updated_at) VALUES (?, {seq}, '{DELIVERED}', 1, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                [(i, i, now) for i in delivered if i not in known],
            )
            db.executemany(
                f"INSERT INTO event_delivery (event_id, seq, status, attempts, last_error, updated_at) "
                f"VALUES (?, {seq}, '{FAILED}', 1, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                [(i, i, reason, now) for i, reason in failed.items() if i not in known],
            )
        _add_totals(db, DELIVERED, n)


# -- coalesced batches -------------------------------------------------------------------------

def coalesce(
    ledger: Ledger,
    scope: Scope,
    group_of: Callable[[Row], Hashable | None],
    *,
    after_seq: int,
    limit: int,
    worker: Worker | None = None,
) -> tuple[list[Batch], int]:
    """Group up to ``limit`` never-sent events after ``after_seq`` into batches, one per
    ``group_of(event)`` (None: leave the event alone), and write the batches and their links
    in one transaction, before anything is sent: a retry after a crash re-sends the same
    batch identifiers. The batches are claimed for ``worker``. Returns the batches and the last
    seq looked at (0 when none)."""
    now = _now()
    until, by = (worker.until(now), worker.id) if worker is not None else (None, None)
    with ledger.transaction(rows_only=True) as db:
        rows = _merged(_fresh(db, scope, after_seq, limit, lock=True),
                       _rows(db, scope, f"d.status = '{QUEUED}'", [], after_seq, limit, lock=True), limit)
        groups: dict[Hashable, list[Row]] = {}
        for row in rows:
            key = group_of(row)
            if key is not None:
                groups.setdefault(key, []).append(row)
        batches = []
        for members in groups.values():
            batch_id = "ubb_" + uuid.uuid4().hex
            # the links first: an event another push linked or claimed since it was read (on
            # PostgreSQL a never-sent event is read without a delivery row to lock) stays
            # theirs, and the batch is made of the events this push linked
            linked = db.executemany(
                f"INSERT INTO event_delivery (event_id, seq, status, attempts, batch_id, updated_at) "
                f"VALUES (?, ?, '{BATCHED}', 0, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                [(r["id"], r["seq"], batch_id, now) for r in members if r["state"] is None],
            )
            linked += db.executemany(
                f"UPDATE event_delivery SET status = '{BATCHED}', batch_id = ?, updated_at = ? "
                f"WHERE event_id = ? AND status = '{QUEUED}'",
                [(batch_id, now, r["id"]) for r in members if r["state"] is not None],
            )
            if linked != len(members):
                mine = {r[0] for r in db.all("SELECT event_id FROM event_delivery WHERE batch_id = ?", (batch_id,))}
                members = [r for r in members if r["id"] in mine]
                if not members:
                    continue
            batch = Batch(
                id=batch_id,
                user_id=members[0]["user_id"],
                feature=members[0]["feature"],
                amount=sum(r["amount"] for r in members),
                # the latest event's time: inside the period, and inside Stripe's window
                # whenever the newest event is
                timestamp=max(r["timestamp"] for r in members),
                events=len(members),
                cursor=(now, ""),
            )
            db.execute(
                "INSERT INTO delivery_batches (id, user_id, feature, amount, timestamp, status, created_at, updated_at, "
                f"claimed_until, claimed_by) VALUES (?, ?, ?, ?, ?, '{BATCH_PENDING}', ?, ?, ?, ?)",
                (batch.id, batch.user_id, batch.feature, batch.amount, batch.timestamp, now, now, until, by),
            )
            batches.append(Batch(**{**batch.__dict__, "cursor": (now, batch.id)}))
    return batches, (rows[-1]["seq"] if rows else 0)


def claim_batches(ledger: Ledger, scope: Scope, worker: Worker, why_not: Callable[[Batch], str | None], *,
                  after: tuple[int, str] = (0, ""), limit: int, sent_since: int | None = None,
                  ) -> tuple[list[Batch], list[tuple[Batch, str]], tuple[int, str] | None]:
    """Claim up to ``limit`` batches written but not confirmed (a crash or an outage came
    between) and not held by a live worker, oldest first after ``after``; ``sent_since``
    leaves out those written (and first sent) before it (``stale_items``). Returns (claimed,
    waiting with why, the cursor for the next call or None at the end)."""
    if scope.event_ids is not None:
        return [], [], None  # a push of given events sends those events only
    now = _now()
    where, args = scope.where("b")
    if sent_since is not None:
        where += " AND b.created_at >= ?"
        args.append(int(sent_since))
    with ledger.transaction(rows_only=True) as db:
        rows = db.all(
            f"SELECT b.* FROM delivery_batches b WHERE b.status = '{BATCH_PENDING}' AND (b.created_at, b.id) > (?, ?) "
            f"AND {_free('b')}{where} ORDER BY b.created_at, b.id LIMIT ?{db.skip_locked}",
            [*after, now, *args, limit],
        )
        if not rows:
            return [], [], None
        counts = dict(db.all(
            f"SELECT batch_id, COUNT(*) FROM event_delivery WHERE batch_id IN ({_marks(rows)}) GROUP BY batch_id",
            [r["id"] for r in rows]))
        claimed, waiting = [], []
        for r in rows:
            b = Batch(r["id"], r["user_id"], r["feature"], r["amount"], r["timestamp"], int(counts.get(r["id"], 0)),
                      (r["created_at"], r["id"]))
            reason = why_not(b)
            if reason:
                waiting.append((b, reason))
            else:
                claimed.append(b)
        if claimed:
            db.executemany("UPDATE delivery_batches SET claimed_until = ?, claimed_by = ? WHERE id = ?",
                           [(worker.until(now), worker.id, b.id) for b in claimed])
    return claimed, waiting, (rows[-1]["created_at"], rows[-1]["id"])


def mark_batches(ledger: Ledger, delivered: list[str], failed: dict[str, str]) -> None:
    """Record Stripe's verdicts on batches; their events follow, in the same transaction."""
    now = _now()
    with ledger.transaction(rows_only=True) as db:
        n = 0
        for batch_id in delivered:
            db.execute("UPDATE delivery_batches SET status = 'delivered', updated_at = ?, claimed_until = NULL, "
                       "claimed_by = NULL WHERE id = ?", (now, batch_id))
            n += db.execute(
                f"UPDATE event_delivery SET status = '{DELIVERED}', attempts = attempts + 1, updated_at = ? "
                f"WHERE batch_id = ? AND status = '{BATCHED}'",
                (now, batch_id),
            ).rowcount
        _add_totals(db, DELIVERED, n)
        for batch_id, reason in failed.items():
            db.execute("UPDATE delivery_batches SET status = 'failed', updated_at = ?, claimed_until = NULL, "
                       f"claimed_by = NULL WHERE id = ? AND status = '{BATCH_PENDING}'", (now, batch_id))
            db.execute(
                f"UPDATE event_delivery SET status = '{FAILED}', attempts = attempts + 1, last_error = ?, updated_at = ? "
                f"WHERE batch_id = ? AND status = '{BATCHED}'",
                (reason, now, batch_id),
            )


# -- counting ------------------------------------------------------------------------------------

def count_pending(ledger: Ledger, scope: Scope) -> int:
    """Events still to deliver: those no push has looked at yet (above the watermark) and the
    pending rows. O(pending + events since the last push), whatever the history."""
    where, args = scope.where()
    fresh = ledger.one(f"SELECT COUNT(*) FROM usage_events e WHERE e.seq >= ? AND {_NO_ROW}{where}",
                       [watermark(ledger), *args])
    if scope.everything:
        rows = ledger.one(f"SELECT COUNT(*) FROM event_delivery d WHERE {OPEN}")
    else:
        rows = ledger.one(f"SELECT COUNT(*) FROM event_delivery d JOIN usage_events e ON e.id = d.event_id "
                          f"WHERE {OPEN}{where}", args)
    return int(fresh[0]) + int(rows[0])


def _open_ids(which: str = "") -> str:
    """The event ids of the pending rows (narrowed by ``which``): a subquery read through the
    index of pending rows, whatever else the query joins."""
    return f"(SELECT d.event_id FROM event_delivery d WHERE {OPEN}{which})"


def _above_watermark(ledger: Ledger) -> tuple[str, list]:
    """The events above the watermark, a range closed at both ends: SQLite then reads that
    range of the primary key, where an open range lets it prefer walking a whole index to
    save a sort (a GROUP BY customer read every event that way)."""
    return "e.seq >= ? AND e.seq <= ?", [watermark(ledger), last_seq(ledger)]


def _pending_per_customer(ledger: Ledger, scope: Scope) -> dict[str, int]:
    """Customer -> its pending events (those above the watermark, and the pending rows)."""
    where, args = scope.where()
    above, above_args = _above_watermark(ledger)
    out: dict[str, int] = {}
    for sql, first in (
        (f"SELECT e.user_id, COUNT(*) FROM usage_events e WHERE {above} AND {_NO_ROW}{where} GROUP BY e.user_id",
         above_args),
        (f"SELECT e.user_id, COUNT(*) FROM usage_events e WHERE e.id IN {_open_ids()}{where} GROUP BY e.user_id", []),
    ):
        for user_id, n in ledger.all(sql, [*first, *args]):
            out[user_id] = out.get(user_id, 0) + int(n)
    return out


def _not_in_stripe(ledger: Ledger, user_ids) -> set[str]:
    users, out = sorted(user_ids), set()
    for i in range(0, len(users), 500):
        chunk = users[i:i + 500]
        out.update(r[0] for r in ledger.all(
            f"SELECT user_id FROM customers WHERE stripe_customer_id IS NULL AND user_id IN ({_marks(chunk)})", chunk))
    return out


def _pending_by_customer_not_in_stripe(ledger: Ledger, scope: Scope) -> dict[str, int]:
    pending = _pending_per_customer(ledger, scope)
    waiting = _not_in_stripe(ledger, pending)
    return {u: n for u, n in sorted(pending.items()) if u in waiting}


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


def _counts(ledger: Ledger, scope: Scope) -> dict[str, int]:
    """Events per final state: from the kept totals for the whole ledger, by counting one
    customer's (or the given) events otherwise."""
    counts = {PENDING: count_pending(ledger, scope), DELIVERED: 0, FAILED: 0, INVOICED: 0}
    if scope.everything:
        for status, n in ledger.all("SELECT status, events FROM delivery_totals"):
            if status in counts:
                counts[status] = int(n)
        counts[FAILED] = int(ledger.one(f"SELECT COUNT(*) FROM event_delivery d WHERE d.status = '{FAILED}'")[0])
        return counts
    where, args = scope.where()
    for status, n in ledger.all(
        f"SELECT d.status, COUNT(*) FROM usage_events e JOIN event_delivery d ON d.event_id = e.id "
        f"WHERE d.status IN ('{DELIVERED}', '{FAILED}', '{INVOICED}'){where} GROUP BY d.status",
        args,
    ):
        counts[status] = int(n)
    return counts


def status(ledger: Ledger, scope: Scope, *, failed_limit: int = 100) -> DeliveryStatus:
    where, args = scope.where()
    counts = _counts(ledger, scope)
    failed = ledger.all(
        "SELECT e.id, e.user_id, e.feature, e.amount, e.timestamp, d.last_error FROM event_delivery d "
        f"JOIN usage_events e ON e.id = d.event_id WHERE d.status = '{FAILED}'{where} ORDER BY d.seq DESC LIMIT ?",
        [*args, failed_limit],
    ) if failed_limit else []
    return DeliveryStatus(
        pending=counts[PENDING],
        delivered=counts[DELIVERED],
        failed=counts[FAILED],
        invoiced_late=counts[INVOICED],
        late_items=late_items(ledger, scope, limit=failed_limit) if failed_limit else [],
        not_in_stripe=_pending_by_customer_not_in_stripe(ledger, scope),
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
    pending = _pending_per_customer(ledger, Scope())
    return bool(set(pending) - _not_in_stripe(ledger, pending))


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


def _late(r, events: int | None = None) -> LateItem:
    return LateItem(r["id"], r["user_id"], r["feature"], r["subscription_id"], r["period_start"], r["period_end"],
                    r["missed_invoice"], r["quantity"], r["unit_amount"], r["currency"], r["description"], r["status"],
                    r["stripe_invoice_item_id"], r["events"] if events is None else events)


def oldest_never_sent(ledger: Ledger, scope: Scope) -> dict[str, int]:
    """Customer -> the time of its oldest pending event never sent (late billing looks there)."""
    where, args = scope.where()
    above, above_args = _above_watermark(ledger)
    out: dict[str, int] = {}
    for sql, first in (
        (f"SELECT e.user_id, MIN(e.timestamp) FROM usage_events e WHERE {above} AND {_NO_ROW}{where} "
         "GROUP BY e.user_id", above_args),
        (f"SELECT e.user_id, MIN(e.timestamp) FROM usage_events e WHERE e.id IN {_open_ids(QUEUED_ONLY)}{where} "
         "GROUP BY e.user_id", []),
    ):
        for user_id, ts in ledger.all(sql, [*first, *args]):
            out[user_id] = min(int(ts), out.get(user_id, int(ts)))
    return out


def never_sent_between(ledger: Ledger, scope: Scope, user_id: str, start: int, end: int) -> list[Row]:
    """Never-sent pending events of a customer with times in [start, end)."""
    where, args = scope.where()
    return ledger.all(
        "SELECT e.id, e.feature, e.amount, e.timestamp FROM usage_events e LEFT JOIN event_delivery d "
        f"ON d.event_id = e.id WHERE (d.event_id IS NULL OR d.status = '{QUEUED}') AND e.user_id = ? "
        f"AND e.timestamp >= ? AND e.timestamp < ?{where} ORDER BY e.seq",
        [user_id, start, end, *args],
    )


def claim_late(ledger: Ledger, item: LateItem, event_ids: list[str], worker: Worker | None = None) -> LateItem | None:
    """Write the late item and tie its events to it, in one transaction, before anything is
    sent (a retry re-sends the same idempotency key). Only events still never sent are taken
    (another push may have sent some meanwhile); None when none is left. The item is claimed
    for ``worker``."""
    now = _now()
    marks = _marks(event_ids)
    with ledger.transaction(rows_only=True) as db:
        fresh = db.all(f"SELECT e.seq, e.id, e.amount FROM usage_events e WHERE e.id IN ({marks}) AND {_NO_ROW} "
                       f"ORDER BY e.seq{db.skip_locked}", event_ids)
        queued = db.all(f"SELECT d.seq, d.event_id, e.amount FROM event_delivery d JOIN usage_events e ON e.id = d.event_id "
                        f"WHERE {OPEN} AND d.status = '{QUEUED}' AND d.event_id IN ({marks}) ORDER BY d.seq{db.skip_locked}",
                        event_ids)
        if not fresh and not queued:
            return None
        item = LateItem(**{**item.__dict__, "quantity": sum(r[2] for r in fresh + queued), "events": len(fresh) + len(queued)})
        db.execute(
            "INSERT INTO late_items (id, user_id, feature, subscription_id, period_start, period_end, missed_invoice, "
            "quantity, unit_amount, currency, description, status, created_at, updated_at, claimed_until, claimed_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item.id, item.user_id, item.feature, item.subscription_id, item.period_start, item.period_end,
             item.missed_invoice, item.quantity, item.unit_amount, item.currency, item.description, BATCH_PENDING,
             now, now, worker.until(now) if worker else None, worker.id if worker else None),
        )
        db.executemany(
            f"INSERT INTO event_delivery (event_id, seq, status, attempts, late_item_id, updated_at) VALUES (?, ?, '{LATE}', 0, ?, ?)",
            [(r[1], r[0], item.id, now) for r in fresh],
        )
        db.executemany(
            f"UPDATE event_delivery SET status = '{LATE}', late_item_id = ?, updated_at = ? WHERE event_id = ? "
            f"AND status = '{QUEUED}'",
            [(item.id, now, r[1]) for r in queued],
        )
    return item


def claim_late_items(ledger: Ledger, scope: Scope, worker: Worker) -> list[LateItem]:
    """Late items written but not confirmed by Stripe (an earlier push was cut short) and not
    held by a live worker, claimed for ``worker``."""
    now = _now()
    if scope.event_ids is not None:
        where, args = (f" AND l.id IN (SELECT late_item_id FROM event_delivery WHERE event_id IN "
                       f"({_marks(scope.event_ids) or 'NULL'}))", list(scope.event_ids))
    else:
        where, args = scope.where("l")
    if ledger.one(f"SELECT 1 FROM late_items WHERE status = '{BATCH_PENDING}' LIMIT 1") is None:
        return []  # the usual case: no write
    with ledger.transaction(rows_only=True) as db:
        rows = db.all(
            f"SELECT l.* FROM late_items l WHERE l.status = '{BATCH_PENDING}' AND {_free('l')}{where} "
            f"ORDER BY l.created_at, l.id{db.skip_locked}",
            [now, *args],
        )
        if not rows:
            return []
        counts = dict(db.all(f"SELECT late_item_id, COUNT(*) FROM event_delivery WHERE late_item_id IN ({_marks(rows)}) "
                             "GROUP BY late_item_id", [r["id"] for r in rows]))
        db.executemany("UPDATE late_items SET claimed_until = ?, claimed_by = ? WHERE id = ?",
                       [(worker.until(now), worker.id, r["id"]) for r in rows])
    return [_late(r, int(counts.get(r["id"], 0))) for r in rows]


def mark_late_item(ledger: Ledger, item_id: str, *, stripe_id: str | None = None, error: str | None = None) -> None:
    """Stripe made the invoice item (``stripe_id``) or refused it for good (``error``); its
    events follow, in the same transaction."""
    now = _now()
    status, event_status = ("created", INVOICED) if error is None else (FAILED, FAILED)
    with ledger.transaction(rows_only=True) as db:
        db.execute("UPDATE late_items SET status = ?, stripe_invoice_item_id = ?, last_error = ?, updated_at = ?, "
                   f"claimed_until = NULL, claimed_by = NULL WHERE id = ? AND status = '{BATCH_PENDING}'",
                   (status, stripe_id, error, now, item_id))
        n = db.execute(
            "UPDATE event_delivery SET status = ?, attempts = attempts + 1, last_error = ?, updated_at = ? "
            f"WHERE late_item_id = ? AND status = '{LATE}'",
            (event_status, error or "billed late: " + db.execute(
                "SELECT description FROM late_items WHERE id = ?", (item_id,)).fetchone()[0], now, item_id),
        ).rowcount
        if event_status == INVOICED:
            _add_totals(db, INVOICED, n)


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
        f"SELECT e.id FROM event_delivery d JOIN usage_events e ON e.id = d.event_id "
        f"WHERE d.status = '{FAILED}'{where} ORDER BY d.seq", args)]


def _as_never_sent(status: str) -> str:
    """The SET that makes a row of ``status`` pending as if never sent (``queued``)."""
    return (f"UPDATE event_delivery SET status = '{QUEUED}', batch_id = NULL, late_item_id = NULL, last_error = NULL, "
            "first_sent_at = NULL, claimed_until = NULL, claimed_by = NULL, updated_at = ? "
            f"WHERE status = '{status}'")


def requeue_failed(ledger: Ledger, event_ids: list[str]) -> int:
    """Make failed events pending again, as if never sent, in one transaction; returns how
    many. Stripe refused them (or dropped them after accepting the stream), so it holds none
    of their identifiers: the next push may coalesce them, or bill them as late usage when
    their period's invoice is final, like any new event. A refused batch whose events all go
    again is dissolved."""
    if not event_ids:
        return 0
    n = 0
    now = _now()
    with ledger.transaction(rows_only=True) as db:
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i:i + 500]
            batches = [r[0] for r in db.all(
                f"SELECT DISTINCT batch_id FROM event_delivery WHERE status = '{FAILED}' AND batch_id IS NOT NULL "
                f"AND event_id IN ({_marks(chunk)})", chunk)]
            n += db.execute(_as_never_sent(FAILED) + f" AND event_id IN ({_marks(chunk)})", [now, *chunk]).rowcount
            for batch_id in batches:
                db.execute(f"UPDATE delivery_batches SET status = '{DISSOLVED}', updated_at = ? WHERE id = ? "
                           f"AND status = '{FAILED}' AND NOT EXISTS (SELECT 1 FROM event_delivery WHERE batch_id = ?)",
                           (now, batch_id, batch_id))
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
    """Stale sends and batches no live worker holds."""
    where, args = scope.where()
    now = _now()
    rows = ledger.all(
        "SELECT 'event', e.id, e.user_id, e.feature, e.amount, e.timestamp, 1 FROM event_delivery d "
        f"JOIN usage_events e ON e.id = d.event_id WHERE {OPEN} AND d.status = '{SENDING}' "
        f"AND COALESCE(d.first_sent_at, d.updated_at) < ? AND {_free('d')}{where} ORDER BY d.seq",
        [int(sent_before), now, *args],
    )
    if scope.event_ids is None:
        bwhere, bargs = scope.where("b")
        rows += ledger.all(
            "SELECT 'batch', b.id, b.user_id, b.feature, b.amount, b.timestamp, "
            "(SELECT COUNT(*) FROM event_delivery d WHERE d.batch_id = b.id) FROM delivery_batches b "
            f"WHERE b.status = '{BATCH_PENDING}' AND b.created_at < ? AND {_free('b')}{bwhere} ORDER BY b.created_at, b.id",
            [int(sent_before), now, *bargs],
        )
    return [Stale(*r) for r in rows]


def forget_unconfirmed(ledger: Ledger, event_ids: list[str], batch_ids: list[str], *,
                       sent_before: int | None = None) -> None:
    """Stripe holds none of these (its totals say so): events sent on their own and batches
    become pending as if never sent (``queued``); a batch is dissolved, its events freed.
    ``sent_before``: only what is still that stale (another push may have sent it anew)."""
    now = _now()
    stale = "" if sent_before is None else " AND COALESCE(first_sent_at, updated_at) < ?"
    stale_args = [] if sent_before is None else [int(sent_before)]
    with ledger.transaction(rows_only=True) as db:
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i:i + 500]
            db.execute(_as_never_sent(SENDING) + f" AND batch_id IS NULL{stale} AND event_id IN ({_marks(chunk)})",
                       [now, *stale_args, *chunk])
        for batch_id in batch_ids:
            if db.execute(f"UPDATE delivery_batches SET status = '{DISSOLVED}', updated_at = ?, claimed_until = NULL, "
                          f"claimed_by = NULL WHERE id = ? AND status = '{BATCH_PENDING}'"
                          + ("" if sent_before is None else " AND created_at < ?"),
                          [now, batch_id, *stale_args]).rowcount:
                db.execute(_as_never_sent(BATCHED) + " AND batch_id = ?", (now, batch_id))
