"""Whose time is it? A customer attached to a test clock lives in the clock's frozen time;
everyone else in the sandbox's real time."""

from __future__ import annotations

from .store import Store


def clock_now(store: Store, clock_id: str | None, real_now: int) -> int:
    if not clock_id:
        return real_now
    clock = store.get("test_helpers.test_clock", clock_id)
    return real_now if clock is None else int(clock["frozen_time"])


def customer_now(store: Store, customer_id: str | None, real_now: int) -> int:
    if not customer_id:
        return real_now
    customer = store.get("customer", customer_id)
    return clock_now(store, customer and customer.get("test_clock"), real_now)
