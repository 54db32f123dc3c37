from decimal import Decimal

import pytest

from usagebill import ConfigError, load_config

BASE = """
[[plans]]
name = "Pro"
prices = [{ amount = 2000, currency = "usd", interval = "month" }]
"""


def write(tmp_path, text):
    p = tmp_path / "billing.toml"
    p.write_text(text)
    return p


def error_of(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    return str(e.value)


def test_example_config_matches_the_product_docs(config_path):
    c = load_config(config_path)
    pro = c.plan("Pro")
    assert pro.prices[0].amount == 2000 and pro.prices[0].currency == "usd" and pro.prices[0].interval == "month"
    calls = pro.features["api_calls"]
    assert calls.display_name == "API Calls"
    assert calls.price_per_credit == Decimal(10)
    assert calls.track_usage is True
    assert calls.credits.allocation == 100 and calls.credits.on_renewal == "reset"
    payg = c.plan("Pay As You Go")
    assert payg.key == "pay_as_you_go"
    assert payg.prices[0].amount == 0
    assert payg.features["api_calls"].price_per_credit == Decimal(5)
    assert any(p.wallet is not None for p in c.plans)


def test_fractional_price_is_an_exact_decimal(tmp_path):
    c = load_config(write(tmp_path, BASE + "[plans.features.t]\nprice_per_credit = 0.1\ntrack_usage = true\n"))
    assert c.plans[0].features["t"].price_per_credit == Decimal("0.1")


def test_usage_feature_needs_price(tmp_path):
    msg = error_of(tmp_path, BASE + BASE.replace("Pro", "B") + "\n[plans.features.api_calls]\ntrack_usage = true\n")
    assert msg == "billing.toml:10: plans[1].features.api_calls: track_usage needs price_per_credit (minor units per unit, e.g. 10 for $0.10)"


def test_auto_top_up_refused_on_usage_feature(tmp_path):
    msg = error_of(
        tmp_path,
        BASE + "[plans.features.x]\nprice_per_credit = 1\ntrack_usage = true\nauto_top_up = { threshold = 1, amount = 5 }\n",
    )
    assert "plans[0].features.x.auto_top_up: auto top-ups don't work with track_usage" in msg


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    msg = error_of(tmp_path, BASE + "[plans.features.x]\nprice_per_credit = 1\ntrak_usage = true\n")
    assert msg.startswith("billing.toml:7: plans[0].features.x.trak_usage: unknown key (did you mean 'track_usage'?)")


def test_unknown_top_level_key(tmp_path):
    assert "plan: unknown key (did you mean 'plans'?)" in error_of(tmp_path, '[[plan]]\nname = "x"\n')


@pytest.mark.parametrize(
    "price, expected",
    [
        ('{ amount = -1, currency = "usd", interval = "month" }', "plans[0].prices[0].amount: must be 0 or more, not -1"),
        ('{ amount = 20.5, currency = "usd", interval = "month" }', "plans[0].prices[0].amount: must be a whole number"),
        ('{ amount = 1, currency = "usdd", interval = "month" }', "plans[0].prices[0].currency: unknown currency 'usdd'"),
        ('{ amount = 1, currency = "usd", interval = "montly" }', "plans[0].prices[0].interval: must be one of week, month, year, not 'montly' (did you mean 'month'?)"),
        ('{ amount = 1, currency = "usd" }', "plans[0].prices[0]: missing required key 'interval'"),
    ],
)
def test_bad_prices(tmp_path, price, expected):
    msg = error_of(tmp_path, f'[[plans]]\nname = "Pro"\nprices = [{price}]\n')
    assert msg.startswith("billing.toml:3: ") and expected in msg


def test_negative_price_per_credit(tmp_path):
    assert "price_per_credit: must be 0 or more" in error_of(tmp_path, BASE + "[plans.features.x]\nprice_per_credit = -1\n")


def test_negative_allocation(tmp_path):
    msg = error_of(tmp_path, BASE + "[plans.features.x]\ncredits = { allocation = -5 }\n")
    assert "plans[0].features.x.credits.allocation: must be 0 or more, not -5" in msg


def test_bad_renewal(tmp_path):
    msg = error_of(tmp_path, BASE + '[plans.features.x]\ncredits = { allocation = 5, on_renewal = "rest" }\n')
    assert "on_renewal: must be one of reset, add, not 'rest' (did you mean 'reset'?)" in msg


def test_duplicate_plan_names(tmp_path):
    msg = error_of(tmp_path, BASE + BASE.replace('"Pro"', '"pro"'))
    assert msg == "billing.toml:7: plans[1].name: duplicate plan name 'pro' (same as 'Pro')"


def test_toml_syntax_error_has_line_and_column(tmp_path):
    msg = error_of(tmp_path, '[[plans]]\nname = "Pro\n')
    assert msg.startswith("billing.toml:2:") and "TOML syntax error" in msg


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="no such file .*billing.toml.example"):
        load_config(tmp_path / "nope.toml")


