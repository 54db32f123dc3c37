"""Credits and wallet correct to the cent over many periods (issue 9): each plan's own
features, one renewal per period, included vs granted credits, debts kept, exact wallet
arithmetic, one currency per wallet."""

import math
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.two_plans import CONFIG
from usagebill import Billing, ValidationError


def ts(*a):
    return int(datetime(*a, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def b(tmp_path):
    path = tmp_path / "billing.toml"
    path.write_text(CONFIG)
    with Billing.open(path, tmp_path / "ledger.db") as billing:
        yield billing


def month(n):
    """Mid-month n months after January 2026 (a period of a subscription started on Jan 15)."""
    return f"{2026 + (n // 12)}-{n % 12 + 1:02d}-20T00:00:00Z"


def rows(b, table, user):
    unit = "feature" if table == "credit_ledger" else "currency"
    return [tuple(r) for r in b.ledger.all(f"SELECT {unit}, delta, balance_after, reason FROM {table} "
                                            "WHERE user_id = ? ORDER BY id", (user,))]


def renewals(b, user, target):
    return [r[0] for r in b.ledger.all("SELECT period_start FROM renewals WHERE user_id = ? AND target = ? "
                                       "ORDER BY period_start", (user, target))]


# -- plan-scoped features ------------------------------------------------------------------------

def test_consume_uses_the_customers_own_plans_auto_top_up_and_price(b):
    b.customers.add("bee")
    b.subscriptions.start("bee", "B")  # exports: 20 credits, top-up 3 below 2 at 40c; wallet 1000c
    r = b.credits.consume("bee", "exports", 25)
    # B's top-up: two blocks of 3 (6 credits, $2.40) cover the 5 missing; 1 left < 2: one more block
    assert (r.success, r.topped_up, r.balance) == (True, 9, 4)
    assert b.wallet.get_balance("bee").balance == 1000 - 9 * 40
    # plan A's top-up (10 credits for 10c) would have left 995 - ...: never used for bee
    assert [x[3] for x in rows(b, "wallet_ledger", "bee")] == ["plan_grant", "auto_top_up:exports", "auto_top_up:exports"]


def test_charge_pays_at_the_customers_own_plans_price(b):
    for user, plan in (("ann", "A"), ("bee", "B")):
        b.customers.add(user)
        b.subscriptions.start(user, plan)
    assert b.charge("ann", "exports", 7).wallet_debit == 2 * 1  # 5 from credits, 2 x 1c
    assert b.charge("bee", "exports", 22).wallet_debit == 2 * 40  # 20 from credits, 2 x 40c


def test_a_feature_the_plan_lacks_is_refused_for_writes(b):
    b.customers.add("eu")
    b.subscriptions.start("eu", "Euro")
    with pytest.raises(Exception, match="plan 'Euro' of customer 'eu' has no feature 'exports'"):
        b.credits.consume("eu", "exports", 1)
    with pytest.raises(Exception, match="has no feature 'exports'"):
        b.credits.grant("eu", "exports", 1)


# -- one renewal per period ----------------------------------------------------------------------

def test_cancel_and_resubscribe_within_a_period_grants_nothing_again(b):
    with freeze_time("2026-01-15T00:00:00Z"):
        b.customers.add("ann")
        b.subscriptions.start("ann", "A")
    for day in (16, 17, 18):  # three cycles in the same period
        with freeze_time(f"2026-01-{day}T00:00:00Z"):
            b.subscriptions.cancel("ann")
            b.subscriptions.start("ann", "A")
            assert b.credits.get_balance("ann", "exports") == 5
            assert b.wallet.get_balance("ann").balance == 500
    with freeze_time("2026-02-20T00:00:00Z"):  # the re-subscription's own next period: one renewal
        assert b.credits.get_balance("ann", "exports") == 5
        assert b.wallet.get_balance("ann").balance == 500
    grants = [r for r in rows(b, "credit_ledger", "ann") if r[3] in ("plan_grant", "renewal_reset")]
    assert grants == [("exports", 5, 5, "plan_grant"), ("exports", 0, 5, "renewal_reset")]
    assert [r[3] for r in rows(b, "wallet_ledger", "ann")] == ["plan_grant", "renewal_reset"]


def test_add_renewal_applies_every_idle_period(b):
    with freeze_time("2026-01-15T00:00:00Z"):
        b.customers.add("bee")
        b.subscriptions.start("bee", "B")
    with freeze_time(month(15)):  # 15 periods later, nobody touched bee in between
        assert b.credits.get_balance("bee", "exports") == 16 * 20
        assert b.wallet.get_balance("bee").balance == 16 * 1000
    starts = renewals(b, "bee", "credits:exports")
    assert len(starts) == len(set(starts)) == 16
    assert starts[1] == ts(2026, 2, 15) and starts[-1] == ts(2027, 4, 15)
    with freeze_time(month(15)):
        assert b.credits.get_balance("bee", "exports") == 16 * 20  # read again: nothing more


def test_moving_to_a_richer_plan_within_a_period_tops_up_to_its_allocation(b):
    """The period's allocation is the highest of the plans held in it, granted once: A (5)
    then B (20) in January gives 5 + 15; back to A gives nothing; February is A's 5 (reset)."""
    with freeze_time("2026-01-15T00:00:00Z"):
        b.customers.add("ann")
        b.subscriptions.start("ann", "A")
        b.credits.consume("ann", "exports", 2)
    with freeze_time("2026-01-20T00:00:00Z"):
        b.subscriptions.cancel("ann")
        b.subscriptions.start("ann", "B")
        assert b.credits.get_balance("ann", "exports") == 3 + 15
        assert b.wallet.get_balance("ann").balance == 1000  # 500, topped up by 500 to B's 1000
    with freeze_time("2026-01-25T00:00:00Z"):
        b.subscriptions.cancel("ann")
        b.subscriptions.start("ann", "A")
        assert b.credits.get_balance("ann", "exports") == 18  # nothing granted twice
    with freeze_time("2026-02-26T00:00:00Z"):  # A's next period (from Jan 25): reset to 5
        parts = b.credits.get_parts("ann", "exports")
        assert (parts.balance, parts.included, parts.granted) == (5, 5, 0)
        assert b.wallet.get_balance("ann").balance == 500


# -- included vs granted credits ---------------------------------------------------------------

def test_reset_expires_only_the_unused_allocation(b):
    with freeze_time("2026-01-15T00:00:00Z"):
        b.customers.add("ann")
        b.subscriptions.start("ann", "A")
        b.credits.grant("ann", "exports", 7, idempotency_key="purchase-1")
        b.credits.consume("ann", "exports", 3)  # from the allocation: 2 of it left, 7 granted
        parts = b.credits.get_parts("ann", "exports")
        assert (parts.balance, parts.included, parts.granted) == (9, 2, 7)
    with freeze_time("2026-02-20T00:00:00Z"):
        parts = b.credits.get_parts("ann", "exports")
        assert (parts.balance, parts.included, parts.granted) == (12, 5, 7)  # the purchase survives
        assert rows(b, "credit_ledger", "ann")[-1] == ("exports", 3, 12, "renewal_reset")  # 2 expire, 5 come


def test_grants_expire_and_consumption_takes_the_soonest_expiry_first(b):
    with freeze_time("2026-01-15T00:00:00Z"):
        b.customers.add("ann")
        b.subscriptions.start("ann", "A")
        b.credits.grant("ann", "exports", 10)  # never expires
        b.credits.grant("ann", "exports", 10, expires="2026-02-10T00:00:00Z")
        b.credits.grant("ann", "exports", 10, expires="2026-01-25T00:00:00Z")
        r = b.credits.consume("ann", "exports", 5 + 12)  # allocation 5, then the Jan 25 lot, then 2 of Feb 10
        assert r.balance == 18
        lots = b.credits.get_parts("ann", "exports").lots
        assert [(lot.remaining, lot.expires_at) for lot in lots] == [(8, ts(2026, 2, 10)), (10, None)]
        with pytest.raises(ValidationError, match="is not after"):
            b.credits.grant("ann", "exports", 1, expires="2026-01-01")
    with freeze_time("2026-02-11T00:00:00Z"):  # the Feb 10 lot expired
        parts = b.credits.get_parts("ann", "exports")
        assert (parts.balance, parts.included, parts.granted) == (10, 0, 10)
        assert rows(b, "credit_ledger", "ann")[-1] == ("exports", -8, 10, "grant_expired")
    with freeze_time("2026-02-16T00:00:00Z"):  # the next period: the allocation renewed, the lot kept
        parts = b.credits.get_parts("ann", "exports")
        assert (parts.balance, parts.included, parts.granted) == (15, 5, 10)


def test_reset_never_erases_wallet_debt(b):
    with freeze_time("2026-01-15T00:00:00Z"):
        b.customers.add("ann")
        b.subscriptions.start("ann", "A")  # wallet 500, reset
        b.wallet.consume("ann", 2000)
        assert b.wallet.get_balance("ann").balance == -1500
    with freeze_time("2026-02-20T00:00:00Z"):
        w = b.wallet.get_balance("ann")
        assert (w.balance, w.included) == (-1000, 0)  # the allocation paid 500 of the debt
        b.wallet.top_up("ann", 1500)  # paid: 500
    with freeze_time("2026-03-20T00:00:00Z"):
        w = b.wallet.get_balance("ann")
        assert (w.balance, w.included) == (1000, 500)
        b.wallet.consume("ann", 100)  # from the allocation first: 400 of it left
        assert b.wallet.get_balance("ann").included == 400
    with freeze_time("2026-04-20T00:00:00Z"):  # the unused 400 expires, 500 come; the paid 500 stays
        w = b.wallet.get_balance("ann")
        assert (w.balance, w.included) == (900 - 400 + 500, 500)


# -- exact wallet arithmetic ---------------------------------------------------------------------

@pytest.mark.parametrize("feature, price", [("api_calls", Decimal("0.4")), ("ai_tokens", Decimal("0.5"))])
def test_ten_one_unit_charges_cost_what_one_ten_unit_charge_costs(b, feature, price):
    for user in ("one", "ten"):
        b.customers.add(user)
        b.subscriptions.start(user, "B")
    singles = [b.charge("one", feature, 1).wallet_debit for _ in range(10)]
    assert singles[0] == 1  # the first unit is never free
    assert sum(singles) == b.charge("ten", feature, 10).wallet_debit == math.ceil(10 * price)
    assert b.wallet.get_balance("one").balance == b.wallet.get_balance("ten").balance


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 50), min_size=1, max_size=20), st.sampled_from(["api_calls", "ai_tokens"]))
def test_any_split_costs_n_times_the_price(tmp_path_factory, splits, feature):
    path = tmp_path_factory.mktemp("split") / "billing.toml"
    path.write_text(CONFIG)
    with Billing.open(path, ":memory:") as b:
        b.customers.add("s")
        b.subscriptions.start("s", "B")
        b.wallet.top_up("s", 10_000)
        total = sum(b.charge("s", feature, n).wallet_debit for n in splits)
        price = b.config.plan("B").features[feature].price_per_credit
        assert total == math.ceil(sum(splits) * price)
        assert abs(total - sum(splits) * price) < 1


def test_a_wallet_that_cannot_pay_a_whole_unit_sends_it_to_usage(b):
    b.customers.add("bee")
    b.subscriptions.start("bee", "B")
    b.wallet.consume("bee", 1000)
    r = b.charge("bee", "api_calls", 3)
    assert (r.from_wallet, r.wallet_debit, r.as_usage) == (0, 0, 3)


# -- one currency per wallet ----------------------------------------------------------------------

def test_a_euro_wallet_refuses_a_dollar_subscription(b):
    b.customers.add("eve")
    b.wallet.top_up("eve", 2000, "eur")
    with pytest.raises(ValidationError, match="wallet is in EUR, not USD"):
        b.subscriptions.start("eve", "A")
    assert b.subscriptions.get("eve") is None
    w = b.wallet.get_balance("eve")
    assert (w.balance, w.currency) == (2000, "eur")
    b.subscriptions.start("eve", "Euro")  # the same currency is fine
    assert b.wallet.get_balance("eve").currency == "eur"
