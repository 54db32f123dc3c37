"""Endpoint modules: importing this package registers their routes."""

from . import customers, meter_events, meters, prices, products, v2_events, v2_metering  # noqa: F401
