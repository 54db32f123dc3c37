"""The test-clock walkthrough of the docs, in one call, on the sandbox: sync the example
config, a customer on a test clock subscribed to Pro, 150 API calls, the summary, the clock
advanced past the period end, and the invoice Stripe makes (30 more calls charged from the
included credits on the way, which bills nothing):

    Pro                     1 x $20.00    $20.00
    API Calls             150 x $0.10    $15.00
    Total                                 $35.00
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..billing import Billing, ChargeResult
from ..errors import UsagebillError
from ..ledger import outbox
from ..usage import UsageSummary
from .accounts import add_customer, subscribe
from .client import connect
from .clocks import advance_clock, create_clock
from .delivery import push
from .invoices import Invoice, list_invoices, preview_invoice
from .sync import sync

START = "2026-01-01T00:00:00Z"  # a fixed start, so every run tells the same story
CALLS = (50, 60, 40)  # 150 API calls, recorded in three requests
CHARGED = 30  # API calls charged: taken from Pro's 100 included credits, not billed


@dataclass
class DemoResult:
    folder: Path
    clock_id: str
    summary: UsageSummary
    charge: ChargeResult  # CHARGED calls through the waterfall: credits first
    preview: Invoice
    invoice: Invoice  # the renewal invoice of the first period


def run_demo(folder: Path, example_config: str, say: Callable[[str], None] = lambda s: None) -> DemoResult:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "billing.toml"
    if config.exists():
        raise UsagebillError(f"{config} exists: give the demo an empty folder (--dir)")
    config.write_text(example_config, encoding="utf-8")
    billing = Billing.open(config)
    try:
        conn = connect(ledger_path=billing.db_path, sandbox_path=billing.sandbox_path)  # the sandbox, whatever STRIPE_API_KEY says
        say(f"1. usagebill sync                     ({conn.description})")
        done = sync(billing, conn)
        say(f"   {done.writes} Stripe objects: products, prices and the api_calls meter")
        clock = create_clock(billing, conn, at=START, name="usagebill demo")
        say(f"2. usagebill testclock create --at {START}   -> {clock.id}")
        add_customer(billing, conn, "alice", email="alice@example.com", test_clock=clock.id)
        say(f"3. usagebill customers add alice --test-clock {clock.id}")
        sub = subscribe(billing, conn, "alice", "Pro")
        say(f"4. usagebill subscribe alice Pro       -> {sub.stripe_subscription_id}")
        # at the customer's now (the clock's time); each record delivers its event at once,
        # and a push sends what one could not
        recorded = [billing.usage.record("alice", "api_calls", n) for n in CALLS]
        delivered = sum(e.delivery is not None and e.delivery.status == outbox.DELIVERED for e in recorded)
        delivered += push(billing, conn).delivered
        say(f"5. usagebill record alice api_calls ... x{len(CALLS)}  -> {delivered} events delivered to Stripe")
        summary = billing.usage.get_summary("alice", "api_calls")
        say(f"   record bills every call: {summary.total_amount} x $0.10 = $15.00, although Pro includes 100 API calls:")
        say("   the included credits are used by usagebill charge and credits consume, never by record.")
        charged = billing.charge("alice", "api_calls", CHARGED)
        say(f"6. usagebill charge alice api_calls {CHARGED}   -> {charged.from_credits} from credits "
            f"({charged.credit_balance} left), {charged.as_usage} billed")
        preview = preview_invoice(billing, conn, "alice")
        advanced = advance_clock(billing, conn, clock.id, "+1month2h")
        say(f"7. usagebill testclock advance {clock.id} --to +1month2h")
        invoices = [i for i in list_invoices(billing, conn, "alice") if i.billing_reason == "subscription_cycle"]
        if not invoices:
            raise UsagebillError("the sandbox made no renewal invoice; this is a bug in usagebill")
        return DemoResult(folder, advanced.id, summary, charged, preview, invoices[-1])
    finally:
        billing.close()
