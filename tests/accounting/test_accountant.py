"""Accounting: the key's tokens are counted before the response goes out; the ledger row, the
metrics and the log line's figures after it."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from cascade_gateway import after_response
from cascade_gateway.accounting.accountant import Accountant
from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.auth.keys import ApiKey
from cascade_gateway.budget.budgets import Budgets
from cascade_gateway.cascade.trace import Attempt, Trace
from cascade_gateway.config import BudgetConfig
from cascade_gateway.ratelimit import Draw, RateLimiter, Refusal
from cascade_gateway.storage.database import Database


class CountingWindows:
    """Rate-limit windows that grant everything and keep what was drawn."""

    def __init__(self) -> None:
        self.draws: list[Draw] = []

    async def draw(self, draws: Sequence[Draw], now: float) -> Refusal | None:
        self.draws.extend(draws)
        return None


@pytest.fixture
def windows() -> CountingWindows:
    return CountingWindows()


@pytest.fixture
def ledger(db: Database) -> Ledger:
    return Ledger(db, flush_interval_s=60)


@pytest.fixture
def accountant(ledger: Ledger, windows: CountingWindows) -> Accountant:
    return Accountant(ledger, RateLimiter(windows), Budgets(BudgetConfig(), ledger))


def served(request_id: str, key: ApiKey | None = None) -> Trace:
    draft = Attempt(
        tier=0, model="small", provider="p", upstream_model="d", decision="accepted",
        input_tokens=30, output_tokens=12, cost_usd=0.0001,
    )  # fmt: skip
    return Trace(
        request_id=request_id, route="default", mode="cascade", created_at=time.time(),
        streamed=False, baseline_model="large", attempts=[draft], outcome="accepted",
        model_used="small", key=key,
    )  # fmt: skip


def a_key(tpm: int | None) -> ApiKey:
    return ApiKey(id="k1", name="team", key_prefix="cg-", created_at=0.0, tpm=tpm)


async def test_within_a_request_the_ledger_row_waits_for_the_response(accountant, ledger):
    token = after_response.open_request()

    await accountant.record(served("r1"))
    assert ledger.queued == 0

    assert after_response.run_deferred(token) is None
    assert ledger.queued == 1


async def test_the_keys_tokens_are_counted_before_the_response(accountant, ledger, windows):
    token = after_response.open_request()

    await accountant.record(served("r1", key=a_key(tpm=1000)))

    assert [(d.window, d.take) for d in windows.draws] == [("{k1}:tpm", 42)]
    assert ledger.queued == 0
    assert after_response.run_deferred(token) is None
    assert ledger.queued == 1


async def test_outside_a_request_everything_is_recorded_at_once(accountant, ledger, windows):
    await accountant.record(served("r1", key=a_key(tpm=1000)))

    assert ledger.queued == 1
    assert [d.take for d in windows.draws] == [42]
