"""The privileges the README says a PostgreSQL ledger needs: CONNECT and TEMPORARY on the
database (import's staging table; PostgreSQL grants both to every role by default, revoked
here to be sure nothing else is needed) and CREATE on its schema to migrate; with a schema
migrated beforehand, SELECT / INSERT / UPDATE / DELETE on its tables. The schema is chosen
through the URL (``options=-csearch_path=...``)."""

import csv

import pytest

from tests import pgserver
from tests.conftest import pg_backend_present
from usagebill import Billing

pytestmark = pytest.mark.own_backend


@pytest.fixture
def roles(pg_server_url, request):
    """Two roles of this test's own (roles belong to the whole server)."""
    if not pg_backend_present():
        pytest.skip("the PostgreSQL backend (usagebill/ledger/postgres.py) is not in this checkout")
    pg_url = request.getfixturevalue("pg_url")
    base = pgserver.database_of(pg_url)
    names = {"migrator": f"{base[:50]}_mig", "app": f"{base[:50]}_app"}
    try:
        for name in names.values():
            pgserver.execute(pg_server_url, f'CREATE ROLE "{name}" LOGIN')
    except Exception as e:  # a USAGEBILL_TEST_PG_URL user that may not create roles
        pytest.skip(f"cannot create roles on this server: {e}")
    db = pgserver.database_of(pg_url)
    for stmt in (f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC',
                 f'GRANT CONNECT, TEMPORARY ON DATABASE "{db}" TO "{names["migrator"]}", "{names["app"]}"',
                 "CREATE SCHEMA billing",
                 f'GRANT USAGE, CREATE ON SCHEMA billing TO "{names["migrator"]}"',
                 f'GRANT USAGE ON SCHEMA billing TO "{names["app"]}"'):
        pgserver.execute(pg_url, stmt)
    yield names
    pgserver.drop_database(pg_server_url, pg_url)
    for name in names.values():
        pgserver.execute(pg_server_url, f'DROP ROLE IF EXISTS "{name}"')


def as_role(pg_url: str, role: str) -> str:
    return pg_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1) + "?options=-csearch_path%3Dbilling"


def use_it(b: Billing, user: str, tmp_path) -> None:
    """What an app does with its ledger: customers, credits, the wallet, usage, an import."""
    b.customers.add(user)
    b.subscriptions.start(user, "Pro", "month", anchor=b.now() - 86400)
    assert b.credits.consume(user, "api_calls", 3).success
    b.credits.grant(user, "api_calls", 5, idempotency_key="g1")
    b.wallet.top_up(user, 100, "usd")
    b.usage.record(user, "api_calls", 2, push=False)
    b.charge(user, "api_calls", 4, push=False)
    path = tmp_path / f"{user}.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["user_id", "key", "amount", "id"], [user, "api_calls", 1, "row-1"]])
    r = b.usage.import_rows(str(path), push=False)
    assert (r.imported, r.rejected) == (1, 0), r.errors


def test_connect_and_create_on_the_schema_migrate_then_dml_privileges_are_enough(roles, pg_url, config_path,
                                                                                  tmp_path):
    with Billing.open(config_path, as_role(pg_url, roles["migrator"])) as b:
        use_it(b, "by_migrator", tmp_path)
    tables = pgserver.execute(pg_url, "SELECT table_schema, COUNT(*) FROM information_schema.tables "
                                      "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') GROUP BY 1")
    assert len(tables) == 1 and tables[0][0] == "billing", tables  # all in the URL's schema
    app = roles["app"]
    pgserver.execute(pg_url, f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA billing TO "{app}"')
    with Billing.open(config_path, as_role(pg_url, app)) as b:
        use_it(b, "by_app", tmp_path)
        assert sorted(c.user_id for c in b.customers.list()) == ["by_app", "by_migrator"]


def test_without_create_on_the_schema_a_new_ledger_cannot_be_made(roles, pg_url, config_path):
    from usagebill import LedgerError

    with pytest.raises(LedgerError, match="permission denied"):
        Billing.open(config_path, as_role(pg_url, roles["app"]))
