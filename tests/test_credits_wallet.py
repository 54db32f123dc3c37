import multiprocessing
from datetime import datetime, timezone

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings, strategies as st

from usagebill import Billing, IdempotencyError, InsufficientCreditsError, NotFoundError, ValidationError


def ts(*a):
    return int(datetime(*a, tzinfo=timezone.utc).timestamp())


def sum_of_rows(b, table, user, unit=None):
    sql = f"SELECT COALESCE(SUM(delta), 0) FROM {table} WHERE user_id = ?"
    args = [user]
    if unit:
        sql += " AND feature = ?"
        args.append(unit)
    return b.ledger.one(sql, args)[0]


def test_plan_credits_granted_at_subscription_start(billing):
    billing.customers.add("a")
    billing.subscriptions.start("a", "Pro")
    assert billing.credits.get_balance("a", "api_calls") == 100
    h = billing.credits.history("a", "api_calls")
    assert [(e.delta, e.reason) for e in h] == [(100, "plan_grant")]


def test_consume_is_all_or_nothing(billing):
    billing.customers.add("a")
    billing.subscriptions.start("a", "Pro")
    r = billing.credits.consume("a", "api_calls", 60)
    assert (r.success, r.consumed, r.balance) == (True, 60, 40)
    r = billing.credits.consume("a", "api_calls", 41)
    assert (r.success, r.consumed, r.balance) == (False, 0, 40)
    assert billing.credits.get_balance("a", "api_calls") == 40


def test_reset_renewal_applied_once_however_many_reads(billing):
    with freeze_time("2026-01-15T00:00:00Z"):
        billing.customers.add("a")
        billing.subscriptions.start("a", "Pro")
        billing.credits.consume("a", "api_calls", 70)
    with freeze_time("2026-02-15T00:00:01Z"):
        for _ in range(5):
            assert billing.credits.get_balance("a", "api_calls") == 100
        billing.credits.consume("a", "api_calls", 10)
        assert billing.credits.get_balance("a", "api_calls") == 90
        reasons = [e.reason for e in billing.credits.history("a", "api_calls")]
        assert reasons == ["consume", "renewal_reset", "consume", "plan_grant"]


def test_add_renewal_and_wallet_allocation(billing):
    with freeze_time("2026-01-15T00:00:00Z"):
        billing.customers.add("t")
        billing.subscriptions.start("t", "Team", "month")
        assert billing.credits.get_balance("t", "exports") == 10
        assert billing.wallet.get_balance("t").balance == 500
        billing.credits.consume("t", "exports", 3)
    with freeze_time("2026-02-16T00:00:00Z"):
        assert billing.credits.get_balance("t", "exports") == 17  # 7 + 10 added
        assert billing.wallet.get_balance("t").balance == 1000
        assert billing.wallet.get_balance("t").currency == "usd"


def test_grant_and_idempotency(billing):
    billing.customers.add("a")
    billing.subscriptions.start("a", "Pro")
    r1 = billing.credits.grant("a", "api_calls", 5, idempotency_key="g")
    r2 = billing.credits.grant("a", "api_calls", 5, idempotency_key="g")
    assert (r1.balance, r2.balance, r2.replayed) == (105, 105, True)
    assert billing.credits.get_balance("a", "api_calls") == 105
    with pytest.raises(IdempotencyError, match="different arguments"):
        billing.credits.grant("a", "api_calls", 6, idempotency_key="g")
    with pytest.raises(IdempotencyError, match="credits.grant"):
        billing.wallet.top_up("a", 6, idempotency_key="g")


def test_consume_replay(billing):
    billing.customers.add("a")
    billing.subscriptions.start("a", "Pro")
    billing.credits.consume("a", "api_calls", 30, idempotency_key="c")
    again = billing.credits.consume("a", "api_calls", 30, idempotency_key="c")
    assert again.replayed and again.balance == 70
    assert billing.credits.get_balance("a", "api_calls") == 70


def test_unknown_feature_and_customer(billing):
    billing.customers.add("a")
    with pytest.raises(NotFoundError, match="unknown feature"):
        billing.credits.grant("a", "nope", 1)
    with pytest.raises(NotFoundError, match="unknown customer"):
        billing.credits.grant("zed", "api_calls", 1)
    with pytest.raises(ValidationError, match="positive"):
        billing.credits.grant("a", "api_calls", 0)


def test_wallet_can_go_negative_and_keeps_one_currency(billing):
    billing.customers.add("w")
    with pytest.raises(ValidationError, match="give a currency"):
        billing.wallet.top_up("w", 100)
    billing.wallet.top_up("w", 100, "eur")
    r = billing.wallet.consume("w", 250)
    assert (r.balance, r.currency) == (-150, "eur")
    with pytest.raises(ValidationError, match="in EUR, not USD"):
        billing.wallet.top_up("w", 100, "usd")
    assert [e.delta for e in billing.wallet.history("w")] == [-250, 100]


