"""``reconcile``: does Stripe bill what the ledger holds? Per customer, feature and billing
period:

- **closed** periods (Stripe finalized their invoice): the ledger's units against the
  quantities Stripe *billed*, the usage lines of that invoice plus the late-usage invoice items
  made for the period (``usagebill.closing``). Any difference, and any unit still pending or
  refused, is money at risk.
- **open** periods (the current one, a renewal still a draft in its grace hour, or an ended
  period Stripe has no invoice for yet): nothing is billed yet, so the units the ledger
  delivered are compared with Stripe's meter totals (the meter-summary check: it is the one
  that catches a meter event Stripe dropped or one sent behind usagebill's back while there is
  still time to fix it), and the pending units are shown.

Stripe wants minute-aligned meter windows, so an open period is widened to whole minutes on
both sides and the ledger summed over that same window (events by their own time, coalesced
batches by the batch's time, as Stripe sees them).

Over many customers it runs in three steps, every ledger access on the calling thread (the
SQLite connection is shared):

1. the ledger: the customers, their subscriptions and "now", which features they have usage of;
2. Stripe, concurrently: each customer's invoices, late-usage items and open-period meter
   totals, fetched by a bounded pool of threads (``workers``) sharing one pace (``rate``
   requests a second, Stripe's documented read limits by default, and a 429 pauses the whole
   pool); the period invoices found are mirrored into the ledger as results come in;
3. the ledger again: the units of every compared customer/feature/period, in one statement
   (``ledger/reconcile_reads.py``), then one line per customer, feature and period."""

from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator

from ..billing import Billing
from ..closing import usage_window
from ..errors import NotFoundError, ValidationError
from ..ledger import closing as ledger_closing
from ..ledger import reconcile_reads as reads
from ..ledger.closing import PeriodInvoice
from ..rules import MAX_AHEAD, check_user_id
from ..timeparse import parse_time
from . import mapping, meter_errors
from .client import Connection, stripe_errors
from .invoices import period_invoice
from .late_usage import LATE_KEY
from .meter_sender import RetryPolicy

RECENT = 5 * 60  # Stripe's summaries lag ingestion: deliveries this recent may not show yet
CLOSED, OPEN = "closed", "open"

# Stripe's documented rate limits (https://docs.stripe.com/rate-limits): 25 read requests a
# second in test mode and 100 in live mode, and 25 a second to any one endpoint unless noted.
# "Treat the limits as maximums": reconcile stays at 80% of them. The sandbox has none.
READ_RATE = {"test": 20.0, "live": 80.0}
ENDPOINT_RATE = 20.0
DEFAULT_WORKERS = 8
MAX_WORKERS = 64
MAX_RATE = 10_000.0
MIRROR_EVERY = 500  # period invoices mirrored into the ledger per transaction


@dataclass(frozen=True)
class Line:
    user_id: str
    feature: str
    period_start: int
    period_end: int
    start_time: int  # the window compared (minute-aligned for an open period)
    end_time: int
    ledger: int  # closed: every unit of the period in the ledger; open: the units delivered
    stripe: int  # closed: units on Stripe's invoices for it; open: Stripe's meter total
    pending: int  # units not in Stripe yet (for a closed period: not billed)
    recent: bool = False  # open and differing: something was delivered in the last minutes (totals may lag)
    state: str = OPEN  # closed | open
    invoice_id: str | None = None  # the period's invoice, when Stripe has made it
    failed: int = 0  # units Stripe refused (status lists them)
    late: int = 0  # of ``stripe``: units billed as late-usage invoice items

    @property
    def difference(self) -> int:
        return self.stripe - self.ledger

    @property
    def at_risk(self) -> bool:
        """Money at risk: a closed period billed otherwise than the ledger says."""
        return self.state == CLOSED and bool(self.difference or self.pending or self.failed)


