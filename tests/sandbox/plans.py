"""The docs' plan in a sandbox: Pro at $20 a month plus API Calls at $0.10 each (a sum meter),
and a customer on a test clock."""


def pro_with_api_calls(c, frozen_time: int) -> dict:
    meter = c.v1.billing.meters.create({"display_name": "API Calls", "event_name": "api_calls",
                                        "default_aggregation": {"formula": "sum"}})
    pro, calls = c.v1.products.create({"name": "Pro"}), c.v1.products.create({"name": "API Calls"})
    base = c.v1.prices.create({"product": pro.id, "currency": "usd", "unit_amount": 2000,
                               "recurring": {"interval": "month"}})
    metered = c.v1.prices.create({"product": calls.id, "currency": "usd", "unit_amount": 10,
                                  "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": frozen_time})
    customer = c.v1.customers.create({"name": "Ada", "test_clock": clock.id})
    return {"meter": meter, "clock": clock, "customer": customer, "base": base, "metered": metered, "product": calls}


def subscribe(c, plan: dict, **extra):
    """Both prices, billed by sent invoice (no payment method needed)."""
    return c.v1.subscriptions.create({"customer": plan["customer"].id, "collection_method": "send_invoice",
                                      "days_until_due": 30, "items": [{"price": plan["base"].id},
                                                                      {"price": plan["metered"].id}], **extra})
