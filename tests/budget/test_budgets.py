"""Reservations against budgets: exact limits, settlement, rollover, degrade policy."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cascade_gateway.budget import meter as meter_module
from cascade_gateway.budget.budgets import Budgets
from cascade_gateway.budget.counters import Scope, SqlCounters, to_nano
from cascade_gateway.budget.meter import UNMETERED
from cascade_gateway.config import BudgetConfig, ResolvedModel
from cascade_gateway.domain import ChatRequest
from cascade_gateway.errors import BudgetExceeded
from cascade_gateway.pricing import Price

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


async def test_reservations_stop_exactly_at_the_limit(db):
    counters = SqlCounters(db)
    scope = Scope("key:a", "total", limit_nano=10)

    results = [await counters.reserve([scope], 3) for _ in range(4)]

    assert results[:3] == [None, None, None]
    assert results[3] == scope
    assert await counters.usage("key:a", "total") == (0, 9)


async def test_concurrent_reservations_never_overcommit(db):
    counters = SqlCounters(db)
    scope = Scope("key:b", "total", limit_nano=100)

    results = await asyncio.gather(*(counters.reserve([scope], 7) for _ in range(50)))

    assert results.count(None) == 14  # 14 * 7 = 98 <= 100 < 105
    assert await counters.usage("key:b", "total") == (0, 98)


async def test_settling_replaces_the_reservation_with_the_real_cost(db):
    counters = SqlCounters(db)
    scope = Scope("key:c", "total", limit_nano=100)
    await counters.reserve([scope], 60)

    await counters.settle([scope], reserved=60, actual=25)

    assert await counters.usage("key:c", "total") == (25, 0)
    assert await counters.reserve([scope], 75) is None


async def test_a_refusal_on_one_scope_reserves_nothing_on_the_other(db):
    counters = SqlCounters(db)
    roomy, tight = Scope("key:d", "total", 1000), Scope("global", "total", 5)

    assert await counters.reserve([roomy, tight], 10) == tight

    assert await counters.usage("key:d", "total") == (0, 0)


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