def test_auto_top_up_buys_from_the_wallet(billing):
    billing.customers.add("t")
    billing.subscriptions.start("t", "Team", "month")  # 10 exports, wallet 500, top-up 10 below 2 at 25c
    r = billing.credits.consume("t", "exports", 9)  # 1 left < 2 -> buy 10 for 250
    assert (r.success, r.topped_up, r.balance) == (True, 10, 11)
    assert billing.wallet.get_balance("t").balance == 250
    r = billing.credits.consume("t", "exports", 25)  # needs 14 more: two blocks (500) but wallet has 250
    assert (r.success, r.balance) == (False, 11)
    assert billing.wallet.get_balance("t").balance == 250


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["grant", "consume", "top_up", "spend"]), st.integers(1, 400)), max_size=30))
def test_balances_always_equal_the_sum_of_their_rows(config_path, ops):
    b = Billing.open(config_path, ":memory:")
    b.customers.add("h")
    b.subscriptions.start("h", "Team", "month")
    for op, n in ops:
        if op == "grant":
            b.credits.grant("h", "exports", n)
        elif op == "consume":
            before = b.credits.get_balance("h", "exports")
            r = b.credits.consume("h", "exports", n)
            assert r.success == (before + r.topped_up >= n) or r.topped_up == 0
        elif op == "top_up":
            b.wallet.top_up("h", n)
        else:
            b.wallet.consume("h", n)
        credits = b.credits.get_balance("h", "exports")
        assert credits >= 0
        assert credits == sum_of_rows(b, "credit_ledger", "h", "exports")
        assert b.wallet.get_balance("h").balance == sum_of_rows(b, "wallet_ledger", "h")
    b.close()


def _consume_many(args):
    config_path, db_path, n = args
    b = Billing.open(config_path, db_path)
    ok = 0
    for _ in range(n):
        if b.credits.consume("race", "api_calls", 3).success:
            ok += 1
    b.close()
    return ok


@pytest.mark.sqlite_only(reason="spawned processes open the ledger by path (on PostgreSQL: tests/race/)")
def test_processes_consuming_at_once_never_overdraw(config_path, tmp_path):
    db = tmp_path / "race.db"
    b = Billing.open(config_path, db)
    b.customers.add("race")
    b.subscriptions.start("race", "Pro")
    b.credits.grant("race", "api_calls", 200)  # 300 in all: exactly 100 consumes of 3 succeed
    b.close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        successes = sum(pool.map(_consume_many, [(str(config_path), str(db), 40)] * 4))
    b = Billing.open(config_path, db)
    assert successes == 100
    assert b.credits.get_balance("race", "api_calls") == 0
    assert sum_of_rows(b, "credit_ledger", "race", "api_calls") == 0


def test_charge_waterfall(billing):
    billing.customers.add("t")
    billing.subscriptions.start("t", "Team", "month")
    r = billing.charge("t", "exports", 15)  # 10 credits, then 5 x 25c from the 500c wallet
    assert (r.from_credits, r.from_wallet, r.wallet_debit, r.as_usage) == (10, 5, 125, 0)
    assert (r.credit_balance, r.wallet_balance) == (0, 375)
    with pytest.raises(InsufficientCreditsError, match="nothing was taken"):
        billing.charge("t", "exports", 16)  # wallet covers 15
    assert billing.wallet.get_balance("t").balance == 375


def test_charge_overflows_to_usage(billing):
    billing.customers.add("a")
    billing.subscriptions.start("a", "Pro")
    r = billing.charge("a", "api_calls", 130, idempotency_key="ch")
    assert (r.from_credits, r.from_wallet, r.as_usage) == (100, 0, 30)
    assert billing.usage.get_summary("a", "api_calls").total_amount == 30
    again = billing.charge("a", "api_calls", 130, idempotency_key="ch")
    assert again.replayed and again.usage_event_id == r.usage_event_id
    assert billing.usage.get_summary("a", "api_calls").total_amount == 30


def test_charge_pays_whole_units_from_wallet_at_fractional_price(billing):
    billing.customers.add("t")
    billing.subscriptions.start("t", "Team", "month")
    billing.wallet.consume("t", 499)  # 1 cent left
    r = billing.charge("t", "ai_tokens", 5)  # 0.5c each: the cent pays 2, 3 go to usage
    assert (r.from_wallet, r.wallet_debit, r.as_usage, r.wallet_balance) == (2, 1, 3, 0)
