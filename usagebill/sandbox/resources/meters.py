"""Billing meters: /v1/billing/meters and their event summaries.

``aggregate`` is the billing engine's entry point for metered usage."""

from __future__ import annotations

from .meter_event_log import aggregate

__all__ = ["aggregate"]
