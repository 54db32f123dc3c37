"""The normaliser that makes two Stripes' outcomes comparable."""

from tests.stripe_conformance.normalise import Normaliser

T0 = 1_764_547_200


def test_ids_by_first_appearance_times_as_offsets_and_run_prefixes_dropped():
    n = Normaliser(T0)
    a = n({"customer": "cus_Qa1b2c3d4e5f6g", "invoice": "in_1PgAbcdefGhijk", "again": "cus_Qa1b2c3d4e5f6g",
           "other": "cus_Zz9y8x7w6v5u", "line": "il_tmp_1Pgc6sB7WZ01zg", "meter": "mtr_test_61RCjiqdTDC91zgip",
           "at": T0 + 3600, "created": "2025-12-01T01:00:00.000Z", "quantity": 150,
           "identifier": "uconf_0a1b2c3d_bad", "text": "No such customer: 'cus_Zz9y8x7w6v5u'"})
    assert a == {"customer": "<cus:1>", "invoice": "<in:1>", "again": "<cus:1>", "other": "<cus:2>",
                 "line": "<il:1>", "meter": "<mtr:1>", "at": "T+3600", "created": "T+3600", "quantity": 150,
                 "identifier": "bad", "text": "No such customer: '<cus:2>'"}
    # two runs with different ids and the same shape normalise to the same outcome
    b = Normaliser(T0)({"customer": "cus_Other123456", "at": T0 - 60, "ok": True, "none": None})
    assert b == {"customer": "<cus:1>", "at": "T-60", "ok": True, "none": None}
