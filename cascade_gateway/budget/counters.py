"""Budget counters: reserve before an upstream call, settle after — atomically, across replicas.

Amounts are integers in nanodollars (1e-9 USD) so sums are exact. A reservation succeeds only
if, for every scope it touches (the key, the whole gateway), `spent + reserved + amount <= limit`
holds *at that instant*; the check and the increment are one atomic step (a conditional UPDATE
in SQL, a Lua script in Redis), which is what makes the budget exact under concurrency.

Every reservation is recorded with a lease, which its holder renews while the call runs
(`renew`). One whose holder is gone (a replica killed mid-call) is released by any replica once
its lease has lapsed (`release_lapsed`), instead of holding the budget for the rest of its
period. Settling a reservation that was released that way charges its cost without releasing it
a second time.
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True, slots=True)
class Lease:
    """A reservation's id, and when (unix time) it lapses if it has not been settled."""

    id: str
    expires_at: float


class Counters(Protocol):
    async def reserve(self, scopes: Sequence[Scope], amount: int, lease: Lease) -> Scope | None:
        """Reserve `amount` on every scope, or on none; the scope that refused, else None."""
        ...

    async def settle(
        self, scopes: Sequence[Scope], lease: Lease, reserved: int, actual: int
    ) -> None:
        """Turn a reservation into a charge of `actual` (0 releases it); a reservation whose
        lease lapsed and was released is only charged."""
        ...

    async def renew(self, lease_ids: Sequence[str], expires_at: float) -> None:
        """Move the lapse of these leases to `expires_at`; a lease already settled or released
        stays gone."""
        ...

    async def release_lapsed(self, now: float) -> int:
        """Release the reservations whose leases lapsed before `now`; how many there were."""
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

    async def reserve(self, scopes: Sequence[Scope], amount: int, lease: Lease) -> Scope | None:
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
                await conn.execute(
                    "INSERT INTO budget_holds (id, scopes, amount_nano, expires_at) "
                    "VALUES (:id, :scopes, :amount, :expires_at)",
                    {
                        "id": lease.id,
                        "scopes": json.dumps([[scope.name, scope.period] for scope in scopes]),
                        "amount": amount,
                        "expires_at": lease.expires_at,
                    },
                )
        except _Refused as refused:
            return refused.scope
        return None

    async def settle(
        self, scopes: Sequence[Scope], lease: Lease, reserved: int, actual: int
    ) -> None:
        async with self._db.transaction() as conn:
            held = await conn.execute("DELETE FROM budget_holds WHERE id = :id", {"id": lease.id})
            for scope in scopes:
                await conn.execute(
                    "UPDATE budget_counters SET reserved_nano = reserved_nano - :reserved, "
                    "spent_nano = spent_nano + :actual WHERE scope = :scope AND period = :period",
                    {
                        "reserved": reserved if held else 0,
                        "actual": actual,
                        "scope": scope.name,
                        "period": scope.period,
                    },
                )

    async def renew(self, lease_ids: Sequence[str], expires_at: float) -> None:
        async with self._db.transaction() as conn:
            await conn.executemany(
                "UPDATE budget_holds SET expires_at = :expires_at WHERE id = :id",
                [{"id": id_, "expires_at": expires_at} for id_ in lease_ids],
            )

    async def release_lapsed(self, now: float) -> int:
        lapsed = await self._db.fetchall(
            "SELECT id, scopes, amount_nano FROM budget_holds WHERE expires_at < :now "
            "ORDER BY expires_at LIMIT 1000",
            {"now": now},
        )
        released = 0
        for hold in lapsed:
            # Each in its own transaction, and only if still there and still lapsed: its
            # holder may be settling or renewing it, another replica releasing it, right now.
            async with self._db.transaction() as conn:
                if not await conn.execute(
                    "DELETE FROM budget_holds WHERE id = :id AND expires_at < :now",
                    {"id": hold["id"], "now": now},
                ):
                    continue
                for name, period in json.loads(hold["scopes"]):
                    await conn.execute(
                        "UPDATE budget_counters SET reserved_nano = reserved_nano - :amount "
                        "WHERE scope = :scope AND period = :period",
                        {"amount": hold["amount_nano"], "scope": name, "period": period},
                    )
            released += 1
        return released

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


