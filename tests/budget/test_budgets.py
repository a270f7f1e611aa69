"""Reservations against budgets: exact limits, settlement, rollover, degrade policy."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cascade_gateway.budget import meter as meter_module
from cascade_gateway.budget.budgets import Budgets
from cascade_gateway.budget.counters import SqlCounters, to_nano
from cascade_gateway.budget.meter import UNMETERED
from cascade_gateway.config import BudgetConfig, ResolvedModel
from cascade_gateway.domain import ChatRequest
from cascade_gateway.errors import BudgetExceeded
from cascade_gateway.pricing import Price
from tests.budget.conftest import Wall

MODEL = ResolvedModel(
    alias="large",
    provider="p",
    provider_kind="openai",
    upstream_model="strong-model",
    price=Price(input_per_mtok=2.5, output_per_mtok=10.0),
    logprobs=False,
)
ASK = ChatRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=100)


class Clock:
    def __init__(self, when: datetime) -> None:
        self.when = when

    def __call__(self, timezone: str) -> datetime:
        return self.when.astimezone(ZoneInfo(timezone))


def test_dollars_round_up_to_whole_nanodollars():
    assert to_nano(0.05) == 50_000_000
    assert to_nano(1.5e-10) == 1
    assert to_nano(0.0) == 0


async def test_a_key_without_a_budget_is_unmetered(keys, ledger):
    key, _ = await keys.create("free")
    budgets = Budgets(BudgetConfig(), ledger)

    assert budgets.meter(key, None) is UNMETERED


async def test_the_meter_caps_max_tokens_it_reserved_for(keys, ledger, db):
    key, _ = await keys.create("capped", budget_usd=1.0)
    budgets = Budgets(BudgetConfig(default_max_output_tokens=321), ledger)
    budgets.counters = SqlCounters(db)

    hold = await budgets.meter(key, None).reserve(MODEL, ChatRequest(messages=ASK.messages))

    assert hold.request.max_tokens == 321


async def test_a_spent_day_budget_is_refused_until_the_next_day(keys, ledger, db):
    key, _ = await keys.create("daily", budget_usd=0.002, budget_period="day")
    clock = Clock(datetime(2026, 11, 23, 23, 59, tzinfo=ZoneInfo("UTC")))
    budgets = Budgets(BudgetConfig(), ledger, clock=clock)
    budgets.counters = SqlCounters(db)
    meter = budgets.meter(key, None)
    hold = await meter.reserve(MODEL, ASK)
    await meter.settle(hold, 0.0019)

    with pytest.raises(BudgetExceeded):
        await budgets.meter(key, None).reserve(MODEL, ASK)
    clock.when = datetime(2026, 11, 24, 0, 1, tzinfo=ZoneInfo("UTC"))

    assert (await budgets.meter(key, None).reserve(MODEL, ASK)).amount_nano > 0
    assert (await budgets.status(key))["period_key"] == "2026-11-24"


async def test_the_global_budget_caps_every_key(keys, ledger, db):
    key, _ = await keys.create("rich", budget_usd=100.0)
    budgets = Budgets(BudgetConfig(global_usd=0.0001), ledger)
    budgets.counters = SqlCounters(db)

    with pytest.raises(BudgetExceeded) as caught:
        await budgets.meter(key, None).reserve(MODEL, ASK)

    assert "global" in caught.value.message


async def test_policy_comes_from_the_key_then_the_cascade_then_the_default(keys, ledger, db):
    budgets = Budgets(BudgetConfig(on_budget_pressure="reject"), ledger)
    budgets.counters = SqlCounters(db)
    plain, _ = await keys.create("plain", budget_usd=1.0)
    picky, _ = await keys.create("picky", budget_usd=1.0, on_budget_pressure="reject")

    assert budgets.meter(plain, None).degrade is False
    assert budgets.meter(plain, "degrade").degrade is True
    assert budgets.meter(picky, "degrade").degrade is False


async def test_a_cascade_counts_its_prompt_once_for_all_its_tiers(keys, ledger, db, monkeypatch):
    key, _ = await keys.create("cascading", budget_usd=1.0)
    budgets = Budgets(BudgetConfig(), ledger)
    budgets.counters = SqlCounters(db)
    counted: list[int] = []
    count = meter_module.tokens.count_messages

    def counting(messages, tools=None):
        counted.append(1)
        return count(messages, tools)

    monkeypatch.setattr(meter_module.tokens, "count_messages", counting)
    meter = budgets.meter(key, None)
    draft = ChatRequest(messages=ASK.messages, max_tokens=50)

    await meter.reserve(MODEL, draft)
    await meter.reserve(MODEL, draft.with_logprobs())  # the next tier's request

    assert len(counted) == 1


class FlakyStore(SqlCounters):
    """Counters whose store refuses settlements while `down`, as during an outage, or applies
    them but loses its answer while `deaf`, as a connection lost while committing."""

    down = False
    deaf = False

    async def settle(self, scopes, lease, reserved, actual):
        if self.down:
            raise ConnectionError("the store is down")
        await super().settle(scopes, lease, reserved, actual)
        if self.deaf:
            raise ConnectionError("connection lost while committing")


async def settled_while(keys, ledger, db, name: str, fault: str) -> tuple:
    """A key's call reserved, then settled at $0.0005 while the store is `fault`: "down" or
    "deaf" (which does not raise: the answer still goes out); the store stays so. Returns
    (budgets, store, key, hold)."""
    key, _ = await keys.create(name, budget_usd=1.0)
    budgets = Budgets(BudgetConfig(), ledger)
    budgets.counters = store = FlakyStore(db)
    meter = budgets.meter(key, None)
    hold = await meter.reserve(MODEL, ASK)
    setattr(store, fault, True)
    await meter.settle(hold, 0.0005)
    return budgets, store, key, hold


async def test_a_settlement_refused_by_an_outage_lands_on_a_later_tidy(keys, ledger, db):
    budgets, store, key, hold = await settled_while(keys, ledger, db, "patient", "down")

    with pytest.raises(ConnectionError):
        await budgets.tidy()
    held = await budgets.status(key)
    store.down = False
    await budgets.tidy()

    assert held["reserved_usd"] == pytest.approx(hold.amount_nano / 1e9)
    assert budgets.unsettled == 0
    settled = await budgets.status(key)
    assert (settled["spend_usd"], settled["reserved_usd"]) == (pytest.approx(0.0005), 0)


async def test_a_settlement_whose_answer_was_lost_is_charged_once_by_its_retry(keys, ledger, db):
    budgets, store, key, _ = await settled_while(keys, ledger, db, "unanswered", "deaf")
    store.deaf = False

    await budgets.tidy()

    assert budgets.unsettled == 0
    settled = await budgets.status(key)
    assert (settled["spend_usd"], settled["reserved_usd"]) == (pytest.approx(0.0005), 0)


def replica(ledger, db, wall: Wall) -> Budgets:
    """One gateway process's budgets, on the shared database, with one-minute leases."""
    budgets = Budgets(BudgetConfig(reservation_lease_s=60), ledger, wall=wall)
    budgets.counters = SqlCounters(db)
    return budgets


