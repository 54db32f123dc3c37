"""The conformance suite runs only against a Stripe *test* account: ``STRIPE_API_KEY`` must be
an ``sk_test_`` key (read once, at collection, before the suite's fixtures clear the
environment). Otherwise every ``stripe_test`` test is skipped, with the reason listed."""

from __future__ import annotations

import os

import pytest

KEY = (os.environ.get("STRIPE_API_KEY") or "").strip()
SKIP_REASON = ("stripe conformance: set STRIPE_API_KEY to a Stripe test-mode key (sk_test_...) to compare the "
               "sandbox with your Stripe test account")


def real_key() -> str | None:
    return KEY if KEY.startswith("sk_test_") else None


def pytest_collection_modifyitems(config, items):
    if real_key():
        return
    reason = SKIP_REASON if not KEY.startswith(("sk_live_", "rk_live_")) else \
        "stripe conformance: refusing to run against a live-mode key"
    for item in items:
        if "stripe_test" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
