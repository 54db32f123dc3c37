"""What each spawned process of the race tests runs: open its own Billing on the shared
ledger (a SQLite file or a PostgreSQL URL), wait at a barrier until all are ready, then race.

Imported by name (``tests.race.workers``) in the spawned processes, so nothing here may depend
on pytest's state. Results are plain data (dicts, lists), pickled back to the test."""

from __future__ import annotations

import json
import os
import random
import traceback
from dataclasses import asdict
from urllib.parse import parse_qs

_BARRIERS: dict = {}


def init(barriers) -> None:
    """The pool's initializer: the barriers for 2, 4 and 8 parties."""
    global _BARRIERS
    _BARRIERS = barriers
    os.environ.pop("STRIPE_API_KEY", None)


def go(parties: int) -> None:
    """Wait until ``parties`` processes are here (each has its ledger open by then)."""
    _BARRIERS[parties].wait(timeout=120)


def guarded(fn, *args):
    """Run ``fn(*args)``; an exception comes back as its traceback (a string), so one failed
    process names its error instead of hanging the others."""
    try:
        return {"ok": fn(*args)}
    except BaseException:
        for barrier in _BARRIERS.values():  # the others stop waiting for this one
            barrier.abort()
        return {"error": traceback.format_exc()}


def open_billing(config_path: str, target: str, *, clock_at: int | None = None, sandbox_url: str | None = None):
    from usagebill import Billing

    b = Billing.open(config_path, target, clock=(lambda: clock_at) if clock_at is not None else None)
    if sandbox_url is not None:
        from usagebill.gateway.client import connect

        b.use_connection(connect(ledger_path=target, sandbox_url=sandbox_url))
    return b


# -- the races ---------------------------------------------------------------------------------

def consume_many(config_path: str, target: str, parties: int, user: str, attempts: int, amount: int) -> dict:
    b = open_billing(config_path, target)
    try:
        go(parties)
        ok = failed = 0
        for _ in range(attempts):
            if b.credits.consume(user, "api_calls", amount).success:
                ok += 1
            else:
                failed += 1
        return {"ok": ok, "failed": failed}
    finally:
        b.close()


def consume_with_key(config_path: str, target: str, parties: int, user: str, key: str) -> dict:
    b = open_billing(config_path, target)
    try:
        go(parties)
        return asdict(b.credits.consume(user, "api_calls", 7, idempotency_key=key))
    finally:
        b.close()


def top_up_with_key(config_path: str, target: str, parties: int, user: str, key: str) -> dict:
    b = open_billing(config_path, target)
    try:
        go(parties)
        return asdict(b.wallet.top_up(user, 250, "usd", idempotency_key=key))
    finally:
        b.close()


def record_with_key(config_path: str, target: str, parties: int, user: str, key: str, at: int) -> dict:
    b = open_billing(config_path, target)
    try:
        go(parties)
        e = b.usage.record(user, "api_calls", 5, at=at, idempotency_key=key, push=False)
        return {"id": e.id, "replayed": e.replayed, "amount": e.amount}
    finally:
        b.close()


def read_after_boundary(config_path: str, target: str, parties: int, users: list[str], at: int, seed: int) -> dict:
    """Each customer's exports credits and wallet, read at ``at`` (past a period boundary:
    the first read of each applies the renewal)."""
    b = open_billing(config_path, target, clock_at=at)
    try:
        order = list(users)
        random.Random(seed).shuffle(order)
        go(parties)
        seen = {}
        for user in order:
            seen[user] = (b.credits.get_balance(user, "exports"), b.wallet.get_balance(user).balance)
        return seen
    finally:
        b.close()


def add_and_subscribe(config_path: str, target: str, parties: int, sandbox_url: str, user: str, plan: str,
                      seed: int = 0) -> dict:
    """``customers add`` then ``subscribe``, as the CLI runs them; each process starts its
    subscribe up to 0.3 s after the others (a spread that finds more interleavings than all
    at once)."""
    import time

    from usagebill.gateway.accounts import add_customer, subscribe

    b = open_billing(config_path, target, sandbox_url=sandbox_url)
    try:
        conn = b.connection
        go(parties)
        c = add_customer(b, conn, user)
        go(parties)
        time.sleep(random.Random(seed).uniform(0, 0.3))
        s = subscribe(b, conn, user, plan, "month")
        return {"stripe_customer": c.stripe_customer_id, "stripe_subscription": s.stripe_subscription_id,
                "plan": s.plan_name}
    finally:
        b.close()


def push_worker(config_path: str, target: str, parties: int, sandbox_url: str) -> dict:
    from usagebill.gateway.delivery import push

    b = open_billing(config_path, target, sandbox_url=sandbox_url)
    try:
        conn = b.connection
        go(parties)
        r = push(b, conn)
        return {"delivered": r.delivered, "already_delivered": r.already_delivered, "failed": r.failed,
                "still_pending": r.still_pending, "error": r.error}
    finally:
        b.close()


def import_file(config_path: str, target: str, parties: int, path: str) -> dict:
    b = open_billing(config_path, target)
    try:
        go(parties)
        r = b.usage.import_rows(path, push=False)
        return {"rows": r.rows, "imported": r.imported, "duplicates": r.duplicates, "rejected": r.rejected,
                "errors": [str(e) for e in r.errors]}
    finally:
        b.close()


def record_keys(config_path: str, target: str, parties: int, user: str, keys: list[tuple[str, int]]) -> list:
    """``record`` the rows an import is writing at the same time, with the same keys."""
    b = open_billing(config_path, target)
    try:
        go(parties)
        out = []
        for key, at in keys:
            e = b.usage.record(user, "api_calls", 3, at=at, idempotency_key=key, push=False)
            out.append((key, e.id, e.replayed))
        return out
    finally:
        b.close()


def open_fresh(config_path: str, target: str, parties: int) -> list:
    """Open a ledger nobody has opened yet, all at once: it migrates once."""
    from usagebill import Billing

    go(parties)
    b = Billing.open(config_path, target)
    try:
        return [r[0] for r in b.ledger.all("SELECT name FROM _migrations ORDER BY name")]
    finally:
        b.close()


# -- what the sandbox received -----------------------------------------------------------------

def identifiers_in(method: str, path: str, body: bytes) -> list[str]:
    """The meter event identifiers a request carries (v2 stream batches and v1 meter events)."""
    if method.upper() != "POST":
        return []
    if path == "/v2/billing/meter_event_stream":
        return [e.get("identifier") for e in json.loads(body or b"{}").get("events", [])]
    if path == "/v1/billing/meter_events":
        return parse_qs(body.decode()).get("identifier", [])
    return []
