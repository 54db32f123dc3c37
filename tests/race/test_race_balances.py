"""Balances and idempotency keys under processes racing on one ledger (issue 11's "Checked
by"): consume never overdraws and succeeds exactly as often as the credits allow; one key from
eight processes has one first result; a renewal read by eight processes at once is applied
once; on PostgreSQL, consume stays exact with the database's default isolation at REPEATABLE
READ."""

from datetime import datetime, timezone

import pytest

from tests import pgserver
from tests.conftest import pg_backend_present
from tests.race import workers
from usagebill import Billing

pytestmark = pytest.mark.own_backend


def ts(*a) -> int:
    return int(datetime(*a, tzinfo=timezone.utc).timestamp())


def journal_sum(b, table, user, unit=None) -> int:
    sql = f"SELECT COALESCE(SUM(delta), 0) FROM {table} WHERE user_id = ?" + (" AND feature = ?" if unit else "")
    return b.ledger.one(sql, (user, unit) if unit else (user,))[0]


def consume_race(race, config_path, target):
    """300 credits (Pro's 100 included, 200 granted), 8 processes asking 25 times for 3."""
    with Billing.open(config_path, target) as b:
        b.customers.add("race")
        b.subscriptions.start("race", "Pro")
        b.credits.grant("race", "api_calls", 200)
    results = race.run([(workers.consume_many, (str(config_path), target, 8, "race", 25, 3))] * 8)
    with Billing.open(config_path, target) as b:
        assert sum(r["ok"] for r in results) == 100, results
        assert sum(r["failed"] for r in results) == 100
        assert b.credits.get_balance("race", "api_calls") == 0
        assert journal_sum(b, "credit_ledger", "race", "api_calls") == 0
        history = b.credits.history("race", "api_calls")
        assert min(e.balance_after for e in history) == 0  # never below zero, at any step
        assert sum(1 for e in history if e.reason == "consume") == 100


def test_eight_processes_consuming_one_balance_succeed_exactly_as_often_as_it_allows(race, config_path, target):
    consume_race(race, config_path, target)


def test_one_idempotency_key_from_eight_processes_has_one_first_result(race, config_path, target):
    with Billing.open(config_path, target) as b:
        b.customers.add("k")
        b.subscriptions.start("k", "Pro")
    results = race.run([(workers.consume_with_key, (str(config_path), target, 8, "k", "order-1"))] * 8)
    firsts = [r for r in results if not r["replayed"]]
    assert len(firsts) == 1, results
    assert all({**r, "replayed": False} == firsts[0] for r in results)
    assert firsts[0]["success"] and firsts[0]["consumed"] == 7 and firsts[0]["balance"] == 93

    results = race.run([(workers.top_up_with_key, (str(config_path), target, 8, "k", "top-up-1"))] * 8)
    assert sum(not r["replayed"] for r in results) == 1, results
    assert len({(r["delta"], r["balance"]) for r in results}) == 1

    with Billing.open(config_path, target) as b:
        at = b.now()  # after the subscription started, the same in every process
        assert b.credits.get_balance("k", "api_calls") == 93
        assert b.wallet.get_balance("k").balance == 250
        assert journal_sum(b, "wallet_ledger", "k") == 250
    results = race.run([(workers.record_with_key, (str(config_path), target, 8, "k", "req-1", at))] * 8)
    assert sum(not r["replayed"] for r in results) == 1, results
    assert len({r["id"] for r in results}) == 1
    with Billing.open(config_path, target) as b:
        assert tuple(b.ledger.one("SELECT COUNT(*), SUM(amount) FROM usage_events WHERE user_id = 'k'")) == (1, 5)


def test_a_renewal_read_by_eight_processes_at_once_is_applied_once(race, config_path, target):
    """Team renews with "add" (exports +10, wallet +$5.00): a renewal applied twice would
    show in the balances, not only in the journal."""
    jan, feb = ts(2026, 1, 1), ts(2026, 2, 1)
    users = [f"team{i}" for i in range(5)]
    with Billing.open(config_path, target, clock=lambda: jan) as b:
        for user in users:
            b.customers.add(user)
            b.subscriptions.start(user, "Team", "month", anchor=jan)
            assert (b.credits.get_balance(user, "exports"), b.wallet.get_balance(user).balance) == (10, 500)
    at = feb + 3600
    seen = race.run([(workers.read_after_boundary, (str(config_path), target, 8, users, at, seed))
                     for seed in range(8)])
    assert all(s == {u: (20, 1000) for u in users} for s in seen), seen
    with Billing.open(config_path, target, clock=lambda: at) as b:
        for user in users:
            assert [e.period_start for e in b.credits.history(user, "exports") if e.period_start == feb] == [feb]
            assert [e.period_start for e in b.wallet.history(user) if e.period_start == feb] == [feb]
            assert journal_sum(b, "credit_ledger", user, "exports") == 20
            assert journal_sum(b, "wallet_ledger", user) == 1000


def test_consume_stays_exact_with_repeatable_read_as_the_databases_default(race, config_path, pg_url):
    """A transaction that ran at REPEATABLE READ would read a stale balance, or fail to
    serialize; the backend sets READ COMMITTED itself, whatever the database's default."""
    if not pg_backend_present():
        pytest.skip("the PostgreSQL backend (usagebill/ledger/postgres.py) is not in this checkout")
    from psycopg import sql

    name = pgserver.database_of(pg_url)
    with pgserver._admin(pg_url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'")
                     .format(sql.Identifier(name)))
    assert pgserver.execute(pg_url, "SHOW default_transaction_isolation") == [("repeatable read",)]
    consume_race(race, config_path, pg_url)
