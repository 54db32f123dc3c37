import pytest
import stripe

from tests.sandbox.sdk_contract import assert_sdk_shape


def test_contract_catches_missing_fields_nulls_and_wrong_object(stripe_client):
    meter = stripe_client.v1.billing.meters.create(
        {"display_name": "a", "event_name": "e", "default_aggregation": {"formula": "sum"}}).to_dict()
    assert_sdk_shape(meter, stripe.billing.Meter)
    with pytest.raises(AssertionError, match="missing fields \\['value_settings'\\]"):
        assert_sdk_shape({k: v for k, v in meter.items() if k != "value_settings"}, stripe.billing.Meter)
    with pytest.raises(AssertionError, match="non-Optional fields are None: \\['display_name'\\]"):
        assert_sdk_shape({**meter, "display_name": None}, stripe.billing.Meter)
    with pytest.raises(AssertionError, match="object is 'meter'"):
        assert_sdk_shape({**meter, "object": "meter"}, stripe.billing.Meter)
    assert_sdk_shape({**meter, "event_time_window": None}, stripe.billing.Meter)  # Optional may be None
