"""``push``: deliver pending usage events to Stripe as meter events (the outbox).

Ledger first, Stripe second: events are already in the ledger; delivery only records what
Stripe accepted, after it accepted it. The meter event identifier is the ledger's event id
(or a coalesced batch's id, written before sending), so whatever point a push is killed at,
the next push re-sends the same identifiers and Stripe keeps each event once.

Several stream requests are in flight at once (a bounded pool of threads; the ledger is read
and written on the calling thread only: claims before a request, verdicts after), within a
rate limit taken from Stripe's documented limits; several pushes may run at once (each
claims what it sends, with a lease: ``ledger.outbox``).

    from usagebill.gateway.delivery import push
    result = push(billing, conn)          # everything pending, oldest first
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Callable, Hashable, Iterable

from ..billing import Billing
from ..errors import StripeAPIError, ValidationError
from ..ledger import drops as ledger_drops
from ..ledger import outbox
from ..ledger.events import last_seq
from . import mapping, meter_errors
from .client import Connection, stripe_errors
from .late_usage import LateBilling
from .meter_sender import STREAM_MAX_EVENTS, MeterEvent, MeterEventSender, Refused, RetryPolicy, Unavailable

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

COALESCE_CHUNK = 10_000  # events grouped per ledger transaction
# Requests per second. Stripe's documented limits (docs.stripe.com/rate-limits and
# /billing/subscriptions/usage-based/recording-usage-api): in test mode (and sandboxes) meter
# event and stream calls count toward the basic limit of 25 writes a second; in live mode the
# meter event stream has its own, 10,000 events a second (100 requests of 100 events), apart
# from the basic 100 a second. A fifth is left for the rest of the account's traffic in test
# mode; --rate overrides.
REAL_STRIPE_RATE = 20.0  # the basic API rate in test mode, with headroom (reconcile's default too)
PUSH_RATE = {"test": 20.0, "live": 100.0}
SANDBOX_CONCURRENCY = 4  # requests in flight against the sandbox (in process it serialises them anyway)
MAX_CONCURRENCY = 32
IN_FLIGHT_SECONDS = 0.25  # about how long a stream request to Stripe takes: the pool holds rate x this
MAX_FAILURES_KEPT = 20
CLAIM_CHUNKS = 4  # requests' worth of events claimed per transaction (with the verdicts that came back)
INTERRUPT_GRACE = 10.0  # seconds the requests in flight get to end after an interrupt


@dataclass
class PushResult:
    delivered: int = 0  # usage events Stripe accepted in this run (on their own or in a batch)
    already_delivered: int = 0  # Stripe already had them (an earlier, interrupted run sent them)
    failed: int = 0  # refused for good in this run; ``usagebill status`` lists them with reasons
    still_pending: int = 0  # left for the next push (outage, or waiting for a customer / meter)
    requests: int = 0  # API requests made (the SDK's own retries not counted)
    batches: int = 0  # coalesced meter events confirmed in this run
    invoiced_late: int = 0  # events billed as late-usage invoice items (their period's invoice was final)
    waiting: dict[str, int] = field(default_factory=dict)  # why events cannot go yet -> how many
    failures: list[tuple[str, str]] = field(default_factory=list)  # (identifier, reason), the first few
    dropped: int = 0  # events Stripe accepted and then dropped (its error reports name them; in ``failed``)
    unattributed_drops: int = 0  # events Stripe reported dropped without naming them (reconcile shows them)
    error: str | None = None  # why the push stopped before the end

    @property
    def ok(self) -> bool:
        """Nothing refused and nothing stopped the push (waiting events are not errors)."""
        return self.error is None and self.failed == 0


def default_rate(conn: Connection) -> float | None:
    """The basic API rate (reconcile's calls): none for the sandbox."""
    return None if conn.mode == "sandbox" else REAL_STRIPE_RATE


def push_rate(conn: Connection) -> float | None:
    """Requests per second a push makes by default: none for the sandbox, Stripe's own limits
    otherwise (``PUSH_RATE``)."""
    return None if conn.mode == "sandbox" else PUSH_RATE.get(conn.mode, REAL_STRIPE_RATE)


def check_rate(rate) -> float:
    """A rate as given by a person or a script: a positive, finite number of requests a second."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(f"the rate must be a positive number of requests per second, not {rate!r}")
    return value


def default_concurrency(conn: Connection, rate: float | None) -> int:
    """Requests in flight: enough to reach ``rate`` when each takes about IN_FLIGHT_SECONDS."""
    if rate is None:
        return SANDBOX_CONCURRENCY
    return max(1, min(MAX_CONCURRENCY, math.ceil(rate * IN_FLIGHT_SECONDS)))


def default_policy(conn: Connection, rounds: int) -> RetryPolicy:
    # an in-process sandbox has nothing to spare: retry at once
    return RetryPolicy(rounds=rounds, base_delay=0.0 if conn.sandbox is not None else 0.5)


class _Targets:
    """Where a customer's events of a feature go in Stripe, or why they cannot go yet."""

    def __init__(self, billing: Billing):
        self.billing = billing
        self._customers: dict[str, str | None] = {}
        self._meters: dict[str, bool] = {}
        self._subscriptions: dict = {}
        self._why: dict[tuple[str, str], str | None] = {}
        self._periods: dict[str, tuple[int, int]] = {}  # customer -> the [start, end) last looked up
        self.event_names: dict[str, str] = {}

    def customer(self, user_id: str) -> str | None:
        if user_id not in self._customers:
            self._customers[user_id] = outbox.stripe_customer_id(self.billing.ledger, user_id)
        return self._customers[user_id]

    def why_not(self, user_id: str, feature: str) -> str | None:
        key = (user_id, feature)
        if key not in self._why:
            self._why[key] = self._why_not(user_id, feature)
        return self._why[key]

    def _why_not(self, user_id: str, feature: str) -> str | None:
        if not self.customer(user_id):
            return f"customer {user_id} is not in Stripe (usagebill customers add {user_id})"
        if feature not in self._meters:
            self._meters[feature] = mapping.get(self.billing.ledger, mapping.meter_key(feature)) is not None
        if not self._meters[feature]:
            return f"feature {feature} has no Stripe meter (usagebill sync)"
        return None

    def period_group(self, row) -> Hashable | None:
        """(customer, feature, billing period start) for coalescing; None: send it alone."""
        user_id = row["user_id"]
        if self.why_not(user_id, row["feature"]):
            return None
        if user_id not in self._subscriptions:
            self._subscriptions[user_id] = self.billing.subscriptions.active(user_id)
        sub = self._subscriptions[user_id]
        if sub is None:
            return None
        ts = row["timestamp"]
        known = self._periods.get(user_id)  # events of a customer mostly fall in one period
        if known is None or not known[0] <= ts < known[1]:
            known = self._periods[user_id] = tuple(sub.period(ts))[:2]
        return user_id, row["feature"], known[0]


Verdicts = dict  # identifier -> (delivered | duplicate | failed, reason)


class _Pool:
    """Up to ``size`` requests in flight on threads. Each request's verdicts are recorded by
    its ``record`` on the calling thread (the ledger is used from one thread only), when the
    caller collects them: ``collect`` never waits, so the caller records what came back and
    claims what goes next in one short transaction, and waits for a free thread outside any
    (``submit``). The first error stops new requests; those in flight finish and are
    recorded (``raise_if_failed``), then it is raised. ``idle`` runs on the calling thread
    while it waits (lease renewal).

    A request that ends puts its future on a queue (a done callback); the caller waits on
    that queue, not with ``concurrent.futures.wait``, which hooks a waiter into every future in
    flight on each call (a tenth of a push's CPU on the calling thread at 100 events a request)."""

    def __init__(self, size: int, idle: Callable[[], None], idle_every: float, transaction: Callable):
        self.size = size
        self.idle, self.idle_every = idle, idle_every
        self.transaction = transaction
        self._executor: "ThreadPoolExecutor | None" = None
        self._inflight: "dict[Future, Callable[[Verdicts], None]]" = {}  # submitted, not recorded yet
        self._ended: "SimpleQueue[Future]" = SimpleQueue()  # put by each request as it ends
        self._finished: "list[Future]" = []  # taken off that queue, not recorded yet
        self.error: BaseException | None = None

    def submit(self, send: Callable[[], tuple[Verdicts, BaseException | None]],
               record: Callable[[Verdicts], None]) -> None:
        if self.size <= 1:
            verdicts, error = send()
            record(verdicts)
            if error is not None:
                raise error
            return
        self._wait(lambda running: running < self.size)
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor  # only when there is something to send

            self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="usagebill-push")
        future = self._executor.submit(send)
        self._inflight[future] = record
        future.add_done_callback(self._ended.put)

    def _take_ended(self, timeout: float | None) -> bool:
        """Move the requests that ended onto ``_finished``, waiting up to ``timeout`` seconds
        for one (None: not at all). False: none ended meanwhile."""
        try:
            self._finished.append(self._ended.get(timeout=timeout) if timeout else self._ended.get_nowait())
        except Empty:
            return False
        while True:
            try:
                self._finished.append(self._ended.get_nowait())
            except Empty:
                return True

    def _wait(self, enough: Callable[[int], bool]) -> None:
        """Until ``enough(requests still running)``."""
        self._take_ended(None)
        while not enough(len(self._inflight) - len(self._finished)):
            if not self._take_ended(self.idle_every):
                self.idle()

    def collect(self) -> None:
        """Record the verdicts of the requests that are done, without waiting."""
        self._take_ended(None)
        finished, self._finished = self._finished, []
        for i, future in enumerate(finished):
            record = self._inflight.pop(future)
            try:
                verdicts, error = future.result()
                record(verdicts)
            except BaseException:
                self._finished = finished[i + 1:]  # not lost: recorded (or dropped by close) later
                raise
            if error is not None and self.error is None:
                self.error = error

    def raise_if_failed(self) -> None:
        if self.error is not None:
            self.drain()

    def drain(self) -> None:
        """Let every request in flight end, record them all (one transaction), raise the first error."""
        self._wait(lambda running: running == 0)
        with self.transaction(rows_only=True):
            self.collect()
        if self.error is not None:
            raise self.error

    def close(self, *, interrupted: bool) -> None:
        """After an interrupt (or a bug) the requests in flight are given a few seconds to end
        (not recorded: their events stay claimed until released, and go again next time,
        under the same identifiers), so no thread outlives the push by long."""
        if self._executor is not None:
            from concurrent.futures import wait

            if interrupted and self._inflight:
                wait(list(self._inflight), timeout=INTERRUPT_GRACE)
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            self._inflight.clear()
            self._finished.clear()


