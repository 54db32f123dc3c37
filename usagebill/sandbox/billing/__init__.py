"""Billing engine: test clocks, subscriptions, invoices. Importing this package registers their routes."""

from . import engine, invoice_items, invoices, subscriptions, test_clocks  # noqa: F401  (route registration)
