import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sandbox.raw import form
from usagebill.sandbox.errors import StripeError
from usagebill.sandbox.formencode import decode
from usagebill.sandbox.validation import schema, validate


def test_decode_nested_indexed_and_appended_arrays():
    assert decode("a[b][c]=1&x[0]=q&x[1]=r&expand[]=data.customer&expand[]=y&metadata[k]=") == {
        "a": {"b": {"c": "1"}},
        "x": ["q", "r"],
        "expand": ["data.customer", "y"],
        "metadata": {"k": ""},
    }
    assert decode("events[1][value]=b&events[0][value]=a") == {"events": [{"value": "a"}, {"value": "b"}]}


def test_decode_refuses_malformed_keys():
    with pytest.raises(StripeError) as e:
        decode("a]b=1")
    assert e.value.status == 400


_keys = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
_leaf = st.text(alphabet="abcXYZ 019-_.:/@+&=%", max_size=10)
_values = st.recursive(
    _leaf,
    lambda inner: st.dictionaries(_keys, inner, min_size=1, max_size=3) | st.lists(inner, min_size=1, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(_keys, _values, min_size=1, max_size=4))
def test_decode_inverts_the_sdk_encoder(params):
    assert decode(form(params)) == params


def test_validation_coerces_form_strings_by_declared_type():
    p = decode("currency=usd&unit_amount=10&active=false&unit_amount_decimal=1.5&recurring[interval]=month"
               "&recurring[interval_count]=3&metadata[a]=b")
    assert validate("PriceCreateParams", p, form=True) == {
        "currency": "usd", "unit_amount": 10, "active": False, "unit_amount_decimal": "1.5",
        "recurring": {"interval": "month", "interval_count": 3}, "metadata": {"a": "b"},
    }


@pytest.mark.parametrize("query, code, param, message", [
    ("currency=usd&foo=1", "parameter_unknown", "foo", "Received unknown parameter: foo"),
    ("currency=usd&recurring[interval]=month&recurring[bogus]=1", "parameter_unknown", "recurring[bogus]",
     "Received unknown parameter: recurring[bogus]"),
    ("unit_amount=1", "parameter_missing", "currency", "Missing required param: currency."),
    ("currency=usd&recurring[usage_type]=metered", "parameter_missing", "recurring[interval]",
     "Missing required param: recurring[interval]."),
    ("currency=usd&recurring[interval]=fortnight", None, "recurring[interval]",
     "Invalid recurring[interval]: must be one of day, month, week, or year"),
    ("currency=usd&unit_amount=1.5", "parameter_invalid_integer", "unit_amount", "Invalid integer: 1.5"),
    ("currency=usd&active=yes", None, "active", "Invalid boolean: yes"),
    ("currency=usd&unit_amount_decimal=abc", None, "unit_amount_decimal", "Invalid decimal: abc"),
    ("currency=", "parameter_invalid_empty", "currency", "You passed an empty string for 'currency'."),
])
def test_validation_errors_name_the_parameter(query, code, param, message):
    with pytest.raises(StripeError) as e:
        validate("PriceCreateParams", decode(query), form=True)
    err = e.value.body()["error"]
    assert (e.value.status, err.get("code"), err["param"]) == (400, code, param)
    assert err["message"].startswith(message)


def test_metadata_empty_string_is_allowed_where_the_sdk_says_so():
    assert validate("PriceUpdateParams", decode("metadata="), form=True) == {"metadata": ""}
    assert validate("PriceUpdateParams", decode("metadata[x]="), form=True) == {"metadata": {"x": ""}}


def test_request_options_are_not_parameters_and_expand_is_everywhere():
    s = schema("CustomerCreateParams")
    assert "api_key" not in s.fields and "idempotency_key" not in s.fields
    assert "expand" in schema("v2.billing.MeterEventSessionCreateParams").fields


def test_schemas_are_compiled_once():
    assert schema("PriceCreateParams") is schema("PriceCreateParams")