def test_not_utf8(tmp_path):
    p = tmp_path / "billing.toml"
    p.write_bytes(b'[[plans]]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match="billing.toml:2: not valid UTF-8"):
        load_config(p)


def test_no_plans(tmp_path):
    assert "plans: must be a non-empty array" in error_of(tmp_path, "plans = []\n")


def test_bad_feature_key(tmp_path):
    assert "feature keys are lower-case" in error_of(tmp_path, BASE + '[plans.features."API Calls"]\nprice_per_credit = 1\n')


def test_ledger_path_is_relative_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "billing.toml"
    p.write_text('[ledger]\npath = "data/l.db"\n' + BASE)
    assert load_config(p).ledger_path == (tmp_path / "sub" / "data" / "l.db").resolve()


def test_duplicate_price_interval(tmp_path):
    msg = error_of(tmp_path, '[[plans]]\nname = "P"\nprices = [{ amount = 1, currency = "usd", interval = "month" }, { amount = 2, currency = "usd", interval = "month" }]\n')
    assert "plans[0].prices[1]: a second usd month price" in msg


def test_packaged_example_is_the_repo_example():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    assert (root / "usagebill" / "example.toml").read_text() == (root / "billing.toml.example").read_text()


def test_init_writes_a_valid_config(tmp_path):
    from click.testing import CliRunner

    from usagebill.cli import cli

    r = CliRunner().invoke(cli, ["init"])
    assert r.exit_code == 0, r.output
    assert load_config(tmp_path / "billing.toml").plan("Pro")
    r = CliRunner().invoke(cli, ["init"])
    assert r.exit_code == 1 and "exists; use --force" in r.stderr


@pytest.mark.parametrize("price, expected", [
    ("0.1234567890123", "has more than 12 decimals (0.1234567890123); Stripe accepts at most 12"),
    ("1e30", "must be at most 10^12 minor units per unit, not 1e+30"),
    ('"10"', "must be a number, not the string '10' (write it without quotes)"),
    ("inf", "must be a finite number, not inf"),
])
def test_price_per_credit_limits(tmp_path, price, expected):
    msg = error_of(tmp_path, BASE + f"[plans.features.x]\nprice_per_credit = {price}\ntrack_usage = true\n")
    assert msg.endswith(f"plans[0].features.x.price_per_credit: {expected}"), msg


def test_price_per_credit_with_twelve_decimals_is_fine(tmp_path):
    c = load_config(write(tmp_path, BASE + "[plans.features.t]\nprice_per_credit = 0.000000000001\ntrack_usage = true\n"))
    assert c.plans[0].features["t"].price_per_credit == Decimal("1E-12")


def test_allocation_beyond_the_amount_limit(tmp_path):
    msg = error_of(tmp_path, BASE + f"wallet = {{ allocation = {2**63} }}\n")
    assert "plans[0].wallet.allocation: must be at most 2^53" in msg


def test_config_check_refuses_a_huge_price_in_one_line(tmp_path):
    from click.testing import CliRunner

    from usagebill.cli import cli

    path = write(tmp_path, BASE + "[plans.features.x]\nprice_per_credit = 1e30\ntrack_usage = true\n")
    r = CliRunner().invoke(cli, ["--config", str(path), "config", "check"])
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and "price_per_credit: must be at most 10^12" in r.output, r.output
