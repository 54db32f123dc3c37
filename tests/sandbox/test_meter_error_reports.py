"""The v2 meter event stream validates asynchronously, as Stripe documents ("Events are processed
asynchronously, including validation"): a batch with invalid events is accepted, the invalid
ones are dropped and do not count, and each is named in a meter error report, a v2 core event
(``v1.billing.meter.error_report_triggered``, or ``v1.billing.meter.no_meter_found``) listed by
``GET /v2/core/events``. v1 meter events and v2 single events stay refused at once."""

import time

import pytest
import stripe
from sdk_contract import assert_sdk_shape

from usagebill.sandbox.resources import meter_errors

REPORT = "v1.billing.meter.error_report_triggered"
NO_METER = "v1.billing.meter.no_meter_found"


@pytest.fixture
def c(both_transports):
    return both_transports


@pytest.fixture
def meter(c):
    return c.v1.billing.meters.create({"display_name": "API calls", "event_name": "api_calls",
                                       "default_aggregation": {"formula": "sum"}})


def stream(c, events):
    token = c.v2.billing.meter_event_session.create().authentication_token
    return c.v2.billing.meter_event_stream.create({"events": events}, {"api_key": token})


def event(identifier, customer, value="1", name="api_calls", **extra):
    return {"event_name": name, "identifier": identifier, "payload": {"stripe_customer_id": customer, "value": value},
            **extra}


def summary(c, meter, customer):
    now = int(time.time())
    start, end = now - now % 60 - 86400, now - now % 60 + 3600
    return sum(s.aggregated_value for s in c.v1.billing.meters.event_summaries.list(
        meter.id, {"customer": customer, "start_time": start, "end_time": end}).data)


def test_a_batch_with_bad_events_is_accepted_and_the_bad_ones_are_reported(c, meter):
    cus = c.v1.customers.create({"name": "Ada"}).id
    old = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 40 * 86400))
    future = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    stream(c, [
        event("good-1", cus, "5"),
        event("bad-customer", "cus_nobody"),
        event("bad-value", cus, "1.5"),
        event("too-old", cus, timestamp=old),
        event("ahead", cus, timestamp=future),
        {"event_name": "api_calls", "identifier": "no-customer", "payload": {"value": "1"}},
        event("good-2", cus, "2"),
    ])
    assert summary(c, meter, cus) == 7  # only the valid events count
    page = c.v2.core.events.list({"types": [REPORT], "object_id": meter.id})
    (report,) = page.data
    assert isinstance(report, stripe.events.V1BillingMeterErrorReportTriggeredEvent)
    assert (report.type, report.related_object.id, report.related_object.type) == (REPORT, meter.id, "billing.meter")
    reason = report.data.reason
    assert reason.error_count == 5 and report.data.developer_message_summary == "There are 5 invalid events"
    by_code = {t.code: [s.request.identifier for s in t.sample_errors] for t in reason.error_types}
    assert by_code == {
        "meter_event_customer_not_found": ["bad-customer"], "meter_event_invalid_value": ["bad-value"],
        "timestamp_too_far_in_past": ["too-old"], "timestamp_in_future": ["ahead"],
        "meter_event_no_customer_defined": ["no-customer"],
    }
    assert all(t.error_count == len(t.sample_errors) for t in reason.error_types)
    assert c.v2.core.events.retrieve(report.id).id == report.id


def test_events_for_no_meter_or_an_inactive_one(c, meter):
    cus = c.v1.customers.create({}).id
    old = c.v1.billing.meters.create({"display_name": "old", "event_name": "old_calls",
                                      "default_aggregation": {"formula": "sum"}})
    c.v1.billing.meters.deactivate(old.id)
    stream(c, [event("nowhere", cus, name="no_such_meter"), event("archived", cus, name="old_calls")])
    (lost,) = c.v2.core.events.list({"types": [NO_METER]}).data
    assert [(t.code, [s.request.identifier for s in t.sample_errors]) for t in lost.data.reason.error_types] == [
        ("no_meter", ["nowhere"])]
    (archived,) = c.v2.core.events.list({"object_id": old.id}).data
    assert archived.data.reason.error_types[0].code == "archived_meter"


