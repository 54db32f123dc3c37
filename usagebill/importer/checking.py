"""Checking rows with the rules of ``record`` (rules.py), on the hot path: a block of rows at a
time, one column at a time, in C-level passes over the column (``map``, ``join``, ``min`` /
``max``) through the rules' column twins (``rules.amounts_twin``, ``times_twin``,
``keys_twin``). A row that a twin cannot vouch for (an odd value, an unknown customer, a time
outside the customer's fast bounds) is checked on its own by ``check_row``, which calls the
rules themselves and gives their messages. Customers and their features are looked up once
per run (bounded caches); the valid rows go to the writer's batch as INSERT parameters."""

from __future__ import annotations

import csv
import json
import operator
import uuid
from itertools import compress, repeat
from operator import attrgetter

from ..context import Subscription
from ..errors import UsagebillError, ValidationError
from ..timeparse import MAX_TIME
from ..rules import (amounts_twin, check_amount, check_event_time, check_key, default_event_time, event_time_bounds,
                     keys_twin, times_twin)
from ..timeparse import parse_time
from .reading import Block, Layout, blocks_of, json_kind, simple_csv_blocks, csv_records, jsonl_records
from .results import ImportFileError, ImportResult
from .writing import Writer, derived_keys

_CACHE_LIMIT = 50_000  # customers kept per run before the cache is cleared
_FEATURES_KEPT = 1000  # features (and refusals) kept per customer
_stamp, _known_keys = attrgetter("stamp"), attrgetter("ok_keys")
_JSON_TEXT = {str, type(None)}
_JSON_TIMES = {str, int, type(None)}


class _Customer:
    """What validation needs to know about a customer, looked up once per run."""

    __slots__ = ("error", "sub", "now", "lo", "hi", "stamp", "features", "ok_keys")

    def __init__(self, error: tuple[str, str] | None = None, sub: Subscription | None = None, now: int = 0):
        self.error = error  # (column, reason) when every row of this customer is rejected
        self.sub = sub
        self.now = now
        self.lo, self.hi, self.stamp = 1, 0, 0  # no time is within these bounds
        if sub is not None:
            self.lo, self.hi = event_time_bounds(now, sub)
            self.stamp = default_event_time(now, sub)  # the time of rows without one
        self.features: dict[str, str | None] = {}  # feature -> None when it can be recorded, else why not
        self.ok_keys: set[str] = set()  # the features that can be recorded


_NOBODY = _Customer(("user_id", "not looked up"))  # stands for a customer a row's user_id does not name (yet)


