from decimal import Decimal

import pytest

from usagebill import Billing
from usagebill.gateway import mapping
from usagebill.gateway.sync import sync


def test_sync_creates_everything_then_a_second_run_writes_nothing(billing, conn, requests_seen):
    first = sync(billing, conn)
    kinds = sorted((a.verb, a.kind) for a in first.actions)
    # 2 meters (api_calls, ai_tokens), 2 usage products + 3 plan products, 4 plan prices, 6 metered prices
    assert kinds.count(("create", "meter")) == 2
    assert kinds.count(("create", "product")) == 5
    assert kinds.count(("create", "price")) == 10
    assert len(requests_seen.writes()) == 17
    requests_seen.reset()
    second = sync(billing, conn)
    assert second.actions == []
    assert requests_seen.writes() == []
    assert all(m == "GET" for m, _ in requests_seen.calls)


def test_stripe_objects_look_right(billing, conn):
    sync(billing, conn)
    c = conn.client.v1
    price = c.prices.retrieve(mapping.get(billing.ledger, "price:usage:pro:api_calls:usd:month"))
    assert price.lookup_key == "usagebill:usage:pro:api_calls:usd:month"
    assert price.recurring.usage_type == "metered" and price.recurring.interval == "month"
    assert Decimal(price.unit_amount_decimal) == 10 and price.currency == "usd"
    assert c.products.retrieve(price.product).name == "API Calls"  # invoice lines read "API Calls"
    meter = c.billing.meters.retrieve(price.recurring.meter)
    assert meter.event_name == "api_calls" and meter.default_aggregation.formula == "sum"
    base = c.prices.retrieve(mapping.get(billing.ledger, "price:plan:pro:usd:month"))
    assert base.unit_amount == 2000 and base.recurring.usage_type == "licensed"
    assert c.products.retrieve(base.product).name == "Pro"
    tokens = c.prices.retrieve(mapping.get(billing.ledger, "price:usage:team:ai_tokens:usd:month"))
    assert Decimal(tokens.unit_amount_decimal) == Decimal("0.5")


def test_dry_run_changes_nothing(billing, conn, requests_seen):
    plan = sync(billing, conn, dry_run=True)
    assert len(plan.actions) == 17 and plan.dry_run
    assert requests_seen.writes() == []
    assert mapping.all_keys(billing.ledger) == {}


def _reopen(billing, config_path, text):
    config_path.write_text(text)
    return Billing(Billing.open(config_path, billing.db_path).config, billing.ledger)


def test_changed_price_transfers_the_lookup_key_and_archives_the_old(billing, conn, config_path):
    sync(billing, conn)
    old_id = mapping.get(billing.ledger, "price:usage:pro:api_calls:usd:month")
    text = config_path.read_text().replace("price_per_credit = 10 ", "price_per_credit = 12 ", 1)
    b2 = _reopen(billing, config_path, text)
    result = sync(b2, conn)
    assert [(a.verb, a.key) for a in result.actions] == [("replace", "price:usage:pro:api_calls:usd:month")]
    new_id = mapping.get(b2.ledger, "price:usage:pro:api_calls:usd:month")
    assert new_id != old_id
    c = conn.client.v1
    assert c.prices.retrieve(old_id).active is False
    new = c.prices.retrieve(new_id)
    assert new.lookup_key == "usagebill:usage:pro:api_calls:usd:month" and Decimal(new.unit_amount_decimal) == 12
    found = c.prices.list(params={"lookup_keys": ["usagebill:usage:pro:api_calls:usd:month"]}).data
    assert [p.id for p in found] == [new_id]
    assert sync(b2, conn).actions == []


