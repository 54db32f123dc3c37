"""One Stripe to run a conformance scenario on: the sandbox (in process) or a real Stripe test
account. Same SDK calls on both; the differences of a real account are handled here: test
clocks advance asynchronously (wait until ready), meter error reports come minutes later
(wait for them), meter event names are unique per account (a per-run prefix), and what a run
creates is cleaned up (test clocks deleted, which deletes their customers; meters, prices
and products archived, since Stripe cannot delete them once used)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import stripe

WAIT = float(os.environ.get("USAGEBILL_CONFORMANCE_WAIT", "600"))  # seconds to wait for Stripe's async work


@dataclass
class Backend:
    name: str  # "sandbox" | "stripe"
    client: stripe.StripeClient
    prefix: str = field(default_factory=lambda: "uconf_" + secrets.token_hex(4))
    clocks: list[str] = field(default_factory=list)
    meters: list[str] = field(default_factory=list)
    prices: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    poll: float = 2.0
    sandbox: Any = None

    @property
    def real(self) -> bool:
        return self.name == "stripe"

    def event_name(self, key: str) -> str:
        return f"{self.prefix}_{key}"

    # -- creating, so that cleanup knows -------------------------------------------------
    def clock(self, frozen_time: int):
        clock = self.client.v1.test_helpers.test_clocks.create({"frozen_time": frozen_time, "name": self.prefix})
        self.clocks.append(clock.id)
        return clock

    def meter(self, key: str, formula: str = "sum"):
        meter = self.client.v1.billing.meters.create({
            "display_name": key, "event_name": self.event_name(key), "default_aggregation": {"formula": formula}})
        self.meters.append(meter.id)
        return meter

    def product(self, name: str):
        product = self.client.v1.products.create({"name": name})
        self.products.append(product.id)
        return product

    def price(self, **params):
        price = self.client.v1.prices.create(params)
        self.prices.append(price.id)
        return price

    # -- waiting for Stripe's asynchronous work -------------------------------------------
    def wait_for(self, what: str, check: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + WAIT
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {what} did not happen within {WAIT:.0f}s")
            time.sleep(self.poll if self.real else 0)

    def advance(self, clock_id: str, to: int):
        self.client.v1.test_helpers.test_clocks.advance(clock_id, {"frozen_time": to})
        return self.wait_for(f"test clock {clock_id} advancing to {to}", lambda: (
            (c := self.client.v1.test_helpers.test_clocks.retrieve(clock_id)).status == "ready" and c))

    def cleanup(self) -> None:
        c = self.client
        for clock_id in self.clocks:
            _quietly(c.v1.test_helpers.test_clocks.delete, clock_id)
        for meter_id in self.meters:
            _quietly(c.v1.billing.meters.deactivate, meter_id)
        for price_id in self.prices:
            _quietly(c.v1.prices.update, price_id, {"active": False})
        for product_id in self.products:
            _quietly(c.v1.products.update, product_id, {"active": False})


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except stripe.StripeError:
        pass  # already gone (a deleted clock takes its customers)
