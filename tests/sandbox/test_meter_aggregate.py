from usagebill.sandbox.resources.meter_event_log import (
    cancel,
    find_recent,
    insert_events,
    set_visibility_delay,
)
from usagebill.sandbox.resources.meters import aggregate
from usagebill.sandbox.store import Store


def meter(formula):
    return {"event_name": "api_calls", "default_aggregation": {"formula": formula}}


def ev(ident, value, ts, customer="cus_A", name="api_calls"):
    return {"identifier": ident, "event_name": name, "customer": customer, "value": value,
            "timestamp": ts, "payload": {"value": str(value), "stripe_customer_id": customer}}


def test_formulas_window_customer_and_cancel():
    store = Store()
    insert_events(store, [ev("a", 5, 100), ev("b", 7, 150), ev("c", 3, 120), ev("d", 11, 200),
                          ev("e", 100, 110, customer="cus_B"), ev("f", 100, 110, name="other")],
                  received=1000)
    assert aggregate(store, meter("sum"), "cus_A", 100, 200, now=1000) == 15
    assert aggregate(store, meter("count"), "cus_A", 100, 200, now=1000) == 3
    assert aggregate(store, meter("last"), "cus_A", 100, 200, now=1000) == 7  # latest timestamp wins
    assert aggregate(store, meter("sum"), "cus_A", 200, 201, now=1000) == 11  # end is exclusive
    assert aggregate(store, meter("last"), "cus_Z", 0, 10**10, now=1000) == 0
    cancel(store, find_recent(store, "b", now=1000)["seq"], now=1000)
    assert aggregate(store, meter("sum"), "cus_A", 100, 200, now=1000) == 8
    assert aggregate(store, meter("last"), "cus_A", 100, 200, now=1000) == 3


def test_visibility_delay_hides_recent_events():
    store = Store()
    set_visibility_delay(store, 30)
    insert_events(store, [ev("a", 5, 100)], received=1000)
    assert aggregate(store, meter("sum"), "cus_A", 0, 10**10, now=1029) == 0
    assert aggregate(store, meter("sum"), "cus_A", 0, 10**10, now=1030) == 5
