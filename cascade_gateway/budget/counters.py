"""Budget counters: reserve before an upstream call, settle after — atomically, across replicas.

Amounts are integers in nanodollars (1e-9 USD) so sums are exact. A reservation succeeds only
if, for every scope it touches (the key, the whole gateway), `spent + reserved + amount <= limit`
holds *at that instant*; the check and the increment are one atomic step (a conditional UPDATE
in SQL, a Lua script in Redis), which is what makes the budget exact under concurrency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cascade_gateway.storage.database import Connection, Database

NANO = 1_000_000_000


def to_nano(usd: float) -> int:
    """Dollars to nanodollars, rounded up (a reservation or charge is never under-counted)."""
    return math.ceil(usd * NANO - 1e-6)


@dataclass(frozen=True, slots=True)
class Scope:
    """One budget a call draws on: `name` is `key:<id>` or `global`, `period` e.g. `2026-11`."""

    name: str
    period: str
    limit_nano: int
    # Seconds the counter must outlive its period by (Redis expiry); None: forever.
    ttl_s: int | None = None
    # When the period began (unix time; None: a total budget), to re-count it from the ledger.
    since: float | None = None


class Counters(Protocol):
    async def reserve(self, scopes: Sequence[Scope], amount: int) -> Scope | None:
        """Reserve `amount` on every scope, or on none; the scope that refused, else None."""
        ...

    async def settle(self, scopes: Sequence[Scope], reserved: int, actual: int) -> None:
        """Turn a reservation into a charge of `actual` (0 releases it)."""
        ...

    async def usage(self, name: str, period: str) -> tuple[int, int]:
        """(spent, reserved) of a scope in a period."""
        ...


class _Refused(Exception):
    def __init__(self, scope: Scope) -> None:
        self.scope = scope


class SqlCounters:
    """Counters in the gateway's database: exact across every process sharing it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, scopes: Sequence[Scope], amount: int) -> Scope | None:
        try:
            async with self._db.transaction() as conn:
                for scope in scopes:
                    await _ensure_row(conn, scope)
                    changed = await conn.execute(
                        "UPDATE budget_counters SET reserved_nano = reserved_nano + :amount "
                        "WHERE scope = :scope AND period = :period "
                        "AND spent_nano + reserved_nano + :amount <= :limit",
                        {
                            "amount": amount,
                            "scope": scope.name,
                            "period": scope.period,
                            "limit": scope.limit_nano,
                        },
                    )
                    if changed != 1:
                        raise _Refused(scope)
        except _Refused as refused:
            return refused.scope
        return None

    async def settle(self, scopes: Sequence[Scope], reserved: int, actual: int) -> None:
        async with self._db.transaction() as conn:
            for scope in scopes:
                await conn.execute(
                    "UPDATE budget_counters SET reserved_nano = reserved_nano - :reserved, "
                    "spent_nano = spent_nano + :actual WHERE scope = :scope AND period = :period",
                    {
                        "reserved": reserved,
                        "actual": actual,
                        "scope": scope.name,
                        "period": scope.period,
                    },
                )

    async def usage(self, name: str, period: str) -> tuple[int, int]:
        row = await self._db.fetchone(
            "SELECT spent_nano, reserved_nano FROM budget_counters "
            "WHERE scope = :scope AND period = :period",
            {"scope": name, "period": period},
        )
        return (row["spent_nano"], row["reserved_nano"]) if row else (0, 0)


async def _ensure_row(conn: Connection, scope: Scope) -> None:
    await conn.execute(
        "INSERT INTO budget_counters (scope, period) VALUES (:scope, :period) "
        "ON CONFLICT (scope, period) DO NOTHING",
        {"scope": scope.name, "period": scope.period},
    )


# KEYS: spent and reserved counter of each scope, in pairs. ARGV: amount, then each limit.
# A missing `spent` counter (first use, or Redis lost its data) is reported as -index so the
# caller can seed it from the durable ledger before trying again.
_RESERVE = """
local amount = tonumber(ARGV[1])
local n = #KEYS / 2
for i = 1, n do
  local spent = redis.call('GET', KEYS[2 * i - 1])
  if not spent then return -i end
  local reserved = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if tonumber(spent) + reserved + amount > tonumber(ARGV[i + 1]) then return i end
end
for i = 1, n do redis.call('INCRBY', KEYS[2 * i], amount) end
return 0
"""

_SETTLE = """
local reserved = tonumber(ARGV[1])
local actual = tonumber(ARGV[2])
for i = 1, #KEYS / 2 do
  redis.call('DECRBY', KEYS[2 * i], reserved)
  redis.call('INCRBY', KEYS[2 * i - 1], actual)
end
return 0
"""


class Seeder(Protocol):
    async def spent_nano(self, scope: Scope) -> int:
        """What the durable ledger says this scope has spent in its period."""
        ...


class RedisCounters:
    """Hot counters in Redis (one Lua script per reserve/settle); seeded from the ledger."""

    def __init__(self, redis: Any, seeder: Seeder, prefix: str = "cascade:budget") -> None:
        self._redis = redis
        self._seeder = seeder
        self._prefix = prefix
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def _keys(self, scopes: Sequence[Scope]) -> list[str]:
        keys = []
        for scope in scopes:
            base = f"{self._prefix}:{scope.name}:{scope.period}"
            keys += [f"{base}:spent", f"{base}:reserved"]
        return keys

    async def reserve(self, scopes: Sequence[Scope], amount: int) -> Scope | None:
        keys = self._keys(scopes)
        limits = [scope.limit_nano for scope in scopes]
        while True:
            result = int(await self._reserve(keys=keys, args=[amount, *limits]))
            if result == 0:
                return None
            if result > 0:
                return scopes[result - 1]
            await self._seed(scopes[-result - 1])

    async def _seed(self, scope: Scope) -> None:
        spent = await self._seeder.spent_nano(scope)
        base = f"{self._prefix}:{scope.name}:{scope.period}"
        await self._redis.set(f"{base}:spent", spent, nx=True, ex=scope.ttl_s)
        if scope.ttl_s is not None:
            await self._redis.expire(f"{base}:reserved", scope.ttl_s)

    async def settle(self, scopes: Sequence[Scope], reserved: int, actual: int) -> None:
        await self._settle(keys=self._keys(scopes), args=[reserved, actual])

    async def usage(self, name: str, period: str) -> tuple[int, int]:
        base = f"{self._prefix}:{name}:{period}"
        spent, reserved = await self._redis.mget(f"{base}:spent", f"{base}:reserved")
        return int(spent or 0), int(reserved or 0)