def test_sync_endpoints_still_refuse_at_once(c, meter):
    with pytest.raises(stripe.InvalidRequestError) as e:
        c.v1.billing.meter_events.create({"event_name": "api_calls", "payload": {"stripe_customer_id": "cus_no",
                                                                                 "value": "1"}})
    assert (e.value.http_status, e.value.code, e.value.param) == (400, "resource_missing", "payload[stripe_customer_id]")
    with pytest.raises(stripe.InvalidRequestError):
        c.v2.billing.meter_events.create({"event_name": "api_calls", "payload": {"stripe_customer_id": "cus_no",
                                                                                 "value": "1"}})
    assert c.v2.core.events.list().data == []


def test_event_list_filters_pages_and_shape(c, meter):
    for i in range(3):
        stream(c, [event(f"bad-{i}", "cus_nobody")])
    first = c.v2.core.events.list({"limit": 2})
    assert len(first.data) == 2 and first.next_page_url
    every = list(c.v2.core.events.list({"limit": 2}).auto_paging_iter())
    assert [e.data.reason.error_types[0].sample_errors[0].request.identifier for e in every] == ["bad-2", "bad-1",
                                                                                                "bad-0"]
    newest = every[0].created
    assert [e.id for e in c.v2.core.events.list({"created": {"gte": newest}}).data][0] == every[0].id
    assert c.v2.core.events.list({"created": {"gt": "2999-01-01T00:00:00.000Z"}}).data == []
    assert c.v2.core.events.list({"types": [NO_METER]}).data == []
    raw = every[0].to_dict()
    assert {"id", "object", "context", "created", "data", "livemode", "reason", "related_object", "type"} == set(raw)
    assert_sdk_shape(raw["data"], stripe.events.V1BillingMeterErrorReportTriggeredEvent.
                     V1BillingMeterErrorReportTriggeredEventData, inner=True)
    with pytest.raises(stripe.InvalidRequestError):
        c.v2.core.events.retrieve("evt_test_nope")



def test_next_page_url_followed_as_it_is_keeps_the_list_s_filters(c, meter):
    """A client that follows next_page_url without sending the parameters again (not the
    SDK, which sends them merged) gets the rest of the same list."""
    import json

    for i in range(3):
        stream(c, [event(f"bad-{i}", "cus_nobody")])
    newest = c.v2.core.events.list({"limit": 1}).data[0].created
    body = json.loads(c.raw_request("get", "/v2/core/events", types=[REPORT, NO_METER], limit=1).body)
    seen = []
    while True:
        seen += [e["data"]["reason"]["error_types"][0]["sample_errors"][0]["request"]["identifier"] for e in body["data"]]
        if not body["next_page_url"]:
            break
        assert body["next_page_url"].startswith("/v2/core/events?page=")
        body = json.loads(c.raw_request("get", body["next_page_url"]).body)
    assert seen == ["bad-2", "bad-1", "bad-0"]
    only_no_meter = json.loads(c.raw_request("get", "/v2/core/events", types=[NO_METER], limit=1).body)
    assert only_no_meter == {"data": [], "next_page_url": None, "previous_page_url": None}
    recent = json.loads(c.raw_request("get", "/v2/core/events", created={"gte": newest}, limit=1).body)
    assert recent["next_page_url"] is None or json.loads(
        c.raw_request("get", recent["next_page_url"]).body)["data"][0]["created"] >= newest
    with pytest.raises(stripe.InvalidRequestError, match="Invalid page token"):
        c.raw_request("get", "/v2/core/events?page=not-a-token")
    import base64

    for forged in ({"offset": 0, "limit": "x"}, {"offset": 0, "types": 5}, {"offset": -1}, {"offset": 0, "x": 1}):
        token = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        with pytest.raises(stripe.InvalidRequestError, match="Invalid page token"):  # a 400, not a 500
            c.raw_request("get", f"/v2/core/events?page={token}")

def test_reports_sample_at_most_so_many_errors(stripe_client, monkeypatch):
    c = stripe_client
    c.v1.billing.meters.create({"display_name": "a", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}})
    monkeypatch.setattr(meter_errors, "MAX_SAMPLES", 2)
    stream(c, [event(f"bad-{i}", "cus_nobody") for i in range(5)])
    (t,) = c.v2.core.events.list().data[0].data.reason.error_types
    assert (t.error_count, len(t.sample_errors)) == (5, 2)
