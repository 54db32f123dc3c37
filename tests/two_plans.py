"""Two plans with the same feature key and different prices, allocations, renewals and auto
top-ups (A: reset, B: add), and a plan in another currency: what issue 9's bugs needed."""

CONFIG = """
[[plans]]
name = "A"
prices = [{ amount = 1000, currency = "usd", interval = "month" }]
wallet = { allocation = 500, on_renewal = "reset" }

[plans.features.exports]
price_per_credit = 1
credits = { allocation = 5, on_renewal = "reset" }
auto_top_up = { threshold = 1, amount = 10 }

[[plans]]
name = "B"
prices = [{ amount = 2000, currency = "usd", interval = "month" }]
wallet = { allocation = 1000, on_renewal = "add" }

[plans.features.exports]
price_per_credit = 40
credits = { allocation = 20, on_renewal = "add" }
auto_top_up = { threshold = 2, amount = 3 }

[plans.features.api_calls]
price_per_credit = 0.4
track_usage = true

[plans.features.ai_tokens]
price_per_credit = 0.5
track_usage = true

[[plans]]
name = "Euro"
prices = [{ amount = 1000, currency = "eur", interval = "month" }]
"""