@dataclass
class ReconcileResult:
    lines: list[Line] = field(default_factory=list)
    dropped: int = 0  # usage events Stripe dropped after accepting them, found now (status lists them)
    unattributed_drops: int = 0  # drops Stripe reported without naming the event
    customers: int = 0  # customers compared
    skipped: list[str] = field(default_factory=list)  # given customers with nothing in Stripe to compare
    requests: int = 0  # Stripe requests made by the pool (the SDK's own retries not counted)
    throttled: int = 0  # 429s that paused the pool

    @property
    def differences(self) -> list[Line]:
        return [x for x in self.lines if x.difference or x.at_risk or x.failed]

    @property
    def at_risk(self) -> list[Line]:
        return [x for x in self.lines if x.at_risk]

    @property
    def ok(self) -> bool:
        return not self.differences


def minute_window(start: int, end: int) -> tuple[int, int]:
    return start - start % 60, -(-end // 60) * 60


# -- how fast, and how many at once ---------------------------------------------------------

def default_rate(conn: Connection) -> float | None:
    """Requests a second reconcile allows itself: Stripe's read limits with a margin; none for
    the sandbox."""
    return READ_RATE.get(conn.mode)


def default_endpoint_rate(conn: Connection) -> float | None:
    # in test mode the whole account's 25 a second is the tighter limit
    return ENDPOINT_RATE if conn.mode == "live" else None


def check_rate(rate: float | None) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
            or not 0 < rate <= MAX_RATE:
        raise ValidationError(f"rate must be a number of requests a second above 0 and at most "
                              f"{MAX_RATE:,.0f}, not {rate!r}")
    return float(rate)


def check_workers(workers: int | None) -> int | None:
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValidationError(f"workers must be a whole number from 1 to {MAX_WORKERS}, not {workers!r}")
    return workers


class Pace:
    """The pace of a pool of workers calling Stripe: at most ``rate`` requests a second in all
    (and ``per_endpoint`` a second to any one endpoint), evenly spaced, each request taking the
    next free slot. A 429 (Stripe's rate limiter) pauses every worker, not only the one that
    got it, with exponential back-off and jitter (``policy``); the request is then tried again,
    ``policy.rounds`` times in all. Thread-safe."""

    def __init__(self, rate: float | None, per_endpoint: float | None = None, policy: RetryPolicy | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None):
        self.interval = 1.0 / rate if rate else 0.0
        self.endpoint_interval = 1.0 / per_endpoint if per_endpoint else 0.0
        self.policy = policy or RetryPolicy()
        self.clock, self.sleep = clock, sleep
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._next = 0.0  # the next free slot of the whole pool
        self._next_of: dict[str, float] = {}  # and of each endpoint
        self.paused_until = 0.0
        self.requests = 0
        self.throttled = 0

    def _slot(self, endpoint: str) -> float:
        """Take the next free slot; returns how long to wait for it."""
        with self._lock:
            now = self.clock()
            at = max(now, self.paused_until, self._next, self._next_of.get(endpoint, 0.0))
            if self.interval:
                self._next = at + self.interval
            if self.endpoint_interval:
                self._next_of[endpoint] = at + self.endpoint_interval
            return at - now

    def _go(self, endpoint: str) -> None:
        while True:
            delay = self._slot(endpoint)
            if delay > 0:
                self.sleep(delay)
            with self._lock:
                if self.clock() >= self.paused_until:  # else a 429 paused the pool meanwhile
                    self.requests += 1
                    return

    def _pause(self, attempt: int) -> None:
        with self._lock:
            self.throttled += 1
            self.paused_until = max(self.paused_until, self.clock() + self.policy.delay(attempt, self.rng))

    def call(self, endpoint: str, fn: Callable[[], Any]) -> Any:
        import stripe

        for attempt in range(self.policy.rounds):
            self._go(endpoint)
            try:
                return fn()
            except stripe.RateLimitError:
                if attempt + 1 >= self.policy.rounds:
                    raise
                self._pause(attempt)
        raise AssertionError("unreachable")


class _Reader:
    """GET requests through the SDK's own client (its HTTP client, retries and errors), read as
    plain JSON: reconcile lists invoices with their lines and needs a few fields of each, which
    the SDK would first build into objects (most of a run's CPU, measured). The client is shared
    by the pool's threads: it holds no per-request state, and its HTTP client keeps one session
    per thread."""

    def __init__(self, conn: Connection, pace: Pace):
        self.client, self.pace = conn.client, pace

    def each(self, endpoint: str, path: str, params: dict) -> Iterator[dict]:
        """Every object of a Stripe list, a page of 100 at a time."""
        after = None
        while True:
            page_params = {**params, "limit": 100, **({"starting_after": after} if after else {})}
            page = self.pace.call(endpoint, lambda: self.client.raw_request("get", path, **page_params).data)
            yield from page["data"]
            if not page.get("has_more") or not page["data"]:
                return
            after = page["data"][-1]["id"]


# -- step 1: the ledger, before Stripe ----------------------------------------------------------

@dataclass(frozen=True)
class _Customer:
    """What a worker needs to know of a customer, read from the ledger beforehand."""

    user_id: str
    stripe_id: str
    now: int
    subscriptions: tuple  # the ledger's Subscriptions, oldest first
    used: tuple[str, ...]  # metered features it has usage of, sorted


@dataclass(frozen=True)
class _Period:
    sub: object  # the ledger's Subscription
    start: int
    end: int
    invoice_id: str | None
    closed: bool


def read_customer_ids(lines: Iterable[str], name: str) -> list[tuple[int, str]]:
    """(line number, user id) of a customers file: one user id a line; blank lines and lines
    starting with ``#`` are ignored, as is the space around an id. A bad id is an error naming
    the file and line."""
    found = []
    for number, text in enumerate(lines, 1):
        uid = text.strip()
        if not uid or uid.startswith("#"):
            continue
        try:
            check_user_id(uid)
        except ValidationError as e:
            raise ValidationError(f"{name}, line {number}: {e}") from None
        found.append((number, uid))
    return found


def _scope(billing: Billing, user_id: str | None, given: list[tuple[int, str]] | None,
           source: str) -> tuple[list[reads.Customer], list[str]]:
    """The customers to compare, by user id, and the given ones skipped (with why)."""
    ledger = billing.ledger
    if user_id is not None:
        if not billing.subscriptions.all_of(user_id):
            billing.subscriptions.require(user_id)  # says there is none, and how to make one
        if not billing.customers.get(user_id).stripe_customer_id:
            raise NotFoundError(f"customer {user_id!r} is not in Stripe: nothing to reconcile")
        return reads.customers(ledger, [user_id]), []
    if given is None:
        return reads.customers(ledger), []
    known = {c.user_id: c for c in reads.customers(ledger, [uid for _, uid in given])}
    unknown = [(n, uid) for n, uid in given if uid not in known]
    if unknown:
        (n, uid), more = unknown[0], unknown[1:]
        rest = f" (and {len(more):,} more unknown: line{'s' if len(more) > 1 else ''} " \
               f"{', '.join(str(m) for m, _ in more[:5])}{', ...' if len(more) > 5 else ''})" if more else ""
        raise NotFoundError(f"{source}, line {n}: unknown customer {uid!r}{rest}")
    skipped = [f"{c.user_id} (not in Stripe)" if not c.stripe_customer_id else f"{c.user_id} (never subscribed)"
               for c in known.values() if not (c.stripe_customer_id and c.subscribed)]
    return [c for c in sorted(known.values(), key=lambda c: c.user_id) if c.stripe_customer_id and c.subscribed], \
        skipped


def _now(billing: Billing, c: reads.Customer) -> int:
    """``billing.now_for`` from what was read for every customer at once: real time without a
    test clock (or its time unknown yet), the clock's time, or, while an advance of the clock
    is unfinished in the ledger, ``now_for`` itself (it asks Stripe)."""
    if c.clock_time is None:
        return billing.now()
    return billing.now_for(c.user_id) if c.advancing else c.clock_time


def _customers(billing: Billing, scope: list[reads.Customer], metered: dict[str, str],
               since: int | None) -> list[_Customer]:
    used = reads.features_with_usage(billing.ledger, [(c.user_id, f) for c in scope for f in metered])
    subscriptions = billing.subscriptions.all_of_many([c.user_id for c in scope])
    out = []
    for c in scope:
        subs = subscriptions[c.user_id]
        if since is not None:  # a subscription that ended before --since has no period to compare
            subs = [s for s in subs if s.canceled_at is None or s.canceled_at > since]
        if not subs:
            continue
        out.append(_Customer(c.user_id, c.stripe_customer_id, _now(billing, c), tuple(subs),
                             tuple(sorted(f for f in metered if (c.user_id, f) in used))))
    return out


# -- step 2: Stripe, on the pool's threads (no ledger access here) ----------------------------

def _features(sub, customer: _Customer, metered: dict[str, str]) -> list[str]:
    """The plan's usage features and any other feature the customer has usage of, with a meter."""
    keys = [k for k, f in sub.plan.features.items() if f.track_usage]
    keys += [k for k in customer.used if k not in keys]
    return [k for k in keys if k in metered]


def _periods(customer: _Customer, invoiced_by_sub: dict[int, list[PeriodInvoice]], count: int,
             since: int | None) -> list[_Period]:
    """The customer's newest ``count`` billing periods over all its subscriptions (ending after
    ``since``): those Stripe has an invoice for (closed when final), then the ended and current
    ones it has none for."""
    now = customer.now
    found: list[_Period] = []
    for sub in customer.subscriptions:
        invoiced = {p.period_start: p for p in invoiced_by_sub.get(sub.id, [])}
        last = min(now, sub.canceled_at) if sub.canceled_at is not None else now
        start, end = sub.period(sub.anchor)
        while start <= last:
            p = invoiced.pop(start, None)
            if p is not None:
                found.append(_Period(sub, start, p.period_end, p.invoice_id, p.finalized))
            elif sub.canceled_at is None or start < sub.canceled_at:
                found.append(_Period(sub, start, min(end, sub.canceled_at or end), None, False))
            start, end = sub.period(end)
        found += [_Period(sub, p.period_start, p.period_end, p.invoice_id, p.finalized) for p in invoiced.values()]
    found.sort(key=lambda p: (p.start, p.sub.id), reverse=True)
    if since is not None:
        found = [p for p in found if p.end > since]
    return found[:count]


@dataclass
class _Fetched:
    """What Stripe says of one customer."""

    customer: _Customer
    invoices: list[PeriodInvoice] = field(default_factory=list)  # to mirror into the ledger
    periods: list[_Period] = field(default_factory=list)
    late: dict[tuple[str, str | None, int], int] = field(default_factory=dict)
    billed: dict[tuple[str, str], int] = field(default_factory=dict)  # (invoice, feature) -> units
    meter: dict[tuple[int, str], tuple[int, int, int]] = field(default_factory=dict)  # (period, feature) -> window, total


def _usage_lines(lines: list[dict], product: str | None) -> int:
    """Units of a feature's product on an invoice: its metered lines, and the invoice items of
    usage before a price change (at the old price, the feature's product); late-usage items
    name no product: counted apart."""
    total = 0
    for line in lines:
        details = (line.get("pricing") or {}).get("price_details")
        if details and details.get("product") == product:
            total += line.get("quantity") or 0
    return total


def _fetch(read: _Reader, c: _Customer, *, count: int, since: int | None, closed_only: bool,
           metered: dict[str, str], products: dict[str, str]) -> _Fetched:
    got = _Fetched(c)
    raw_invoices: dict[str, dict] = {}
    by_sub: dict[int, list[PeriodInvoice]] = {}
    with stripe_errors(f"invoices of {c.user_id}"):
        for sub in c.subscriptions:
            if not sub.stripe_subscription_id:
                continue
            for inv in read.each("invoices", "/v1/invoices", {"subscription": sub.stripe_subscription_id}):
                p = period_invoice(sub.id, inv)
                if p is not None:
                    by_sub.setdefault(sub.id, []).append(p)
                    raw_invoices[inv["id"]] = inv
        got.invoices = [p for ps in by_sub.values() for p in ps]
        got.periods = _periods(c, by_sub, count, since)
        if any(p.closed for p in got.periods):
            for ii in read.each("invoiceitems", "/v1/invoiceitems", {"customer": c.stripe_id}):
                meta = ii.get("metadata") or {}
                if LATE_KEY in meta:
                    # one subscription's period: a re-subscription's first period may start in the
                    # same second as the cancelled one's last
                    key = (meta.get("usagebill_feature"), meta.get("usagebill_subscription") or None,
                           int(meta.get("usagebill_period_start", 0)))
                    got.late[key] = got.late.get(key, 0) + (ii.get("quantity") or 0)
    for p in got.periods:
        if p.closed:
            inv = raw_invoices[p.invoice_id]
            with stripe_errors(f"invoice {p.invoice_id}"):
                lines = inv["lines"]["data"] if not inv["lines"].get("has_more") else list(
                    read.each("invoice lines", f"/v1/invoices/{p.invoice_id}/lines", {}))
            for feature in _features(p.sub, c, metered):
                got.billed[p.invoice_id, feature] = _usage_lines(lines, products.get(feature))
    if closed_only:
        return got
    for i, p in enumerate(got.periods):
        if p.closed:
            continue
        lo, hi = usage_window(p.sub, p.start, p.end)
        # no event can be later than now + 5 minutes: don't ask Stripe about the future
        wlo, whi = minute_window(lo, min(hi, c.now + MAX_AHEAD))
        for feature in _features(p.sub, c, metered):
            with stripe_errors(f"meter event summaries of {c.user_id} ({feature})"):
                total = sum(s["aggregated_value"] for s in read.each(
                    "meter event summaries", f"/v1/billing/meters/{metered[feature]}/event_summaries",
                    {"customer": c.stripe_id, "start_time": wlo, "end_time": whi}))
            got.meter[i, feature] = (wlo, whi, round(total))
    return got


def _fetch_all(billing: Billing, read: _Reader, customers: list[_Customer], workers: int,
               on_progress: Callable[[int, int], None] | None, **kwargs) -> list[_Fetched]:
    """Every customer's Stripe side, ``workers`` customers at a time; the period invoices found
    are mirrored into the ledger here, on the calling thread. The first error stops the run
    (the requests under way finish; the rest are not made)."""
    results: list[_Fetched] = []
    mirror: list[PeriodInvoice] = []
    done = 0
    stop = threading.Event()  # set by the first error: the customers not started yet are left alone

    def task(c: _Customer) -> _Fetched | None:
        if stop.is_set():
            return None
        try:
            return _fetch(read, c, **kwargs)
        except BaseException:
            stop.set()
            raise

    if on_progress:
        on_progress(0, len(customers))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
    try:
        for f in as_completed([pool.submit(task, c) for c in customers]):
            got = f.result()  # a worker's error is raised here, on the calling thread
            results.append(got)
            mirror += got.invoices
            done += 1
            if len(mirror) >= MIRROR_EVERY:
                ledger_closing.put(billing.ledger, mirror)
                mirror = []
            if on_progress:
                on_progress(done, len(customers))
        if mirror:
            ledger_closing.put(billing.ledger, mirror)
    finally:  # an error or Ctrl-C: the customers under way finish, the others are not started
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return results


# -- step 3: the ledger's units, and the lines ------------------------------------------------

def _lines(billing: Billing, fetched: list[_Fetched], metered: dict[str, str], closed_only: bool) -> list[Line]:
    plan: list[tuple] = []  # (fetched, period, feature, window id), in the order of the lines
    windows: list[reads.Window] = []
    for got in sorted(fetched, key=lambda g: g.customer.user_id):
        c = got.customer
        for i, p in enumerate(got.periods):
            if closed_only and not p.closed:
                continue
            lo, hi = usage_window(p.sub, p.start, p.end)
            for feature in _features(p.sub, c, metered):
                wid = len(windows)
                meter = got.meter.get((i, feature))
                windows.append(reads.Window(wid, c.user_id, feature, lo, hi, *(meter[:2] if meter else (None, None))))
                plan.append((got, i, p, feature, wid))
    units = reads.window_units(billing.ledger, windows)
    out, differ = [], {}  # differ: window id -> its line, for the open periods that differ
    for got, i, p, feature, wid in plan:
        c, u, w = got.customer, units.get(wid, reads.WindowUnits()), windows[wid]
        if p.closed:
            late = got.late.get((feature, p.sub.stripe_subscription_id, p.start), 0)
            out.append(Line(c.user_id, feature, p.start, p.end, w.start, w.end, u.total,
                            got.billed[p.invoice_id, feature] + late, u.pending, state=CLOSED,
                            invoice_id=p.invoice_id, failed=u.failed, late=late))
        else:
            # refused units of the open period are money at risk too, until a retry sends them
            out.append(Line(c.user_id, feature, p.start, p.end, w.meter_start, w.meter_end, u.delivered,
                            got.meter[i, feature][2], u.meter_pending, False, OPEN, p.invoice_id,
                            failed=u.failed))
            if out[-1].difference:
                differ[wid] = len(out) - 1
    # where an open period differs: were there deliveries Stripe's totals may not show yet?
    for wid in reads.recent_deliveries(billing.ledger, [windows[wid] for wid in differ], int(time.time()) - RECENT):
        out[differ[wid]] = replace(out[differ[wid]], recent=True)
    return out


def reconcile(billing: Billing, conn: Connection, *, user_id: str | None = None, periods: int = 3,
              closed_only: bool = False, since=None, customers: list[tuple[int, str]] | None = None,
              customers_source: str = "the customers file", rate: float | None = None,
              workers: int | None = None,
              on_progress: Callable[[int, int], None] | None = None) -> ReconcileResult:
    """Compare the last ``periods`` billing periods of each customer in Stripe (or one's, or
    those of ``customers``: (line number, user id) pairs from ``read_customer_ids``, an unknown
    one an error naming ``customers_source`` and its line); ``closed_only``: only the periods
    Stripe has invoiced for good (the cron check); ``since`` (a time): only the periods that
    end after it. Stripe is asked by ``workers`` threads at most ``rate`` requests a second (by
    default Stripe's read limits with a margin, none for the sandbox); ``on_progress(done,
    total)`` follows the customers done."""
    if periods < 1:
        raise ValidationError(f"periods must be at least 1, not {periods}")
    rate = check_rate(rate)
    workers = check_workers(workers) or DEFAULT_WORKERS
    since_ts = None if since is None else parse_time(since, what="--since")
    if user_id is not None and customers is not None:
        raise ValidationError("give a customer or a customers file, not both")
    scope, skipped = _scope(billing, user_id, customers, customers_source)
    result = ReconcileResult(skipped=skipped)
    # events the stream accepted and Stripe dropped later are failed, not delivered
    absorbed = meter_errors.absorb(billing.ledger, conn)
    result.dropped, result.unattributed_drops = absorbed.events, absorbed.unattributed
    metered = {k.split(":", 1)[1]: v for k, v in mapping.all_keys(billing.ledger, mapping.meter_key("")).items()}
    products = {k[len(mapping.feature_product_key("")):]: v
                for k, v in mapping.all_keys(billing.ledger, mapping.feature_product_key("")).items()}
    todo = _customers(billing, scope, metered, since_ts)
    result.customers = len(todo)
    pace = Pace(rate or default_rate(conn), default_endpoint_rate(conn) if rate is None else None,
                RetryPolicy(base_delay=0.0) if conn.sandbox is not None else RetryPolicy())
    fetched = _fetch_all(billing, _Reader(conn, pace), todo, workers, on_progress, count=periods, since=since_ts,
                         closed_only=closed_only, metered=metered, products=products)
    result.requests, result.throttled = pace.requests, pace.throttled
    result.lines = _lines(billing, fetched, metered, closed_only)
    return result
