"""The outbox on a PostgreSQL ledger: the same claims (``FOR NO KEY UPDATE SKIP LOCKED``),
watermark and counts as on SQLite (four push processes at once on PostgreSQL:
tests/race/test_race_stripe.py). Skipped without psycopg or a PostgreSQL server (the
suite's: tests/conftest.py's pg_url)."""

import pytest

pytest.importorskip("psycopg")
pytestmark = pytest.mark.own_backend  # a PostgreSQL ledger of its own, in the default pass

from usagebill import Billing  # noqa: E402
from usagebill.gateway.client import connect  # noqa: E402
from usagebill.gateway.delivery import delivery_status, push  # noqa: E402
from usagebill.ledger import outbox  # noqa: E402
from usagebill.ledger.events import last_seq  # noqa: E402
from usagebill.sandbox import Sandbox  # noqa: E402

from tests.gateway.metering import customer, ledger_totals, meter_rows, setup_stripe, stripe_totals  # noqa: E402
from tests.gateway.test_outbox_index import consistent  # noqa: E402
from tests.gateway.test_push_workers import record_fast  # noqa: E402


@pytest.fixture
def pg_billing(config_path, pg_url, tmp_path):
    b = Billing.open(config_path, pg_url, sandbox_db=tmp_path / "sandbox.db")
    assert b.ledger.dialect == "postgres"
    yield b
    b.close()


def test_push_status_and_the_watermark_on_postgresql(pg_billing):
    billing = pg_billing
    conn = connect(ledger_path=":memory:", sandbox=Sandbox())
    setup_stripe(billing, conn)
    customer(billing, conn, "alice")
    billing.customers.add("bob")  # not in Stripe: waits
    billing.subscriptions.start("bob", "Pro")
    record_fast(billing, "alice", 450)
    record_fast(billing, "bob", 3)
    r = push(billing, conn)
    assert (r.delivered, r.still_pending) == (450, 3)
    assert outbox.watermark(billing.ledger) == last_seq(billing.ledger) + 1
    assert delivery_status(billing).not_in_stripe == {"bob": 3}
    consistent(billing)
    r = push(billing, conn, coalesce=True)
    assert (r.delivered, r.still_pending) == (0, 3)
    record_fast(billing, "alice", 20)
    r = push(billing, conn, coalesce=True)
    assert (r.delivered, r.batches) == (20, 1)
    assert stripe_totals(meter_rows(conn.sandbox)) == {k: v for k, v in ledger_totals(billing).items() if k[0]}
    consistent(billing)
