import json

from click.testing import CliRunner

from usagebill.cli import cli


def test_demo_tells_the_docs_story(tmp_path, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_must_not_be_used")  # the demo is always the sandbox
    r = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["summary"] == {"user_id": "alice", "key": "api_calls", "total_amount": 150,
                               "estimated_cost": 1500, "currency": "usd"}
    inv = data["invoice"]
    assert inv["billing_reason"] == "subscription_cycle" and inv["status"] == "open"
    assert [(x["description"], x["quantity"], x["unit_amount"], x["amount"]) for x in inv["lines"]] == [
        ("Pro", 1, "2000", 2000), ("API Calls", 150, "10", 1500)]
    assert inv["total"] == 3500
    assert (data["charge"]["from_credits"], data["charge"]["as_usage"], data["charge"]["credit_balance"]) == (30, 0, 70)
    assert [(x["description"], x["quantity"]) for x in data["preview"]["lines"]] == [("Pro", 1), ("API Calls", 150)]
    assert "must_not_be_used" not in r.output


def test_demo_human_output(tmp_path, terminal):
    r = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    for text in ("Pro", "1 x $20.00", "API Calls", "150 x $0.10", "$15.00", "Total", "$35.00"):
        assert text in r.stdout
    # why 150 calls are billed although Pro includes 100, and charge using the credits
    assert "although Pro includes 100 API calls" in r.stderr
    assert "usagebill record alice api_calls ... x3  -> 3 events delivered to Stripe" in r.stderr
    assert "usagebill charge alice api_calls 30   -> 30 from credits (70 left), 0 billed" in r.stderr


def test_demo_piped_prints_the_invoice_lines(tmp_path):
    r = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "item\tquantity\tunit_price\tamount\tperiod_start\tperiod_end\n"
        "Pro\t1\t$20.00\t$20.00\t2026-02-01T00:00:00Z\t2026-03-01T00:00:00Z\n"
        "API Calls\t150\t$0.10\t$15.00\t2026-01-01T00:00:00Z\t2026-02-01T00:00:00Z\n"
        "Total\t\t\t$35.00\t\t\n")


def test_demo_refuses_a_used_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "billing.toml").write_text("mine")
    r = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d")])
    assert r.exit_code == 1 and "give the demo an empty folder" in r.stderr
    assert (tmp_path / "d" / "billing.toml").read_text() == "mine"