class _Push:
    def __init__(self, billing: Billing, sender: MeterEventSender, scope: outbox.Scope, batch_size: int,
                 on_progress: Callable[[PushResult], None] | None, concurrency: int, worker: outbox.Worker):
        self.ledger = billing.ledger
        self.sender = sender
        self.scope = scope
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.worker = worker
        self.targets = _Targets(billing)
        self._routes: dict[tuple[str, str], tuple[str, str | None]] = {}  # (user_id, feature) -> _route
        self.result = PushResult()
        self.delivered_now: dict[str, int] = {}  # identifier -> usage events, delivered in this run
        # first sent before this and never confirmed: Stripe may have forgotten the identifier,
        # so settle_stale compares its totals first instead of re-sending blindly
        self.sent_since = int(time.time()) - outbox.STALE_AFTER
        # a few given events (record, charge) go on this thread; many through the pool
        size = 1 if scope.event_ids is not None else concurrency
        self._renewed = time.monotonic()
        self.pool = _Pool(size, self._renew, idle_every=max(worker.lease / 6, 0.05), transaction=self.ledger.transaction)
        self.upto: int | None = None  # every event below this seq was looked at (the watermark may move there)

    def _renew(self) -> None:
        if time.monotonic() - self._renewed >= self.worker.lease / 3:
            outbox.renew(self.ledger, self.worker)
            self._renewed = time.monotonic()

    def _route(self, user_id: str, feature: str) -> tuple[str, str | None]:
        """(the meter's event name, the Stripe customer) for a customer's events of a feature."""
        route = self._routes.get((user_id, feature))
        if route is None:
            names = self.targets.event_names
            if feature not in names:
                names[feature] = mapping.event_name(feature)
            route = self._routes[(user_id, feature)] = (names[feature], self.targets.customer(user_id))
        return route

    def _meter_event(self, identifier: str, user_id: str, feature: str, amount: int, timestamp: int) -> MeterEvent:
        name, customer = self._route(user_id, feature)
        return MeterEvent(identifier, name, customer, amount, timestamp)

    def _meter_events(self, rows: list) -> list[MeterEvent]:
        """Claimed rows (seq, id, user_id, feature, amount, timestamp, ...) as meter events: a
        push makes one per event, so the route is looked up once per customer and feature."""
        routes = self._routes
        for pair in {(r[2], r[3]) for r in rows} - routes.keys():
            self._route(*pair)
        return [MeterEvent(r[1], *routes[r[2], r[3]], r[4], r[5]) for r in rows]

    def _wait(self, reason: str, events: int) -> None:
        self.result.waiting[reason] = self.result.waiting.get(reason, 0) + events

    def _send(self, events: list[MeterEvent]) -> tuple[Verdicts, BaseException | None]:
        """Stream the chunk; if Stripe refuses it as invalid, send its events one by one (v1) so
        each gets its own verdict. Runs on a pool thread: no ledger here. Returns the verdicts
        obtained, even when an outage cut the chunk short, and that error."""
        verdicts: Verdicts = {}
        try:
            if len(events) == 1 and not self.sender.has_session:
                # a lone event (record, charge): one v1 request instead of a session and a stream
                verdicts[events[0].identifier] = self.sender.one(events[0])
                return verdicts, None
            try:
                self.sender.stream(events)
                return {e.identifier: ("delivered", None) for e in events}, None
            except Refused:
                for e in events:
                    verdicts[e.identifier] = self.sender.one(e)
            return verdicts, None
        except (Unavailable, StripeAPIError) as e:
            return verdicts, e
        except BaseException as e:  # a bug, an unexpected SDK error, an interrupt: recorded as far as it got, then raised
            return verdicts, e

    def _deliver(self, events: list[MeterEvent], record: Callable[[Verdicts], None]) -> None:
        def recorded(verdicts: Verdicts) -> None:
            if verdicts:
                record(verdicts)
                if self.on_progress is not None:
                    self.result.requests = self.sender.requests
                    self.on_progress(self.result)

        self.pool.submit(lambda: self._send(events), recorded)

    def _count(self, verdict: str, reason: str | None, identifier: str, events: int) -> None:
        r = self.result
        if verdict == "delivered":
            r.delivered += events
            self.delivered_now[identifier] = events
        elif verdict == "invoiced":
            r.invoiced_late += events
        elif verdict == "duplicate":
            r.already_delivered += events
        else:
            r.failed += events
            if len(r.failures) < MAX_FAILURES_KEPT:
                r.failures.append((identifier, reason or ""))

    def _send_batches(self, batches: list[outbox.Batch]) -> None:
        for i in range(0, len(batches), self.batch_size):
            chunk = batches[i:i + self.batch_size]
            by_id = {b.id: b for b in chunk}

            def record(verdicts, by_id=by_id):
                ok = [i for i, (v, _) in verdicts.items() if v != "failed"]
                bad = {i: reason for i, (v, reason) in verdicts.items() if v == "failed"}
                outbox.mark_batches(self.ledger, ok, bad)
                for i, (v, reason) in verdicts.items():
                    self._count(v, reason, i, by_id[i].events)
                self.result.batches += len(ok)

            self._deliver([self._meter_event(b.id, b.user_id, b.feature, b.amount, b.timestamp) for b in chunk], record)

    def send_batches(self) -> None:
        """Coalesced batches written but not confirmed yet (by an earlier run), not held by another push."""
        after: tuple[int, str] | None = (0, "")
        while after is not None:
            with self.ledger.transaction(rows_only=True):
                self.pool.collect()
                batches, waiting, after = outbox.claim_batches(
                    self.ledger, self.scope, self.worker, lambda b: self.targets.why_not(b.user_id, b.feature),
                    after=after, limit=self.batch_size * CLAIM_CHUNKS, sent_since=self.sent_since)
            self.pool.raise_if_failed()
            for b, reason in waiting:
                self._wait(reason, b.events)
            self._send_batches(batches)

    def coalesce(self) -> None:
        after = 0
        while True:
            with self.ledger.transaction(rows_only=True):
                self.pool.collect()
                batches, after = outbox.coalesce(self.ledger, self.scope, self.targets.period_group, after_seq=after,
                                                 limit=COALESCE_CHUNK, worker=self.worker)
            self.pool.raise_if_failed()
            self._send_batches(batches)
            if not after:
                return

    def send_events(self) -> None:
        """Pending events on their own, oldest first, identifier = the ledger's event id. The
        verdicts that came back and the next claim (a few requests' worth) share one short
        transaction; the wait for a free thread is outside it."""
        top = last_seq(self.ledger)
        cursor = outbox.Cursor()
        ready: deque[list] = deque()

        def record(verdicts, rows):
            if all(v == "delivered" for v, _ in verdicts.values()):  # the common case, in one go
                # the whole chunk (not cut short by an outage) is every row this push holds
                # between its first and last seq
                whole = len(verdicts) == len(rows)
                outbox.mark_events(self.ledger, list(verdicts), {},
                                   held=(self.worker.id, rows[0][0], rows[-1][0]) if whole else None)
                self.result.delivered += len(verdicts)
                self.delivered_now.update(dict.fromkeys(verdicts, 1))
                return
            ok = [i for i, (v, _) in verdicts.items() if v != "failed"]
            bad = {i: reason for i, (v, reason) in verdicts.items() if v == "failed"}
            outbox.mark_events(self.ledger, ok, bad)
            for i, (v, reason) in verdicts.items():
                self._count(v, reason, i, 1)

        chunks = CLAIM_CHUNKS if self.pool.size > 1 else 1
        while ready or not cursor.done:
            if not ready:
                with self.ledger.transaction(rows_only=True):
                    self.pool.collect()
                    claim = None if self.pool.error else outbox.claim_events(
                        self.ledger, self.scope, self.worker, cursor, self.targets.why_not, limit=self.batch_size * chunks,
                        sent_since=self.sent_since)
                self.pool.raise_if_failed()
                for _, reason in claim.waiting:
                    self._wait(reason, 1)
                ready.extend(claim.events[i:i + self.batch_size] for i in range(0, len(claim.events), self.batch_size))
                self.upto = cursor.seq + 1
                continue
            rows = ready.popleft()
            self._deliver(self._meter_events(rows), lambda verdicts, rows=rows: record(verdicts, rows))
        self.upto = max(top, cursor.seq) + 1


