"""Checking each row with the rules of ``record`` (rules.py), on the hot path: customers,
features and timestamps are looked up once per run (bounded caches), and the valid rows go to
the writer's batch as INSERT parameters."""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from datetime import datetime, timedelta

from ..context import Subscription
from ..errors import UsagebillError, ValidationError
from ..rules import MAX_AMOUNT, check_amount, check_event_time, check_key, default_event_time, event_time_bounds
from ..timeparse import parse_time
from .reading import csv_records, json_kind, jsonl_records, Layout, simple_csv_records
from .results import ImportFileError, ImportResult
from .writing import Writer

_CACHE_LIMIT = 50_000  # entries per run cache (customers, timestamps) before it is cleared
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_digest = hashlib.blake2b


class _Customer:
    """What validation needs to know about a customer, looked up once per run."""

    __slots__ = ("error", "sub", "now", "lo", "hi", "stamp", "features")

    def __init__(self, error: tuple[str, str] | None = None, sub: Subscription | None = None, now: int = 0):
        self.error = error  # (column, reason) when every row of this customer is rejected
        self.sub = sub
        self.now = now
        if sub is not None:
            self.lo, self.hi = event_time_bounds(now, sub)
            self.stamp = default_event_time(now, sub)  # the time of rows without one
        self.features: dict[str, str | None] = {}  # feature -> None when it can be recorded, else why not



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
        self.customers: dict[str, _Customer] = {}
        self.times: dict[str, int] = {}
        self.warned_no_key = False

    def customer(self, user_id) -> _Customer:
        if len(self.customers) >= _CACHE_LIMIT:
            self.customers.clear()
        if not isinstance(user_id, str):
            c = _Customer(("user_id", f"user_id must be a string, not {json_kind(user_id)}"))
        else:
            try:
                sub = self.ctx.require_subscription(user_id)
                has_clock = self.ctx.customer(user_id)["test_clock"]
                c = _Customer(sub=sub, now=self.ctx.now_for(user_id) if has_clock else self.run_now)
            except UsagebillError as e:
                c = _Customer(("user_id", str(e)))
            self.customers[user_id] = c
        return c

    def feature_error(self, c: _Customer, key) -> str | None:
        if not isinstance(key, str):
            return f"key must be a string, not {json_kind(key)}"
        try:
            self.usage.usage_feature(c.sub, key)
            why = None
        except UsagebillError as e:
            why = str(e)
        if len(c.features) < 1000:
            c.features[key] = why
        return why


    def run(self) -> None:
        w = self.writer
        if self.layout.format == "jsonl":
            records = jsonl_records(w.f, self.layout)
        elif self.layout.simple:
            records = simple_csv_records(w.f, self.layout)
        else:
            records = csv_records(w.f, self.layout)
        try:
            try:
                self._run(records)
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

    def _run(self, records) -> None:
        """The hot path: one pass over the rows, validating each with cached lookups only."""
        w = self.writer
        customers, times, raws = self.customers, self.times, w.raws
        explicit, derived, errors = w.explicit, w.derived, w.errors
        reject, untimed = w.reject, w.untimed
        digest = _digest
        fromiso, epoch, second = datetime.fromisoformat, _EPOCH, _SECOND
        max_amount, cache_limit = MAX_AMOUNT, _CACHE_LIMIT
        prefix = self.id_prefix
        batch_rows = self.batch_rows
        recorded_at = self.ctx.clock()
        n = 0
        for line, raw, (user_id, key, amount, ts, row_id) in records:
            n += 1
            c = customers.get(user_id) if type(user_id) is str else None
            if c is None:
                if user_id is None or user_id == "":
                    reject(line, raw, "user_id", "user_id is missing")
                    continue
                c = self.customer(user_id)
            if c.error is not None:
                reject(line, raw, *c.error)
                continue
            why = c.features.get(key, False) if type(key) is str else False
            if why is not None:
                if why is False:
                    why = "key is missing" if key is None or key == "" else self.feature_error(c, key)
                if why is not None:
                    reject(line, raw, "key", why)
                    continue
            if type(amount) is str and amount.isdecimal() and amount.isascii() and 0 < (a := int(amount)) <= max_amount:
                amount = a
            elif amount is None or amount == "":
                reject(line, raw, "amount", "amount is missing")
                continue
            else:
                try:
                    amount = check_amount(amount)
                except UsagebillError as e:
                    reject(line, raw, "amount", str(e))
                    continue
            if ts is None or ts == "":
                ts = None
            else:
                t = times.get(ts) if type(ts) is str else None
                if t is None:
                    try:
                        if type(ts) is str and ts.isdecimal() and ts.isascii() and len(ts) <= 12:
                            t = int(ts)
                        elif type(ts) is str and len(ts) == 20 and ts[10] == "T" and ts[19] in "Zz":
                            try:  # 2026-01-15T10:00:00Z, the usual export format, fast
                                t = (fromiso(ts[:19]) - epoch) // second
                            except ValueError:
                                t = parse_time(ts, what="timestamp")
                        else:
                            t = parse_time(ts, what="timestamp")
                    except UsagebillError as e:
                        reject(line, raw, "timestamp", str(e))
                        continue
                    if type(ts) is str:
                        if len(times) >= cache_limit:
                            times.clear()
                        times[ts] = t
                if not c.lo <= t <= c.hi:
                    try:
                        check_event_time(t, c.now, c.sub, key)
                    except UsagebillError as e:
                        reject(line, raw, "timestamp", str(e))
                        continue
            if row_id is None or row_id == "":
                if ts is None:
                    t = c.stamp
                    if not self.warned_no_key:
                        self.warn_no_key(line)
                derived.append((f"{prefix}{line:012x}", user_id, key, amount, t, recorded_at,
                                digest(f"{user_id}\x1f{key}\x1f{amount}\x1f{t}".encode(), digest_size=16).digest()))
            else:
                if type(row_id) is not str or len(row_id) > 255 or row_id.isspace():
                    if type(row_id) is int:
                        row_id = str(row_id)
                    else:
                        try:
                            if type(row_id) is not str:
                                raise ValidationError(f"id must be a string, not {json_kind(row_id)}")
                            check_key(row_id)
                        except UsagebillError as e:
                            reject(line, raw, "id", str(e))
                            continue
                event_id = f"{prefix}{line:012x}"
                if ts is None:
                    t = c.stamp
                    untimed.add(event_id)
                explicit.append((event_id, user_id, key, amount, t, recorded_at, row_id))
            raws[line] = raw
            if len(explicit) + len(derived) + len(errors) >= batch_rows:
                w.flush(n)
                n = 0
                recorded_at = self.ctx.clock()
        w.flush(n, final=True)

    def warn_no_key(self, line: int) -> None:
        self.warned_no_key = True
        message = (
            f"line {line} and maybe others have neither id nor timestamp: they are stamped with the time of "
            "this run, so running the import again would import them again (give rows an id or a timestamp)"
        )
        self.result.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)