class Checker:
    def __init__(self, usage, writer: Writer, layout: Layout, *, batch_rows: int, result: ImportResult, on_warning):
        self.usage = usage
        self.ctx = usage.ctx
        self.writer = writer
        self.layout = layout
        self.batch_rows = batch_rows
        self.result = result
        self.on_warning = on_warning
        self.run_now = self.ctx.clock()  # "now" of customers without a test clock, for the whole run
        self.id_prefix = "ube_" + uuid.uuid4().hex[:20]  # + 12 hex digits of the line: unique, ordered
        self.event_id = (self.id_prefix + "%012x").__mod__  # line -> event id
        self._event_ids = self.id_prefix + "%012x\n"
        writer.run_prefix = self.id_prefix
        self.customers: dict[str, _Customer] = {}  # every customer looked up (refused ones too)
        self.good: dict[str, _Customer] = {}  # those whose rows may be imported
        self.warned_no_key = False
        self.recorded_at = 0
        # bounds within which a time is fine for every customer looked up so far (most share
        # them): a block's times are compared with these two numbers first
        self.lo, self.hi = 0, MAX_TIME

    # -- lookups, once per run ---------------------------------------------------------------
    def customer(self, user_id) -> _Customer:
        if len(self.customers) >= _CACHE_LIMIT:
            self.customers.clear()
            self.good.clear()
        if not isinstance(user_id, str):
            return _Customer(("user_id", f"user_id must be a string, not {json_kind(user_id)}"))
        try:
            sub = self.ctx.require_subscription(user_id)
            has_clock = self.ctx.customer(user_id)["test_clock"]
            c = _Customer(sub=sub, now=self.ctx.now_for(user_id) if has_clock else self.run_now)
        except UsagebillError as e:
            c = _Customer(("user_id", str(e)))
        self.customers[user_id] = c
        if c.error is None:
            self.good[user_id] = c
            self.lo, self.hi = max(self.lo, c.lo), min(self.hi, c.hi)
        return c

    def feature_error(self, c: _Customer, key) -> str | None:
        if not isinstance(key, str):
            return f"key must be a string, not {json_kind(key)}"
        try:
            self.usage.usage_feature(c.sub, key)
            why = None
        except UsagebillError as e:
            why = str(e)
        if len(c.features) < _FEATURES_KEPT:
            c.features[key] = why
            if why is None:
                c.ok_keys.add(key)
        return why

    # -- the pass over the file ----------------------------------------------------------------
    def run(self) -> None:
        w, layout = self.writer, self.layout
        if layout.format == "jsonl":
            blocks = blocks_of(jsonl_records(w.f, layout), self.batch_rows)
        elif layout.simple:
            blocks = simple_csv_blocks(w.f, layout, self.batch_rows)
        else:
            blocks = blocks_of(csv_records(w.f, layout), self.batch_rows)
        try:
            try:
                for block in blocks:
                    self.recorded_at = self.ctx.clock()
                    w.block = block
                    self.check_block(block)
                    w.flush(len(block.raws))
                w.block = None
                w.flush(0, final=True)
            except BaseException as e:
                if w.tx is not None:
                    w.end_transaction(e)
                raise
        except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
            # the first pass read the same bytes without error: the file changed under us
            raise ImportFileError(
                f"{self.result.source}: changed while it was being imported ({e}); run the import again "
                "(what was imported is skipped)"
            ) from None

    def check_block(self, block: Block) -> None:
        """The hot path: each column of the block checked at once; the rows that a column twin
        cannot vouch for go to ``check_row``, one by one."""
        lines, raws, (users, keys, amounts, times, ids) = block.lines, block.raws, block.columns
        n = len(raws)
        jsonl = self.layout.format == "jsonl"
        if jsonl and not (
            set(map(type, users)) <= _JSON_TEXT and set(map(type, keys)) <= _JSON_TEXT
            and set(map(type, times)) <= _JSON_TIMES and set(map(type, ids)) <= _JSON_TEXT
        ):  # a list, an object, a boolean, a number where text belongs: not worth a column pass
            for i in range(n):
                self.check_row(lines[i], raws[i], users[i], keys[i], amounts[i], times[i], ids[i])
            return
        good = self.good
        slow: set[int] = set()  # rows checked one by one

        # customers: one dictionary look-up each, the new ones looked up once
        cs = list(map(good.get, users, repeat(_NOBODY)))
        if _NOBODY in cs:
            new = [u for u in dict.fromkeys(users[i] for i, c in enumerate(cs) if c is _NOBODY)
                   if u and isinstance(u, str) and u not in self.customers]
            with self.ctx.snapshots_of(new):  # read at once: a round trip each on PostgreSQL
                for u in new:
                    self.customer(u)
            cs = list(map(good.get, users, repeat(_NOBODY)))
            slow.update(i for i, c in enumerate(cs) if c is _NOBODY)

        # features: in the customer's set of features that can be recorded
        known = list(map(operator.contains, map(_known_keys, cs), keys))
        if not all(known):
            for i in [i for i, k in enumerate(known) if not k]:
                c, key = cs[i], keys[i]
                if c is not _NOBODY and key and key not in c.features:
                    self.feature_error(c, key)
                if key not in c.ok_keys:
                    slow.add(i)

        # amounts
        checked = amounts_twin(amounts)
        if checked is None:
            checked = [None] * n
            for i, a in enumerate(amounts):
                one = amounts_twin((a,))
                if one is None:
                    slow.add(i)
                else:
                    checked[i] = one[0]

        # times: parsed at once (each distinct value once when they repeat); rows without
        # one get the customer's stamp (and no bounds check, like record without --at)
        untimed = None
        no_time = times.count("") + (times.count(None) if jsonl else 0)
        if no_time == n:  # no time column, or every time left out
            stamps = list(map(_stamp, cs))
            untimed = range(n)
        else:
            stamps = times_twin(times) if no_time == 0 else None
            if stamps is None:
                distinct = dict.fromkeys(times)
                distinct.pop("", None)
                distinct.pop(None, None)
                values = list(distinct)
                parsed = times_twin(values)
                if parsed is None:
                    parsed = [(p[0] if (p := times_twin((v,))) is not None else None) for v in values]
                at = dict(zip(values, parsed))
                stamps = list(map(at.get, times))
            if None in stamps:
                untimed = []
                for i in [i for i, t in enumerate(stamps) if t is None]:
                    if times[i] == "" or times[i] is None:
                        untimed.append(i)
                    else:
                        slow.add(i)  # parse_time tells why (or takes a form the twin does not)
                    stamps[i] = self.lo  # a stand-in, not compared below
            if not (min(stamps) >= self.lo and max(stamps) <= self.hi):  # not within every customer's bounds
                out = {i for i, (c, t) in enumerate(zip(cs, stamps)) if not c.lo <= t <= c.hi}
                slow.update(out.difference(untimed) if untimed else out)
            if untimed:
                for i in untimed:
                    stamps[i] = cs[i].stamp

        # ids: none (keys derived from the content), all (explicit keys), or a mix
        no_id = ids.count("") + (ids.count(None) if jsonl else 0)
        if no_id == n:
            has_id = None
        elif no_id == 0 and keys_twin(ids):
            has_id = ...
        else:
            has_id = [bool(i) for i in ids]  # "" and None: no id
            for i, row_id in enumerate(ids):
                if has_id[i] and not keys_twin((row_id,)):
                    slow.add(i)

        # the rows every twin vouched for, as INSERT parameters
        if slow:
            keep = [i not in slow for i in range(n)]
            pick = lambda col: list(compress(col, keep))  # noqa: E731
            lines_, users_, keys_, amounts_, stamps_ = pick(lines), pick(users), pick(keys), pick(checked), pick(stamps)
            ids_ = pick(ids)
            has_id = has_id if has_id is None or has_id is ... else pick(has_id)
            untimed_ = None if untimed is None else set(untimed)
            untimed = None if untimed_ is None else [j for j, i in enumerate(compress(range(n), keep)) if i in untimed_]
        else:
            lines_, users_, keys_, amounts_, stamps_, ids_ = lines, users, keys, checked, stamps, ids
        w = self.writer
        if has_id is ...:
            self._explicit(lines_, users_, keys_, amounts_, stamps_, ids_, untimed)
        elif has_id is None:
            self._derived(lines_, users_, keys_, amounts_, stamps_, untimed)
        else:
            split = [list(compress(col, has_id)) for col in (lines_, users_, keys_, amounts_, stamps_, ids_)]
            unsplit = list(map(operator.not_, has_id))
            at_untimed = None
            if untimed:
                u = set(untimed)
                at_untimed = [j for j, i in enumerate(compress(range(len(has_id)), has_id)) if i in u]
                d_untimed = [j for j, i in enumerate(compress(range(len(has_id)), unsplit)) if i in u]
            self._explicit(*split, at_untimed)
            self._derived(*[list(compress(col, unsplit)) for col in (lines_, users_, keys_, amounts_, stamps_)],
                          d_untimed if untimed else None)
        if slow:
            for i in sorted(slow):
                self.check_row(lines[i], raws[i], users[i], keys[i], amounts[i], times[i], ids[i])
            # back in file order: the first row of an id is the event (later ones repeat it or
            # are refused), and occurrence numbers follow the file
            w.explicit.sort()
            w.derived.sort()

    def event_ids(self, lines) -> list[str]:
        """The event ids of these lines (one formatting of the block, then split)."""
        ids = ((self._event_ids * len(lines)) % tuple(lines)).split("\n")
        ids.pop()
        return ids

    def _explicit(self, lines, users, keys, amounts, stamps, ids, untimed) -> None:
        event_ids = self.event_ids(lines)
        self.writer.explicit.extend(zip(event_ids, users, keys, amounts, stamps, repeat(self.recorded_at), ids))
        if untimed:
            self.writer.untimed.update(event_ids[i] for i in untimed)

    def _derived(self, lines, users, keys, amounts, stamps, untimed) -> None:
        if untimed and not self.warned_no_key:
            self.warn_no_key(lines[untimed[0]])
        self.writer.derived.extend(zip(self.event_ids(lines), users, keys, amounts, stamps, repeat(self.recorded_at),
                                       derived_keys(users, keys, amounts, stamps)))

    def check_row(self, line: int, raw: bytes, user_id, key, amount, ts, row_id) -> None:
        """One row, checked by the rules themselves (rules.py, timeparse.py): a row that a
        column twin could not vouch for. Rejected, or added to the batch."""
        w = self.writer
        reject = w.reject
        if user_id is None or user_id == "":
            return reject(line, raw, "user_id", "user_id is missing")
        c = self.customers.get(user_id) if type(user_id) is str else None
        if c is None:
            c = self.customer(user_id)
        if c.error is not None:
            return reject(line, raw, *c.error)
        why = c.features.get(key, False) if type(key) is str else False
        if why is False:
            why = "key is missing" if key is None or key == "" else self.feature_error(c, key)
        if why is not None:
            return reject(line, raw, "key", why)
        if amount is None or amount == "":
            return reject(line, raw, "amount", "amount is missing")
        try:
            amount = check_amount(amount)
        except UsagebillError as e:
            return reject(line, raw, "amount", str(e))
        if ts is None or ts == "":
            t = None
        else:
            try:
                t = parse_time(ts, what="timestamp")
                check_event_time(t, c.now, c.sub, key)
            except UsagebillError as e:
                return reject(line, raw, "timestamp", str(e))
        event_id = self.event_id(line)
        if row_id is None or row_id == "":
            if t is None:
                t = c.stamp
                if not self.warned_no_key:
                    self.warn_no_key(line)
            w.derived.append((event_id, user_id, key, amount, t, self.recorded_at,
                              derived_keys((user_id,), (key,), (amount,), (t,))[0]))
            return
        if type(row_id) is int and type(row_id) is not bool:
            row_id = str(row_id)  # a JSON number as an id is that number's text
        try:
            if type(row_id) is not str:
                raise ValidationError(f"id must be a string, not {json_kind(row_id)}")
            check_key(row_id)
        except UsagebillError as e:
            return reject(line, raw, "id", str(e))
        if t is None:
            t = c.stamp
            w.untimed.add(event_id)
        w.explicit.append((event_id, user_id, key, amount, t, self.recorded_at, row_id))

    def warn_no_key(self, line: int) -> None:
        self.warned_no_key = True
        message = (
            f"line {line} and maybe others have neither id nor timestamp: they are stamped with the time of "
            "this run, so running the import again would import them again (give rows an id or a timestamp)"
        )
        self.result.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)
