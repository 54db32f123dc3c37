"""Usage events: every SQL statement over ``usage_events`` (immutable rows, one per unit of
recorded usage), including the importer's set-based writes and look-ups."""

from __future__ import annotations

import operator

from . import totals
from .db import Ledger, Row

# sources of an event
RECORD, CHARGE, IMPORT = "record", "charge", "import"

_INSERT = (
    "INSERT INTO usage_events (id, user_id, feature, amount, timestamp, recorded_at, idempotency_key, source) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_event(
    ledger: Ledger, event_id: str, user_id: str, feature: str, amount: int, timestamp: int, recorded_at: int,
    idempotency_key: str | None, source: str,
) -> None:
    with ledger.transaction():  # the caller's (record, charge): the event and its totals at once
        ledger.defer(_INSERT, (event_id, user_id, feature, amount, timestamp, recorded_at, idempotency_key, source))
        totals.add(ledger, [(user_id, feature, timestamp, amount)])


def event_by_key(ledger: Ledger, user_id: str, idempotency_key: str) -> Row | None:
    return ledger.one("SELECT * FROM usage_events WHERE user_id = ? AND idempotency_key = ?", (user_id, idempotency_key))


def usage_total(ledger: Ledger, user_id: str, feature: str, start: int, end: int) -> tuple[int, int]:
    """(sum of amounts, number of events) of a feature with start <= timestamp < end: from the
    hourly and daily totals, and the events of the window's ends (``ledger.totals``), so it
    costs the same whatever the number of events."""
    return totals.window(ledger, user_id, feature, start, end)


def list_events(ledger: Ledger, user_id: str, feature: str | None, limit: int) -> list[Row]:
    """Newest first."""
    sql, args = "SELECT * FROM usage_events WHERE user_id = ?", [user_id]
    if feature is not None:
        sql += " AND feature = ?"
        args.append(feature)
    return ledger.all(sql + " ORDER BY seq DESC LIMIT ?", [*args, int(limit)])


# -- the importer's set-based statements ------------------------------------------------------
# All of them run inside the importer's open transaction (``ledger.transaction()``, spanning
# batches of up to COMMIT_ROWS rows), so what one statement wrote the next one sees, and other
# writers wait. Rows are INSERT parameters, 7-tuples:
#     (event id, user_id, feature, amount, timestamp, recorded_at, idempotency key)
# The event ids of one run share a prefix and end with the row's line number in 12 hex digits,
# so a batch's ids are ordered by line and no other writer's id falls between them.
# The rows reach the database the backend's fastest way (``ledger.insert_new``, ``ledger.staged``:
# executemany on SQLite; COPY into a temporary staging table on PostgreSQL, then one
# INSERT ... SELECT ... ON CONFLICT DO NOTHING, or a join); the statements here are the same.

# the INSERT parameters' columns (the staging tables' on PostgreSQL)
_IMPORTED = (("id", "TEXT"), ("user_id", "TEXT"), ("feature", "TEXT"), ("amount", "BIGINT"), ("timestamp", "BIGINT"),
             ("recorded_at", "BIGINT"), ("idempotency_key", "TEXT"))
_ROWS = (*_IMPORTED[:6], ("key", "TEXT"))  # import_rows, the look-ups' table


def insert_imported(ledger: Ledger, rows: list[tuple]) -> int:
    """Insert the rows whose (user_id, key) is new, in the order given (the first row of a key
    wins); returns how many were inserted."""
    with ledger.transaction():  # the importer's: the events and their totals at once
        before = last_seq(ledger)
        # the key decides; an event id is this run's own, new (a clash would be an error)
        inserted = ledger.insert_new("usage_events", _IMPORTED, rows, (("source", f"'{IMPORT}'"),),
                                     key=("user_id", "idempotency_key"))
        if inserted and not totals.add_inserted_after(ledger, before, inserted):
            count_inserted(ledger, rows, inserted)
    return inserted


def count_inserted(ledger: Ledger, rows: list[tuple], inserted: int) -> None:
    """Add to the usage totals those of ``rows`` (INSERT parameters, each with a new event id)
    that an ``INSERT ... ON CONFLICT DO NOTHING`` inserted: all when it changed as many rows,
    else those whose id is in the ledger now."""
    if inserted == len(rows):
        new = rows
    elif not inserted:
        return
    else:
        have: set[str] = set()
        for i in range(0, len(rows), 500):
            ids = [r[0] for r in rows[i:i + 500]]
            have.update(x for (x,) in ledger.all(
                f"SELECT id FROM usage_events WHERE id IN ({','.join('?' * len(ids))})", ids))
        new = [r for r in rows if r[0] in have]
    totals.add(ledger, ((r[1], r[2], r[4], r[3]) for r in new))


