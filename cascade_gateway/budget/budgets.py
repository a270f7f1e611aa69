"""Which budgets a request draws on, and how much of each is left.

A request draws on its key's budget (if the key has one) and on the gateway's global budget (if
configured), each in its current calendar period. Counters live in SQL or, when configured, in
Redis seeded from the ledger.

Each process also keeps its budgets tidy (`tidy`, every few seconds): it retries the
settlements an outage refused, renews the leases of its reservations whose calls are still
running, then releases the reservations, any replica's, whose leases lapsed unsettled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.auth.keys import ApiKey
from cascade_gateway.budget.counters import NANO, Counters, Scope, to_nano
from cascade_gateway.budget.leases import Leases
from cascade_gateway.budget.meter import UNMETERED, BudgetMeter, Meter, Settlement
from cascade_gateway.budget.periods import Period, now_in, period_key, period_reset, period_start
from cascade_gateway.config import BudgetConfig

GLOBAL = "global"
# Redis counters outlive their period by this much, then expire.
_TTL = {"day": 2 * 86400, "month": 40 * 86400, "total": None}

log = logging.getLogger(__name__)


class Budgets:
    """Builds per-request meters and reports budget status."""

    def __init__(
        self,
        config: BudgetConfig,
        ledger: Ledger,
        clock: Callable[[str], datetime] = now_in,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._ledger = ledger
        self._now = clock
        self._wall = wall
        self.leases = Leases(config.reservation_lease_s, wall)
        self.counters: Counters | None = None
        self._unsettled: list[Settlement] = []

    @property
    def tidy_every_s(self) -> float:
        """How often `tidy` should run: often enough that a lease is renewed in time, a lapsed
        one released soon after it lapses, and a refused settlement retried within seconds."""
        return min(5.0, self.config.reservation_lease_s / 4)

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
            leases=self.leases,
            unsettled=self._unsettled.append,
            degrade=policy == "degrade",
            describe=names,
        )

    @property
    def unsettled(self) -> int:
        """Settlements waiting for a retry."""
        return len(self._unsettled)

    async def tidy(self) -> int:
        """Retry the settlements the counters' store refused, in order, renew the leases due,
        then release the reservations whose leases lapsed; how many were released. Raises if
        the store is still down (what was not settled stays queued)."""
        assert self.counters is not None
        while self._unsettled:
            await self._unsettled[0].apply(self.counters)
            log.info("budget settled on a retry", extra={"fields": self._unsettled[0].describe()})
            del self._unsettled[0]
        due, expires_at = self.leases.due()
        if due:
            await self.counters.renew(due, expires_at)
            self.leases.renewed(due, expires_at)
        # Two rounds' grace: after an outage that outlasted leases, every live holder renews
        # its own, and retries its settlements, before any replica releases them.
        released = await self.counters.release_lapsed(self._wall() - 2 * self.tidy_every_s)
        if released:
            log.warning(
                "released budget reservations whose leases lapsed unsettled",
                extra={"fields": {"released": released}},
            )
        return released

    async def keep_tidy(self) -> None:
        """Run `tidy` every `tidy_every_s` until cancelled; a failure (the store down) is
        logged, and the next round tries again."""
        while True:
            await asyncio.sleep(self.tidy_every_s)
            try:
                await self.tidy()
            except Exception as exc:
                log.warning(
                    "budget upkeep failed; it runs again in %.1f s",
                    self.tidy_every_s,
                    extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}},
                )

    async def close(self) -> None:
        """At shutdown: one last try at what is unsettled; what still fails is logged whole."""
        if not self._unsettled:
            return
        try:
            await self.tidy()
        except Exception:
            for settlement in self._unsettled:
                log.error(
                    "budget settlement lost at shutdown: its reservation is released when "
                    "its lease lapses, and its cost is in the ledger only",
                    extra={"fields": settlement.describe()},
                )
            self._unsettled.clear()

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
