"""The stream request's body, written directly (``stream_body``), is the text json.dumps makes
of the parameters: byte for byte, whatever the identifiers, names and values hold."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from usagebill.gateway import meter_sender
from usagebill.gateway.meter_sender import MeterEvent, stream_body, stream_params


def dumped(events):
    return json.dumps(stream_params(events), separators=(",", ":"))


texts = st.text(alphabet=st.characters(codec=None), max_size=20)  # quotes, controls, non-ASCII, astral, surrogates
events = st.builds(MeterEvent, texts, texts, texts,
                   st.one_of(st.integers(min_value=-10**20, max_value=10**20), st.booleans()),
                   st.integers(min_value=0, max_value=4_102_444_800))  # up to 2100


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=5))
def test_the_body_is_json_dumps_of_the_parameters(batch):
    assert stream_body(batch) == dumped(batch)


def test_typical_events_and_an_empty_batch():
    batch = [MeterEvent(f"ube_{i}", "api_calls", "cus_9s6XKzkNRiz8i3", i + 1, 1_700_000_000 + i) for i in range(100)]
    assert stream_body(batch) == dumped(batch)
    assert json.loads(stream_body(batch)) == stream_params(batch)
    assert stream_body([]) == dumped([]) == '{"events":[]}'


def test_a_field_that_is_not_a_string_is_encoded_as_json_dumps_does():
    batch = [MeterEvent("ube_1", "api_calls", None, 3, 1_700_000_000)]
    assert stream_body(batch) == dumped(batch)
    assert '"stripe_customer_id":null' in stream_body(batch)
    from decimal import Decimal

    odd = [MeterEvent("ube_2", "api_calls", "cus_1", Decimal("2.5"), 1_700_000_000.25),
           MeterEvent("ube_3", "api_calls", "cus_1", True, 0), MeterEvent("ube_4", "api_calls", "cus_1", 'a"b', 1)]
    assert stream_body(odd) == dumped(odd)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.integers(min_value=-62_135_596_800, max_value=253_402_300_799),  # years 1 to 9999
                 st.integers(min_value=1_600_000_000, max_value=2_000_000_000)))
def test_timestamps_are_formatted_as_datetime_formats_them(ts):
    assert meter_sender._rfc3339.__wrapped__(ts) == meter_sender._rfc3339_datetime(ts)


def test_a_timestamp_that_is_not_an_int_is_formatted_by_datetime():
    for ts in (1_700_000_000.75, True):
        assert meter_sender._rfc3339.__wrapped__(ts) == meter_sender._rfc3339_datetime(ts)
    assert meter_sender._rfc3339(86_399) == "1970-01-01T23:59:59.000Z"
    assert meter_sender._rfc3339(-1) == "1969-12-31T23:59:59.000Z"
