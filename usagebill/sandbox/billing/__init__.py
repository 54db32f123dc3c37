"""Billing engine: test clocks, subscriptions, invoices. Importing this package registers their routes."""