def test_removed_plan_is_archived_and_meter_deactivated(billing, conn, config_path):
    sync(billing, conn)
    text = config_path.read_text()
    team = text.index('[[plans]]\nname = "Team"')
    b2 = _reopen(billing, config_path, text[:team])
    result = sync(b2, conn)
    archived = {(a.kind, a.key) for a in result.actions if a.verb == "archive"}
    assert ("product", "product:plan:team") in archived
    assert ("price", "price:plan:team:usd:year") in archived
    assert ("meter", "meter:ai_tokens") in archived
    assert ("product", "product:feature:ai_tokens") in archived
    assert all(a.verb == "archive" for a in result.actions)
    c = conn.client.v1
    assert c.products.retrieve(mapping.get(b2.ledger, "product:plan:pro")).active is True
    meters = {m.event_name: m.status for m in c.billing.meters.list().data}
    assert meters == {"api_calls": "active", "ai_tokens": "inactive"}
    assert sync(b2, conn).actions == []
    # putting the plan back reactivates the meter instead of making a second one
    b3 = _reopen(billing, config_path, text)
    again = sync(b3, conn)
    assert ("reactivate", "meter", "meter:ai_tokens") in {(a.verb, a.kind, a.key) for a in again.actions}
    assert len(c.billing.meters.list().data) == 2


def test_objects_are_found_again_without_the_ledger(billing, conn, tmp_path):
    sync(billing, conn)
    fresh = Billing.open(billing.config.path, tmp_path / "other.db")  # a new ledger, same Stripe
    assert sync(fresh, conn).actions == []
    assert mapping.get(fresh.ledger, "meter:api_calls") == mapping.get(billing.ledger, "meter:api_calls")


def test_foreign_meter_with_our_event_name_is_a_clear_error(billing, conn):
    from usagebill import UsagebillError

    conn.client.v1.billing.meters.create(params={
        "display_name": "Theirs", "event_name": "api_calls", "default_aggregation": {"formula": "count"}})
    with pytest.raises(UsagebillError, match="meter for event 'api_calls'.*cannot use"):
        sync(billing, conn)


def test_pagination_is_followed(billing, conn):
    c = conn.client.v1
    for i in range(120):  # more than a page of someone else's prices
        c.prices.create(params={"currency": "usd", "unit_amount": 100 + i, "product_data": {"name": f"x{i}"}})
    sync(billing, conn)
    assert sync(billing, conn).actions == []


def test_a_ledger_only_subscription_is_linked_when_subscribing_in_stripe(billing, conn):
    from usagebill.gateway.accounts import add_customer, subscribe

    sync(billing, conn)
    billing.customers.add("local")
    billing.subscriptions.start("local", "Pro")  # library use, no Stripe
    add_customer(billing, conn, "local")
    sub = subscribe(billing, conn, "local", "Pro")
    assert sub.stripe_subscription_id and sub.stripe_subscription_id.startswith("sub_")
    assert conn.client.v1.subscriptions.retrieve(sub.stripe_subscription_id).customer == \
        billing.customers.get("local").stripe_customer_id


def _repriced(config, plan_name: str, feature: str, price):
    """The config with one usage feature of one plan at another price (what the property test
    of the lifecycle work does between two advances)."""
    import dataclasses

    plans = []
    for p in config.plans:
        if p.name == plan_name:
            features = dict(p.features)
            features[feature] = dataclasses.replace(features[feature], price_per_credit=Decimal(price))
            p = dataclasses.replace(p, features=features)
        plans.append(p)
    return dataclasses.replace(config, plans=tuple(plans))


