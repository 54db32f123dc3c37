"""Writing an import's valid rows to the ledger: in transactions of ``commit_rows`` rows
(each batch of ``batch_rows`` written at once, set-based: ledger/events.py), rows whose key is
there already counted as duplicates (or rejected when the key names other content), and the
rejected rows streamed to the reject file.

A row without an id gets the key ``import:<content hash>:<n>``, n being how many rows of the
same content came before it in the file, so identical rows are distinct events and a re-run
finds the same keys. n is not counted in memory: the ledger holds it. The row is written as
``:0``; a key that is taken already is either this run's (an earlier identical row: try the next
n) or an earlier run's (a duplicate, unless this run has met that event already: then the next
n too). What this run has met is one bit per ledger event (``seq``), so memory stays flat
whatever the file's size, and a fresh import with unique rows pays nothing for it."""

from __future__ import annotations

import hashlib
import operator
import os
from functools import partial
from collections import deque

from ..errors import ValidationError
from ..ledger import events
from ..ledger import idempotency as keys
from ..rules import key_reused, same_event
from . import reject_target
from .reading import Layout
from .results import MAX_ERRORS_KEPT, ImportResult, RowError

DERIVED_PREFIX = "import:"
BATCH_ROWS = 20_000  # rows validated and written together (what the import holds in memory)
# rows per ledger transaction (a few seconds of the write lock): each transaction rewrites the
# index pages it touches, and rows of random customers touch most of them, so small ones are
# slow: at 1,000,000 rows, 10,000-row transactions spent 28 s in SQLite, 200,000-row ones 9 s
COMMIT_ROWS = 200_000
_KEY = (DERIVED_PREFIX + "%s:0").__mod__  # a derived key's first try: hex digest -> import:<hex>:0
_CONTENT = "{}\x1f{}\x1f{}\x1f{}".format  # what a derived key hashes: user, feature, amount, time
_digest16 = partial(hashlib.blake2b, digest_size=16)


def derived_keys(users, features, amounts, times) -> list[str]:
    """The first try of each row's derived key, ``import:<hash>:0``: the hash of the row's
    content as checked (amount and time as integers), so the same however it was written.
    The contents are encoded as one text and split (a fifth faster than one by one), unless
    one holds a line end (user ids cannot: ``rules.check_user_id``)."""
    contents = "\n".join(map(_CONTENT, users, features, amounts, times)).encode().split(b"\n")
    if len(contents) != len(users):
        contents = list(map(str.encode, map(_CONTENT, users, features, amounts, times)))
    return list(map(_KEY, map(hashlib.blake2b.hexdigest, map(_digest16, contents))))


class _DryRun(Exception):
    """Raised inside a batch's transaction to roll it back."""


class Rejects:
    """The reject file, written as rows are rejected (to ``PATH.partial``, renamed at the end)."""

    def __init__(self, path: str | None, layout: Layout):
        self.path = path
        self.f = None
        self.safe = reject_target.neutralise_csv if layout.format == "csv" else reject_target.neutralise_jsonl
        if path is not None:
            self.partial, self.f = reject_target.open_partial(path)
            if layout.format == "csv":
                self.f.write(layout.header)
                self._ends_line = layout.header.endswith(b"\n")
            else:
                self._ends_line = True

    def write(self, raw: bytes) -> None:
        if self.f is not None:
            if not self._ends_line:  # the previous record was the file's last line, without a newline
                self.f.write(b"\n")
            self.f.write(self.safe(raw))
            self._ends_line = raw.endswith(b"\n")

    def finish(self) -> None:
        if self.f is not None:
            self.f.close()
            os.replace(self.partial, self.path)

    def abandon(self) -> None:
        if self.f is not None:
            self.f.close()