# KEYS: spent and reserved counter of each scope, in pairs, then the set of leases (by when they
# lapse) and the hash of what each holds. ARGV: amount, each limit, the lease's id, when it
# lapses, and what it holds. A missing `spent` counter (first use, or Redis lost its data) is
# reported as -index so the caller can seed it from the durable ledger before trying again.
_RESERVE = """
local amount = tonumber(ARGV[1])
local n = (#KEYS - 2) / 2
for i = 1, n do
  local spent = redis.call('GET', KEYS[2 * i - 1])
  if not spent then return -i end
  local reserved = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if tonumber(spent) + reserved + amount > tonumber(ARGV[i + 1]) then return i end
end
for i = 1, n do redis.call('INCRBY', KEYS[2 * i], amount) end
redis.call('ZADD', KEYS[#KEYS - 1], ARGV[n + 3], ARGV[n + 2])
redis.call('HSET', KEYS[#KEYS], ARGV[n + 2], ARGV[n + 4])
return 0
"""

# KEYS as for _RESERVE. ARGV: reserved, actual, the lease's id. The reservation is released
# only if its lease is still recorded: not if it lapsed and was released, nor if Redis lost it
# (with the counters it was on). A lost `spent` counter is left for the ledger to seed.
_SETTLE = """
local held = redis.call('ZREM', KEYS[#KEYS - 1], ARGV[3])
redis.call('HDEL', KEYS[#KEYS], ARGV[3])
for i = 1, (#KEYS - 2) / 2 do
  if held == 1 then redis.call('DECRBY', KEYS[2 * i], ARGV[1]) end
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 1 then
    redis.call('INCRBY', KEYS[2 * i - 1], ARGV[2])
  end
end
return 0
"""

# KEYS: the reserved counters a lapsed lease holds, the set of leases, the hash of holdings.
# ARGV: the lease's id, its amount, now. Nothing happens if it was settled, renewed or released
# meanwhile.
_RELEASE = """
local expires_at = redis.call('ZSCORE', KEYS[#KEYS - 1], ARGV[1])
if not expires_at or tonumber(expires_at) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZREM', KEYS[#KEYS - 1], ARGV[1])
redis.call('HDEL', KEYS[#KEYS], ARGV[1])
for i = 1, #KEYS - 2 do redis.call('DECRBY', KEYS[i], ARGV[2]) end
return 1
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
        self._leases = [f"{prefix}:leases", f"{prefix}:holdings"]
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._release = redis.register_script(_RELEASE)

    def _keys(self, scopes: Sequence[Scope]) -> list[str]:
        keys = []
        for scope in scopes:
            base = f"{self._prefix}:{scope.name}:{scope.period}"
            keys += [f"{base}:spent", f"{base}:reserved"]
        return keys

    async def reserve(self, scopes: Sequence[Scope], amount: int, lease: Lease) -> Scope | None:
        keys = self._keys(scopes)
        holding = json.dumps({"reserved": keys[1::2], "amount": amount})
        limits = [scope.limit_nano for scope in scopes]
        args = [amount, *limits, lease.id, repr(lease.expires_at), holding]
        while True:
            result = int(await self._reserve(keys=keys + self._leases, args=args))
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

    async def settle(
        self, scopes: Sequence[Scope], lease: Lease, reserved: int, actual: int
    ) -> None:
        keys = self._keys(scopes) + self._leases
        await self._settle(keys=keys, args=[reserved, actual, lease.id])

    async def renew(self, lease_ids: Sequence[str], expires_at: float) -> None:
        if lease_ids:
            # XX: only leases still recorded; a settled or released one is not brought back.
            mapping = dict.fromkeys(lease_ids, expires_at)
            await self._redis.zadd(self._leases[0], mapping, xx=True)

    async def release_lapsed(self, now: float) -> int:
        ids = await self._redis.zrangebyscore(self._leases[0], "-inf", f"({now!r}", 0, 1000)
        if not ids:
            return 0
        holdings = await self._redis.hmget(self._leases[1], ids)
        released = 0
        for lease_id, holding in zip(ids, holdings, strict=True):
            if holding is None:  # settled between the two reads
                continue
            held = json.loads(holding)
            keys = [*held["reserved"], *self._leases]
            args = [lease_id, held["amount"], repr(now)]
            released += int(await self._release(keys=keys, args=args))
        return released

    async def usage(self, name: str, period: str) -> tuple[int, int]:
        base = f"{self._prefix}:{name}:{period}"
        spent, reserved = await self._redis.mget(f"{base}:spent", f"{base}:reserved")
        return int(spent or 0), int(reserved or 0)