def test_library_sync_after_changing_the_config_object_moves_live_subscriptions(billing, conn):
    from usagebill.gateway.accounts import add_customer, subscribe
    from usagebill.gateway.clocks import advance_clock, create_clock
    from usagebill.gateway.delivery import push
    from usagebill.gateway.invoices import list_invoices

    sync(billing, conn)
    clock = create_clock(billing, conn, at=1767225600)  # 2026-01-01
    add_customer(billing, conn, "carol", test_clock=clock.id)
    subscribe(billing, conn, "carol", "Pay As You Go")
    billing.usage.record("carol", "api_calls", 30)
    push(billing, conn)
    advance_clock(billing, conn, clock.id, "+10d")
    billing.config = _repriced(billing.config, "Pay As You Go", "api_calls", "7.5")
    result = sync(billing, conn)
    assert [(a.verb, a.kind, a.key) for a in result.actions] == [
        ("replace", "price", "price:usage:pay_as_you_go:api_calls:usd:month"), ("move", "subscription", "carol")]
    billing.usage.record("carol", "api_calls", 3)
    push(billing, conn)
    summary = billing.usage.get_summary("carol", "api_calls")
    assert (summary.total_amount, summary.estimated_cost, summary.unit_price) == (33, 30 * 5 + 23, Decimal("7.5"))
    advance_clock(billing, conn, clock.id, "2026-02-01T02:00:00Z")
    cycle = [i for i in list_invoices(billing, conn, "carol") if i.billing_reason == "subscription_cycle"]
    assert len(cycle) == 1
    assert sorted((x.quantity, x.unit_amount, x.amount) for x in cycle[0].lines if x.description == "API Calls") == [
        (3, Decimal("7.5"), 23), (30, Decimal("5"), 150)]
    assert cycle[0].total == summary.estimated_cost  # the base price is $0
    assert sync(billing, conn).actions == []


def test_a_sync_cut_short_after_stripe_moved_the_price_is_completed_by_the_next(billing, conn, monkeypatch):
    from usagebill.gateway import live_subscriptions
    from usagebill.gateway.accounts import add_customer, subscribe
    from usagebill.gateway.clocks import create_clock

    sync(billing, conn)
    clock = create_clock(billing, conn, at=1767225600)  # 2026-01-01
    add_customer(billing, conn, "dan", test_clock=clock.id)
    subscribe(billing, conn, "dan", "Pro")
    billing.config = _repriced(billing.config, "Pro", "api_calls", "11")
    with monkeypatch.context() as m:
        m.setattr(live_subscriptions, "apply", lambda *a, **k: None)  # cut short: Stripe's side done by hand below
        sync(billing, conn)
    sub = billing.subscriptions.get("dan")
    remote = conn.client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    item = next(i for i in remote["items"].data if i.price.recurring.usage_type == "metered")
    new_price = mapping.get(billing.ledger, "price:usage:pro:api_calls:usd:month")
    conn.client.v1.subscription_items.update(item.id, params={
        "price": new_price, "metadata": {live_subscriptions.SINCE: "1767230000"}})
    assert billing.usage.get_summary("dan", "api_calls").unit_price == 10  # the ledger does not know yet
    assert sync(billing, conn).actions == []  # Stripe is in line: nothing to change there...
    assert billing.usage.get_summary("dan", "api_calls").unit_price == 11  # ...and the ledger learnt the price
    from usagebill.ledger import subscription_prices

    assert subscription_prices.history(billing.ledger, sub.id)["api_calls"][-1] == (1767230000, Decimal("11"))


def test_a_classic_billing_mode_subscription_is_not_repriced(billing, conn):
    """Stripe's classic billing mode drops the usage before a metered price change: sync says
    so instead of losing it."""
    from usagebill import UsagebillError
    from usagebill.gateway.accounts import add_customer, subscribe

    sync(billing, conn)
    add_customer(billing, conn, "erin")
    sub = subscribe(billing, conn, "erin", "Pro")
    store = conn.sandbox.store
    remote = store.get("subscription", sub.stripe_subscription_id)
    remote["billing_mode"]["type"] = "classic"
    store.put(remote)
    billing.config = _repriced(billing.config, "Pro", "api_calls", "11")
    with pytest.raises(UsagebillError, match="classic billing mode.*migrate it to flexible"):
        sync(billing, conn)
    assert billing.usage.get_summary("erin", "api_calls").unit_price == 10