class Writer:
    def __init__(self, ledger, f, *, dry_run: bool, commit_rows: int, rejects: Rejects, result: ImportResult,
                 on_reject, on_progress):
        self.ledger = ledger
        self.f = f
        self.dry_run = dry_run
        self.commit_rows = commit_rows
        self.rejects = rejects
        self.result = result
        self.on_reject = on_reject
        self.on_progress = on_progress
        self.run_prefix = ""  # the event ids of this run start with it (set by the checker)
        self.since = events.last_seq(ledger)  # the events of this run have larger seqs
        self.met = bytearray()  # bit seq: this run has met that ledger event as a duplicate
        self.tx = None  # the open ledger transaction (spanning batches, up to commit_rows rows)
        self.tx_rows = 0
        self.check_first = False  # look ids up before inserting (when the last batch was mostly known ids)
        self.derived_first = False  # the same for derived keys
        self.has_op_keys: bool | None = None
        # the current batch: rows as INSERT parameters (id, user_id, feature, amount, ts, recorded_at, key)
        self.explicit: list[tuple] = []  # with an id column value (the key)
        self.derived: list[tuple] = []  # without an id: the key is derived (its first try, :0), in file order
        self.untimed: set[str] = set()  # event ids of explicit rows without a timestamp
        self.block = None  # the reading.Block being written: the records as they are in the file
        self.raws: dict[int, bytes] = {}  # line -> the record as it is in the file, of rejected rows
        self.errors: list[RowError] = []

    def reject(self, line: int, raw: bytes, column: str | None, reason: str) -> None:
        self.errors.append(RowError(line, column, reason))
        self.raws[line] = raw

    def raw(self, line: int) -> bytes:
        found = self.raws.get(line)
        return self.block.raw(line) if found is None else found

    def end_transaction(self, exc: BaseException | None = None) -> None:
        """Commit the open transaction; roll it back on an error or in a dry run."""
        tx, self.tx = self.tx, None
        self.has_op_keys = None  # looked up again in the next transaction
        if exc is None and not self.dry_run:
            tx.__exit__(None, None, None)
        else:
            exc = exc or _DryRun()
            tx.__exit__(type(exc), exc, None)

    def flush(self, n_records: int, final: bool = False) -> None:
        result = self.result
        result.rows += n_records
        if self.explicit or self.derived:
            if self.tx is None:
                self.tx = self.ledger.transaction()
                self.tx.__enter__()
                self.tx_rows = 0
            self.tx_rows += len(self.explicit) + len(self.derived)
            self.write()
        errors = sorted(self.errors, key=_line_of)
        for e in errors:
            self.rejects.write(self.raws[e.line])
            if len(result.errors) < MAX_ERRORS_KEPT:
                result.errors.append(e)
            if self.on_reject is not None:
                self.on_reject(e)
        result.rejected += len(errors)
        self.explicit.clear()
        self.derived.clear()
        self.untimed.clear()
        self.errors.clear()
        self.raws.clear()
        if self.tx is not None and (final or self.tx_rows >= self.commit_rows):
            self.end_transaction()
        if self.on_progress is not None:
            self.on_progress(self.f.tell(), result.rows)

    def write(self) -> None:
        explicit, derived = self.explicit, self.derived
        duplicates = 0
        if explicit:
            if self.has_op_keys is None:  # read inside the transaction: other writers wait
                self.has_op_keys = keys.any_key(self.ledger)
            if self.has_op_keys:
                # an id used by another kind of write (a charge, a grant...) cannot name a usage event
                taken = events.keys_of_other_operations(self.ledger, explicit)
                for r in explicit:
                    if r[0] in taken:
                        self.reject(_line(r[0]), self.raw(_line(r[0])), "id",
                                    f"idempotency key {r[6]!r} was already used by {r[1]!r} for another operation")
                explicit = [r for r in explicit if r[0] not in taken]
        n_explicit, known_explicit = len(explicit), 0
        if self.check_first and explicit:
            # most ids were known in the last batch: look them up first (one look-up each),
            # then insert the rest
            new, same = self._known(explicit)
            duplicates += same
            known_explicit += len(explicit) - len(new)
            explicit = [r for r in explicit if r[0] in new] if new else []
        n_derived, known_derived = len(derived), 0
        if self.derived_first and derived:
            # most derived keys were taken in the last batch (a re-run): look them up first
            derived, again, same = self._claim(derived)
            duplicates += same
            known_derived += same
            derived += again
        inserted = 0
        derived_ids: set[str] | None = None
        rows = explicit + derived if derived else explicit
        while rows:
            rows.sort(key=_user_of)  # the ledger's indexes start with user_id: fewer pages touched
            done = events.insert_imported(self.ledger, rows)
            inserted += done
            if done == len(rows):
                break
            # which rows were skipped? (the batch's event ids are this run's, ordered by line)
            new = events.ids_between(self.ledger, min(r[0] for r in rows), max(r[0] for r in rows))
            skipped = [r for r in rows if r[0] not in new]
            if derived_ids is None:
                derived_ids = {r[0] for r in self.derived}
            again = [r for r in skipped if r[0] not in derived_ids]
            if again:  # rows with ids (first turn only): are they the same event?
                _, same = self._known(again)
                duplicates += same
                known_explicit += len(again)
            skipped = [r for r in skipped if r[0] in derived_ids]
            rows = []
            if skipped:  # derived keys taken: duplicates, or the next occurrence number
                free, bumped, same = self._claim(skipped)
                duplicates += same
                known_derived += same
                rows = free + bumped
        if n_explicit:
            self.check_first = known_explicit * 2 > n_explicit
        if n_derived:
            self.derived_first = known_derived * 2 > n_derived
        self.result.imported += inserted
        self.result.duplicates += duplicates

    def _known(self, rows: list[tuple]) -> tuple[set[str], int]:
        """The event ids of ``rows`` whose key is new, and how many of the others are the same
        event (duplicates); the others are rejected here (the key names another event).
        The rows that the range of their holders shows to be the same event (a re-run:
        ``_in_range``) are counted at once; the database compares the others, and returns only
        the rows that are new or differ, so a re-import moves little data."""
        hits = self._in_range(rows, content=True)
        known = 0
        if hits is not None:
            if None not in hits and not self.untimed and list(map(_fourth, hits)) == list(map(_feature_of, rows)) \
                    and list(map(_fifth, hits)) == list(map(_amount_of, rows)) \
                    and list(map(_sixth, hits)) == list(map(_time_of, rows)):
                return set(), len(rows)
            untimed = self.untimed
            same = [h is not None and same_event(h[3], h[4], h[5], r[2], r[3], None if r[0] in untimed else r[4])
                    for r, h in zip(rows, hits)]
            known = sum(same)
            rows = [r for r, s in zip(rows, same) if not s]
            if not rows:
                return set(), known
        new, same_db = self._compare(rows)
        return new, known + same_db

    def _compare(self, rows: list[tuple]) -> tuple[set[str], int]:
        """``_known`` by the database alone: one look-up per row."""
        new, differ = set(), []
        for event_id, feature, amount, ts in events.new_or_differing(self.ledger, rows):
            if feature is None:
                new.add(event_id)
            else:
                differ.append((event_id, feature, amount, ts))
        rejected = 0
        if differ:
            by_id = {r[0]: r for r in rows}
            for event_id, feature, amount, ts in differ:
                r = by_id[event_id]
                if not same_event(feature, amount, ts, r[2], r[3], None if event_id in self.untimed else r[4]):
                    rejected += 1
                    line = _line(event_id)
                    self.reject(line, self.raw(line), "id", str(key_reused(r[6], r[1], amount, feature, ts)))
        return new, len(rows) - len(new) - rejected

    def _claim(self, rows: list[tuple]) -> tuple[list[tuple], list[tuple], int]:
        """Derived rows whose key may be taken: (the rows whose key is free, the rows to write
        with the next occurrence number, how many are duplicates). A taken key is this run's
        when this run wrote it or met it already (an earlier identical row of the file): the row
        takes the next number. Otherwise the row is a duplicate of an earlier run's, now met."""
        rows.sort()  # file order (the event ids hold the line): the earlier identical row first
        holders = self._holders(rows)
        met = self.met
        if None not in holders:  # every key taken (a re-run): at once, when none is this run's
            seqs = list(map(_second, holders))
            self._grow_met(max(seqs))
            if max(seqs) <= self.since:  # all written before this run: nobody has met them but this run
                at, bits = list(map(_BYTE, seqs)), list(map(_BIT.__getitem__, map(_BIT_INDEX, seqs)))
                if not any(map(operator.and_, map(met.__getitem__, at), bits)) \
                        and len(set(map(_key_of, rows))) == len(rows):
                    _consume(map(met.__setitem__, at, map(operator.or_, map(met.__getitem__, at), bits)))
                    return [], [], len(rows)
        else:
            self._grow_met(max((h[1] for h in holders if h is not None), default=0))
        free, bumped, same = [], [], 0
        claimed: set[str] = set()
        prefix = self.run_prefix
        for r, h in zip(rows, holders):
            if h is None:
                free.append(r)
                continue
            seq, holder = h[1], h[2]
            key = r[6]
            i, bit = seq >> 3, 1 << (seq & 7)
            if (holder is not None and holder.startswith(prefix)) or met[i] & bit or key in claimed:
                base, n = key.rsplit(":", 1)
                bumped.append((*r[:6], f"{base}:{int(n) + 1}"))
            else:
                met[i] |= bit
                claimed.add(key)
                same += 1
        return free, bumped, same

    def _grow_met(self, seq: int) -> None:
        met = self.met
        if len(met) <= seq >> 3:
            met.extend(bytes(max((seq >> 3) + 1 - len(met), len(met))))  # doubles: few copies

    def _holders(self, rows: list[tuple]) -> list[tuple | None]:
        """For each row, None when its key is free, else a tuple whose [1] and [2] are the seq and
        the id of the event holding it (the id None when the event is older than this run, so
        cannot be this run's: ``events.keys_between``, ``key_holders``): from the range that
        holds them (``_in_range``), the others by one look-up per key."""
        hits = self._in_range(rows)
        if hits is None:
            return self._look_up(rows, [None] * len(rows))
        return hits if None not in hits else self._look_up(rows, hits)

    def _in_range(self, rows: list[tuple], content: bool = False) -> list[tuple | None] | None:
        """The events holding the rows' keys, the cheap way when they were written together: an
        earlier import of these rows wrote them in one batch, a range of seqs. A sample of
        look-ups says where; that range is read in order (``events.keys_between``, with the
        events' ``content`` if asked: about 2 µs an event, against about 10 for a look-up per
        key). For each row its holder, or None when it is not in the range (its key may still
        be taken); None for all when the rows are too few, or the sample finds their keys
        mostly free or their holders far apart (reading the range would cost more than it
        saves). Exact: a key is unique per customer, so the event of the range with the row's
        customer and key is its holder."""
        n = len(rows)
        if n < 4 * _SAMPLE:
            return None
        sampled = rows[::n // _SAMPLE]
        seqs = list(map(_second, events.key_holders(self.ledger, sampled, self.since)))
        if 2 * len(seqs) < len(sampled) or max(seqs) - min(seqs) > _SPREAD * n:
            return None
        pad = (max(seqs) - min(seqs)) // 16 + _SAMPLE  # the sample's ends fall short of the batch's
        near = events.keys_between(self.ledger, min(seqs) - pad, max(seqs) + pad, self.since, content)
        return list(map(dict(zip(map(_first, near), near)).get,
                        map(events.user_key, map(_user_of, rows), map(_key_of, rows))))

    def _look_up(self, rows: list[tuple], holders: list[tuple | None]) -> list[tuple | None]:
        """``holders`` with those still None looked up, one look-up per key."""
        missing = [i for i, h in enumerate(holders) if h is None]
        if missing:
            at = {rows[i][0]: i for i in missing}
            for found in events.key_holders(self.ledger, [rows[i] for i in missing], self.since):
                holders[at[found[0]]] = found
        return holders

    def close(self) -> None:
        self.met = bytearray()


def _line(event_id: str) -> int:
    return int(event_id[-12:], 16)


def _line_of(e: RowError) -> int:
    return e.line


_user_of = operator.itemgetter(1)
_key_of = operator.itemgetter(6)
_feature_of, _amount_of, _time_of = operator.itemgetter(2), operator.itemgetter(3), operator.itemgetter(4)
_first, _second, _fourth, _fifth, _sixth = map(operator.itemgetter, (0, 1, 3, 4, 5))
_SAMPLE = 64  # keys of a batch looked up first, to find where their holders are (Writer._in_range)
_SPREAD = 4  # read a range of seqs up to this many times the batch's size
_BYTE, _BIT_INDEX, _BIT = (3).__rrshift__, (7).__and__, (1, 2, 4, 8, 16, 32, 64, 128)  # seq -> its byte, bit


def _consume(iterator) -> None:
    deque(iterator, maxlen=0)