def ids_between(ledger: Ledger, low: str, high: str) -> set[str]:
    """The ids of the events with low <= id <= high: after insert_imported, the batch's rows
    that were inserted (an index range of this run's ids, not a look-up per row)."""
    return {i for (i,) in ledger.execute("SELECT id FROM usage_events WHERE id BETWEEN ? AND ?", (low, high))}


def keys_of_other_operations(ledger: Ledger, rows: list[tuple]) -> set[str]:
    """Event ids of ``rows`` whose (user_id, key) names a write other than usage (a charge,
    a grant...: ``idempotency_keys``)."""
    return {i for (i,) in _staged(ledger, rows, "SELECT c.id FROM import_rows c JOIN idempotency_keys k "
                                               "ON k.user_id = c.user_id AND k.key = c.key")}


def new_or_differing(ledger: Ledger, rows: list[tuple]) -> list[tuple]:
    """(event id, feature, amount, timestamp) of the rows whose (user_id, key) is new (feature
    None) or names an event with other content; rows naming the same content are left out, so
    a re-import moves little data. One indexed look-up per row."""
    return _staged(
        ledger,
        rows,
        "SELECT c.id, e.feature, e.amount, e.timestamp FROM import_rows c "
        "LEFT JOIN usage_events e ON e.user_id = c.user_id AND e.idempotency_key = c.key "
        "WHERE e.feature IS NULL OR e.feature <> c.feature OR e.amount <> c.amount OR e.timestamp <> c.timestamp",
    )


def key_holders(ledger: Ledger, rows: list[tuple], since: int) -> list[tuple]:
    """For each of ``rows`` whose key is taken: (the row's event id, the seq and the id of the
    event holding its key, the id as ``keys_between`` gives it); rows whose key is free are left
    out. One indexed look-up per row (the importer's derived keys: whose is a taken
    ``import:<hash>:<n>``?). Only the three columns looked at are staged (all seven cost 4 s of
    a 10^6-row re-import without ids), by customer: the key index starts with user_id, so a
    batch's look-ups walk its pages in order, not at random (5.7 s of look-ups instead of 9)."""
    return _staged(ledger, [(r[0], r[1], r[6]) for r in sorted(rows, key=_user_of)],
                   f"SELECT c.id, {_HOLDER} FROM import_keys c "
                   "JOIN usage_events e ON e.user_id = c.user_id AND e.idempotency_key = c.key", (since,),
                   "import_keys", _KEYS)


def keys_between(ledger: Ledger, low: int, high: int, since: int, content: bool = False) -> list[tuple]:
    """The events with low <= seq <= high as (``user_key(user_id, idempotency key)``, seq, id),
    the id only of events after seq ``since`` (None for older ones: the importer asks whose an
    event is only of those its run may have written, and an id is a third of what is read),
    then, with ``content``, (feature, amount, timestamp): a range of the primary key, read in
    order. Where the keys sought were written together (an import's batch), reading their
    range costs a fraction of a look-up per key."""
    more = ", e.feature, e.amount, e.timestamp" if content else ""
    return ledger.tuples(f"SELECT e.user_id || ? || e.idempotency_key, {_HOLDER}{more} FROM usage_events e "
                         "WHERE e.seq BETWEEN ? AND ?", (_US, since, low, high))


def user_key(user_id: str, key: str) -> str:
    """A customer's key as one text, as ``keys_between`` gives it: unambiguous, since a user id
    has no control character (``rules.check_user_id``)."""
    return f"{user_id}{_US}{key}"


def last_seq(ledger: Ledger) -> int:
    """The largest seq so far (0 in an empty ledger): every event written later has a larger one."""
    return int(ledger.one("SELECT COALESCE(MAX(seq), 0) FROM usage_events")[0])


_US = "\x1f"  # between a user id and a key in ``user_key``
_HOLDER = "e.seq, CASE WHEN e.seq > ? THEN e.id END"  # key_holders, keys_between: the holder's seq, id
_user_of = operator.itemgetter(1)
_KEYS = (("id", "TEXT"), ("user_id", "TEXT"), ("key", "TEXT"))  # import_keys: key_holders' look-ups


def _staged(ledger: Ledger, rows: list[tuple], sql: str, args: tuple = (), table: str = "import_rows",
            columns: tuple[tuple[str, str], ...] = _ROWS) -> list[tuple]:
    """Run ``sql`` (with ``args``) over ``rows`` put in the temporary table ``table`` (emptied
    after); the rows it returns as plain tuples."""
    with ledger.staged(table, columns, rows):
        return ledger.tuples(sql, args)
