"""What the benchmarks share: the plan they bill (three usage features, one of them with
included credits in CONFIG_WITH_CREDITS). Imported by the scripts beside it (``python
bench/NAME.py`` puts this folder on sys.path)."""

FEATURES = ("api_calls", "ai_tokens", "storage_mb")

_PLAN = """
[[plans]]
name = "Bench"
prices = [{ amount = 1000, currency = "usd", interval = "month" }]

[plans.features.api_calls]
display_name = "API Calls"
price_per_credit = 10
track_usage = true
{credits}
[plans.features.ai_tokens]
display_name = "AI Tokens"
price_per_credit = 0.5
track_usage = true

[plans.features.storage_mb]
display_name = "Storage"
price_per_credit = 1
track_usage = true
"""

CONFIG = _PLAN.replace("{credits}\n", "")
CONFIG_WITH_CREDITS = _PLAN.replace("{credits}", 'credits = { allocation = 1000, on_renewal = "reset" }\n')