def push(
    billing: Billing,
    conn: Connection,
    *,
    user_id: str | None = None,
    event_ids: Iterable[str] | None = None,
    coalesce: bool = False,
    batch_size: int = STREAM_MAX_EVENTS,
    rate: float | None = None,
    concurrency: int | None = None,
    max_rounds: int = 8,
    on_progress: Callable[[PushResult], None] | None = None,
    policy: RetryPolicy | None = None,
    worker: outbox.Worker | None = None,
) -> PushResult:
    """Deliver pending usage events (all, one customer's, or the given ones) to Stripe.

    Batches coalesced by an earlier run go first, as they were written. ``coalesce`` (sum
    meters only, which all usagebill meters are) then sends one meter event per customer,
    feature and billing period instead of one per usage event. ``rate`` caps requests per
    second (default ``push_rate``: none for the sandbox, Stripe's documented limits for test
    and live mode); ``concurrency`` is how many requests may be in flight (default: enough for
    the rate). Each request is tried ``max_rounds`` times with back-off on 429 / 5xx / network
    errors (a 429 slows every request of the push); after that the push stops and reports it
    in ``error``, leaving the rest pending. Events of customers not in Stripe (or of features
    not synced) stay pending and are counted in ``waiting``. ``event_ids`` is for a few events
    (record, charge); ``user_id`` or nothing for many. Several pushes may run at once: each
    sends what it claimed, and nothing another live push holds.

    Usage of a period whose invoice Stripe has already finalized is not sent as meter events
    (the meter would take it and no invoice bill it): it goes on the customer's next invoice
    as a late-usage invoice item (``invoiced_late``; see ``usagebill.closing``).

    Stripe keeps meter event identifiers unique for 24 hours: an interrupted push should be
    run again within that time (cron), or ``reconcile`` may find usage counted twice."""
    if not 1 <= batch_size <= STREAM_MAX_EVENTS:
        raise ValidationError(f"batch_size must be between 1 and {STREAM_MAX_EVENTS}, not {batch_size}")
    if max_rounds < 1:
        raise ValidationError(f"max_rounds must be at least 1, not {max_rounds}")
    if rate is not None:
        rate = check_rate(rate)
    rate = push_rate(conn) if rate is None else rate
    if concurrency is None:
        concurrency = default_concurrency(conn, rate)
    elif not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError(f"concurrency must be a whole number of requests, at least 1, not {concurrency!r}")
    if user_id is not None:
        billing.customers.get(user_id)  # an unknown customer is an error, not "nothing to push"
    scope = outbox.Scope(user_id, None if event_ids is None else tuple(event_ids))
    sender = MeterEventSender(conn, rate=rate, policy=policy or default_policy(conn, max_rounds))
    worker = worker or outbox.Worker.new()
    run = _Push(billing, sender, scope, batch_size, on_progress, concurrency, worker)
    late = LateBilling(billing, conn, sender, scope, run.targets.customer, run._count, worker)
    interrupted = True
    try:
        outbox.heal(billing.ledger)
        outbox.reap(billing.ledger)
        settle_stale(run, conn)  # first: what it frees goes the usual way below (late, or sent)
        late.run()
        run.send_batches()
        if coalesce:
            run.coalesce()
        run.send_events()
        run.pool.drain()
        interrupted = False
    except Unavailable as e:
        run.result.error = f"{e} (tried {sender.policy.rounds} times)"
        interrupted = False
    except StripeAPIError as e:
        run.result.error = str(e)
        interrupted = False
    finally:
        run.pool.close(interrupted=interrupted)
        outbox.release(billing.ledger, worker)
    if scope.everything and run.upto is not None:
        outbox.advance_watermark(billing.ledger, run.upto)  # what it looked at is found by index from now on
    if scope.event_ids is None:  # record / charge send lone events through v1, refused at once
        _absorb_drops(run, conn, streamed=sender.has_session)
    result = run.result
    result.requests = sender.requests
    result.still_pending = outbox.count_pending(billing.ledger, scope)
    return result


