"""Which budgets a request draws on, and how much of each is left.

A request draws on its key's budget (if the key has one) and on the gateway's global budget (if
configured), each in its current calendar period. Counters live in SQL or, when configured, in
Redis seeded from the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.auth.keys import ApiKey
from cascade_gateway.budget.counters import NANO, Counters, Scope, to_nano
from cascade_gateway.budget.meter import UNMETERED, BudgetMeter, Meter
from cascade_gateway.budget.periods import Period, now_in, period_key, period_reset, period_start
from cascade_gateway.config import BudgetConfig

GLOBAL = "global"
# Redis counters outlive their period by this much, then expire.
_TTL = {"day": 2 * 86400, "month": 40 * 86400, "total": None}


class Budgets:
    """Builds per-request meters and reports budget status."""

    def __init__(
        self,
        config: BudgetConfig,
        ledger: Ledger,
        clock: Callable[[str], datetime] = now_in,
    ) -> None:
        self.config = config
        self._ledger = ledger
        self._now = clock
        self.counters: Counters | None = None

    def _scope(self, name: str, period: Period, limit_usd: float) -> Scope:
        now = self._now(self.config.timezone)
        start = period_start(period, now)
        return Scope(
            name,
            period_key(period, now),
            to_nano(limit_usd),
            ttl_s=_TTL[period],
            since=start.timestamp() if start else None,
        )

    def scopes(self, key: ApiKey | None) -> list[Scope]:
        scopes = []
        if key is not None and key.budget_usd is not None:
            scopes.append(self._scope(f"key:{key.id}", key.budget_period, key.budget_usd))
        if self.config.global_usd is not None:
            scopes.append(self._scope(GLOBAL, self.config.global_period, self.config.global_usd))
        return scopes

    def meter(self, key: ApiKey | None, cascade_policy: str | None) -> Meter:
        """The meter for one request of `key` on a route whose policy is `cascade_policy`."""
        scopes = self.scopes(key)
        if not scopes:
            return UNMETERED
        assert self.counters is not None
        policy = (key and key.on_budget_pressure) or cascade_policy
        policy = policy or self.config.on_budget_pressure
        names = {GLOBAL: "the gateway's global budget"}
        if key is not None:
            names[f"key:{key.id}"] = f"key '{key.name}'"
        return BudgetMeter(
            self.counters,
            scopes,
            default_max_tokens=self.config.default_max_output_tokens,
            degrade=policy == "degrade",
            describe=names,
        )

    async def status(self, key: ApiKey) -> dict[str, Any]:
        """Spend in the current period, what is left and when the period resets."""
        assert self.counters is not None
        scope = self._scope(f"key:{key.id}", key.budget_period, key.budget_usd or 0.0)
        spent, reserved = await self.counters.usage(scope.name, scope.period)
        if spent == 0 and reserved == 0:
            # Counters may start empty (a fresh Redis, say): the ledger knows the truth.
            spent = await self.spent_nano(scope)
        reset = period_reset(key.budget_period, self._now(self.config.timezone))
        return {
            "period": key.budget_period,
            "period_key": scope.period,
            "spend_usd": spent / NANO,
            "reserved_usd": reserved / NANO,
            "budget_usd": key.budget_usd,
            "remaining_usd": None
            if key.budget_usd is None
            else max(0.0, key.budget_usd - (spent + reserved) / NANO),
            "resets_at": reset.isoformat() if reset else None,
        }

    async def spent_nano(self, scope: Scope) -> int:
        """What the ledger holds against a scope in its period (seeds Redis counters)."""
        key_id = None if scope.name == GLOBAL else scope.name.removeprefix("key:")
        return await self._ledger.spent_nano(key_id, scope.since)
