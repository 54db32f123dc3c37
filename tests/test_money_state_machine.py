"""A hypothesis state machine over grant / consume / charge / top-up / time passing (renewals)
/ cancel / subscribe, across periods and two plans (tests/two_plans.py), asserting after every
step: no credit balance below zero, every balance equal to the sum of its history and to its
parts, the wallet's total debit for N units within one minor unit of N x price whatever the
split, and one renewal per period of the subscription."""

from decimal import Decimal

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.two_plans import CONFIG
from usagebill import Billing, InsufficientCreditsError, ValidationError

START = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400
USER = "u"
ALLOCATION_ROWS = ("plan_grant", "renewal_reset", "renewal_add")


class Money(RuleBasedStateMachine):
    @initialize()
    def open(self):
        import tempfile
        from pathlib import Path

        self.dir = tempfile.TemporaryDirectory()
        path = Path(self.dir.name) / "billing.toml"
        path.write_text(CONFIG)
        self.now = START
        self.b = Billing.open(path, ":memory:", clock=lambda: self.now)
        self.b.customers.add(USER)
        self.b.subscriptions.start(USER, "A")
        self.paid = {}  # feature -> [exact cost of the units paid from the wallet, minor units debited]

    def teardown(self):
        self.b.close()
        self.dir.cleanup()

    @property
    def sub(self):
        return self.b.subscriptions.get(USER)

    def _paid(self, feature, units, price, debit):
        exact, debited = self.paid.get(feature, (Decimal(0), 0))
        self.paid[feature] = (exact + units * price, debited + debit)

    # -- steps ---------------------------------------------------------------------------------

    @rule(days=st.integers(1, 45))
    def time_passes(self, days):
        self.now += days * DAY

    @rule(n=st.integers(1, 30), expires=st.none() | st.integers(1, 60))
    @precondition(lambda self: self.sub is not None)
    def grant(self, n, expires):
        self.b.credits.grant(USER, "exports", n, expires=None if expires is None else self.now + expires * DAY)

    @rule(n=st.integers(1, 40))
    @precondition(lambda self: self.sub is not None)
    def consume(self, n):
        wallet_before = self.b.wallet.get_balance(USER).balance
        before = self.b.credits.get_balance(USER, "exports")
        r = self.b.credits.consume(USER, "exports", n)
        assert r.success == (before + r.topped_up >= n)
        if r.topped_up:
            price = self.sub.plan.features["exports"].price_per_credit
            self._paid("exports", r.topped_up, price, wallet_before - self.b.wallet.get_balance(USER).balance)

    @rule(feature=st.sampled_from(["exports", "api_calls", "ai_tokens"]), n=st.integers(1, 40))
    @precondition(lambda self: self.sub is not None)
    def charge(self, feature, n):
        sub = self.sub
        if feature not in sub.plan.features:
            return
        try:
            r = self.b.charge(USER, feature, n)
        except InsufficientCreditsError:
            return
        assert r.from_credits + r.from_wallet + r.as_usage == n
        if r.from_wallet:
            self._paid(feature, r.from_wallet, sub.plan.features[feature].price_per_credit, r.wallet_debit)

    @rule(n=st.integers(1, 3000))
    def top_up(self, n):
        self.b.wallet.top_up(USER, n, "usd")

    @rule(n=st.integers(1, 3000))
    def spend(self, n):
        self.b.wallet.consume(USER, n)

    @rule()
    @precondition(lambda self: self.sub is not None)
    def cancel(self):
        self.b.subscriptions.cancel(USER)

    @rule(plan=st.sampled_from(["A", "B"]))
    @precondition(lambda self: self.sub is None)
    def subscribe(self, plan):
        self.b.subscriptions.start(USER, plan)

    @rule()
    def euro_is_refused(self):
        try:
            self.b.subscriptions.start(USER, "Euro")
        except ValidationError as e:
            assert "EUR" in str(e) or "already subscribed" in str(e)
        else:
            raise AssertionError("a USD wallet took a EUR subscription")

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def balances_add_up(self):
        ledger = self.b.ledger
        for feature in ("exports",):
            parts = self.b.credits.get_parts(USER, feature)
            assert parts.balance >= 0 and parts.included >= 0 and all(lot.remaining > 0 for lot in parts.lots)
            assert parts.balance == parts.included + parts.granted
            (total,) = ledger.one("SELECT COALESCE(SUM(delta), 0) FROM credit_ledger WHERE user_id = ? AND feature = ?",
                                  (USER, feature))
            assert total == parts.balance
        w = self.b.wallet.get_balance(USER)
        (total,) = ledger.one("SELECT COALESCE(SUM(delta), 0) FROM wallet_ledger WHERE user_id = ?", (USER,))
        assert total == w.balance
        assert 0 <= w.included <= max(w.balance, 0)  # what can expire is never a debt

    @invariant()
    def wallet_debits_are_exact(self):
        for feature, (exact, debited) in self.paid.items():
            assert exact <= debited < exact + 1, (feature, exact, debited)

    @invariant()
    def one_renewal_per_period(self):
        ledger = self.b.ledger
        for table, unit in (("credit_ledger", "feature"), ("wallet_ledger", "currency")):
            rows = ledger.all(f"SELECT {unit}, period_start, COUNT(*) FROM {table} WHERE user_id = ? "
                              f"AND reason IN {ALLOCATION_ROWS} GROUP BY {unit}, period_start", (USER,))
            assert all(n == 1 for *_, n in rows), rows
        sub = self.sub
        if sub is None:
            return
        self.b.credits.get_balance(USER, "exports")  # a read applies what is due
        period, starts = sub.period(sub.created_at), []
        while period[0] <= self.now:
            starts.append(period[0])
            period = sub.period(period[1])
        for target in ["wallet"] + [f"credits:{k}" for k, f in sub.plan.features.items() if f.credits]:
            have = {r[0] for r in ledger.all("SELECT period_start FROM renewals WHERE user_id = ? AND target = ?",
                                             (USER, target))}
            assert set(starts) <= have, (target, starts, have)  # idle periods included


Money.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
test_money_state_machine = Money.TestCase