async def test_tidy_renews_the_lease_of_a_call_still_running(keys, ledger, db):
    key, _ = await keys.create("slow", budget_usd=1.0)
    wall = Wall()
    holder, other = replica(ledger, db, wall), replica(ledger, db, wall)
    hold = await holder.meter(key, None).reserve(MODEL, ASK)

    for _ in range(6):  # three minutes of a call, tidied every 30 s by both replicas
        wall.now += 30
        await holder.tidy()
        assert await other.tidy() == 0

    assert (await holder.status(key))["reserved_usd"] == pytest.approx(hold.amount_nano / 1e9)


async def test_a_settled_reservation_is_no_longer_renewed(keys, ledger, db):
    key, _ = await keys.create("done", budget_usd=1.0)
    holder = replica(ledger, db, Wall())
    meter = holder.meter(key, None)
    hold = await meter.reserve(MODEL, ASK)

    await meter.settle(hold, 0.0005)

    assert holder.leases.held == 0


async def test_another_replica_releases_a_reservation_whose_holder_died(keys, ledger, db):
    key, _ = await keys.create("orphaned", budget_usd=1.0)
    wall = Wall()
    holder, other = replica(ledger, db, wall), replica(ledger, db, wall)
    await holder.meter(key, None).reserve(MODEL, ASK)  # then the holder dies: no more tidying
    wall.now += 60 + 2 * other.tidy_every_s + 1  # the lease, and two rounds' grace

    assert await other.tidy() == 1

    assert (await other.status(key))["reserved_usd"] == 0


async def test_a_lease_lapsed_in_an_outage_is_renewed_by_its_live_holder_first(keys, ledger, db):
    key, _ = await keys.create("outlasted", budget_usd=1.0)
    wall = Wall()
    holder, other = replica(ledger, db, wall), replica(ledger, db, wall)
    hold = await holder.meter(key, None).reserve(MODEL, ASK)
    wall.now += 65  # nobody could renew or release for 65 s; the store is back now

    released = [await other.tidy()]  # the other replica's round comes first
    await holder.tidy()
    wall.now += 10
    released.append(await other.tidy())

    assert released == [0, 0]
    assert (await holder.status(key))["reserved_usd"] == pytest.approx(hold.amount_nano / 1e9)


async def test_a_settlement_still_refused_at_shutdown_is_logged_whole(keys, ledger, db, caplog):
    budgets, _, _, hold = await settled_while(keys, ledger, db, "unlucky", "down")

    await budgets.close()

    (lost,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert lost.fields["actual_nano"] == 500_000
    assert lost.fields["reserved_nano"] == hold.amount_nano
    assert budgets.unsettled == 0