STALE_NOTE = ("sent more than 23 hours ago and Stripe's meter totals cannot tell whether it holds them "
              "(it keeps identifiers 24 hours only): they stay pending; compare with usagebill reconcile")


def settle_stale(run: _Push, conn: Connection) -> None:
    """Events and batches first sent more than 23 hours ago and never confirmed. Stripe
    de-duplicates identifiers for 24 hours only, so re-sending one could count it twice. Per
    customer, feature and minute, Stripe's meter total is compared with what the ledger knows
    it delivered there: the difference is exactly the stale units -> Stripe has them (now
    delivered); no difference -> Stripe has none (pending as if never sent: this push sends
    them, counted once, or bills them late); anything else is doubt, and they stay pending
    with a note."""
    groups: dict[tuple, list[outbox.Stale]] = {}
    for item in outbox.stale_items(run.ledger, run.scope, run.sent_since):
        if run.targets.why_not(item.user_id, item.feature):
            continue  # counted as waiting by the pending count: nothing can go now
        groups.setdefault((item.user_id, item.feature, item.timestamp - item.timestamp % 60), []).append(item)
    summaries = conn.client.v1.billing.meters.event_summaries
    for (user_id, feature, lo), items in groups.items():
        hi = lo + 60
        known, _, _ = outbox.delivered_in_window(run.ledger, user_id, feature, lo, hi, 0)
        meter = mapping.get(run.ledger, mapping.meter_key(feature))
        with stripe_errors(f"meter event summaries of {user_id} ({feature})"):
            page = summaries.list(meter, params={"customer": run.targets.customer(user_id), "start_time": lo,
                                                 "end_time": hi})
            in_stripe = round(sum(x.aggregated_value for x in page.auto_paging_iter()))
        missing = in_stripe - known
        stale = sum(i.amount for i in items)
        events = [i for i in items if i.kind == "event"]
        batches = [i for i in items if i.kind == "batch"]
        if missing == stale and stale:
            outbox.mark_events(run.ledger, [i.id for i in events], {})
            outbox.mark_batches(run.ledger, [i.id for i in batches], {})
            for i in items:
                run._count("duplicate", None, i.id, i.events)
        elif missing == 0:
            # Stripe has none of them: as if never sent, they go the usual way in this push
            # (a meter event, or a late-usage item when their period's invoice is final)
            outbox.forget_unconfirmed(run.ledger, [i.id for i in events], [i.id for i in batches],
                                      sent_before=run.sent_since)
        else:
            run._wait(STALE_NOTE, sum(i.events for i in items))


def _absorb_drops(run: _Push, conn: Connection, *, streamed: bool) -> None:
    """The stream validates later: mark failed what Stripe's error reports say it dropped,
    including events this run counted as delivered (meter_errors.py)."""
    if streamed:
        ledger_drops.note_streamed(run.ledger)
    if not meter_errors.reports_may_be_due(run.ledger):
        return
    try:
        absorbed = meter_errors.absorb(run.ledger, conn)
    except StripeAPIError as e:
        run.result.error = run.result.error or str(e)
        return
    for identifier, reason, events in absorbed.dropped:
        run.result.delivered -= min(run.delivered_now.get(identifier, 0), events)
        run._count("failed", reason, identifier, events)
        run.result.dropped += events
    run.result.unattributed_drops += absorbed.unattributed


def delivery_status(billing: Billing, user_id: str | None = None) -> outbox.DeliveryStatus:
    """Pending, delivered and failed counts (all customers, or one), the failed events with
    Stripe's reasons, and the customers whose events wait for a Stripe id. Ledger only."""
    if user_id is not None:
        billing.customers.get(user_id)
    return outbox.status(billing.ledger, outbox.Scope(user_id))
