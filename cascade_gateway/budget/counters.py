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

Reserving and settling may be tried again under the same lease, as a retry after an answer
that got lost (a timeout, a connection lost while committing: the first try may have landed),
and land once: a lease already recorded is not reserved again, and a settlement is applied only
while its reservation is still held or released-but-unsettled (`budget_released` in SQL, a
marker in Redis, kept for `RELEASED_KEPT_S`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cascade_gateway.storage.database import Connection, Database

NANO = 1_000_000_000
# How long a reservation released for its lapsed lease waits for its settlement: longer than
# any outage a queued settlement could outlast, short enough that the markers stay few.
RELEASED_KEPT_S = 7 * 86400


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
        """Reserve `amount` on every scope, or on none; the scope that refused, else None.
        Once per lease: tried again after it landed, it reserves nothing more."""
        ...

    async def settle(
        self, scopes: Sequence[Scope], lease: Lease, reserved: int, actual: int
    ) -> None:
        """Turn a reservation into a charge of `actual` (0 releases it); a reservation whose
        lease lapsed and was released is only charged. Once per lease: tried again after it
        landed, it charges nothing more."""
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
                if not await conn.execute(
                    "INSERT INTO budget_holds (id, scopes, amount_nano, expires_at) "
                    "VALUES (:id, :scopes, :amount, :expires_at) ON CONFLICT (id) DO NOTHING",
                    {
                        "id": lease.id,
                        "scopes": json.dumps([[scope.name, scope.period] for scope in scopes]),
                        "amount": amount,
                        "expires_at": lease.expires_at,
                    },
                ):
                    return None  # reserved by an earlier try
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

    async def settle(
        self, scopes: Sequence[Scope], lease: Lease, reserved: int, actual: int
    ) -> None:
        async with self._db.transaction() as conn:
            held = await conn.execute("DELETE FROM budget_holds WHERE id = :id", {"id": lease.id})
            if not held and not await conn.execute(
                "DELETE FROM budget_released WHERE id = :id", {"id": lease.id}
            ):
                return  # settled by an earlier try
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
                await conn.execute(
                    "INSERT INTO budget_released (id, released_at) VALUES (:id, :now)",
                    {"id": hold["id"], "now": now},
                )
            released += 1
        if released:  # markers come only from releases: forget the old ones now
            await self._db.execute(
                "DELETE FROM budget_released WHERE released_at < :then",
                {"then": now - RELEASED_KEPT_S},
            )
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
# lapse), the hash of what each holds, and the epoch (an id of what Redis holds, made anew when
# it lost its data). ARGV: amount, each limit, the lease's id, when it lapses, what it holds.
# Returns {outcome, epoch}. A lease already recorded was reserved by an earlier try: outcome 0.
# A missing `spent` counter (first use, or Redis lost its data) is reported as -index so the
# caller can seed it from the durable ledger before trying again.
_RESERVE = """
local amount = tonumber(ARGV[1])
local n = (#KEYS - 3) / 2
local epoch = redis.call('GET', KEYS[#KEYS])
if not epoch then
  epoch = ARGV[n + 2]
  redis.call('SET', KEYS[#KEYS], epoch)
end
if redis.call('ZSCORE', KEYS[#KEYS - 2], ARGV[n + 2]) then return {0, epoch} end
for i = 1, n do
  local spent = redis.call('GET', KEYS[2 * i - 1])
  if not spent then return {-i, epoch} end
  local reserved = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if tonumber(spent) + reserved + amount > tonumber(ARGV[i + 1]) then return {i, epoch} end
end
for i = 1, n do redis.call('INCRBY', KEYS[2 * i], amount) end
redis.call('ZADD', KEYS[#KEYS - 2], ARGV[n + 3], ARGV[n + 2])
redis.call('HSET', KEYS[#KEYS - 1], ARGV[n + 2], ARGV[n + 4])
return {0, epoch}
"""

# KEYS as for _RESERVE, then the lease's released marker. ARGV: reserved, actual, the lease's
# id, the epoch it was reserved in. The reservation is released only if its lease is still
# recorded, and the cost charged only then, or if it was released for its lapsed lease (the
# marker, deleted as it is used), or if Redis lost its data since (the epoch changed) and the
# counter has been seeded again. Otherwise an earlier try settled it: nothing is done. A
# lost `spent` counter is left for the ledger to seed.
_SETTLE = """
local held = redis.call('ZREM', KEYS[#KEYS - 3], ARGV[3])
redis.call('HDEL', KEYS[#KEYS - 2], ARGV[3])
if held == 0 and redis.call('DEL', KEYS[#KEYS]) == 0
    and redis.call('GET', KEYS[#KEYS - 1]) == ARGV[4] then
  return 0
end
for i = 1, (#KEYS - 4) / 2 do
  if held == 1 then redis.call('DECRBY', KEYS[2 * i], ARGV[1]) end
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 1 then
    redis.call('INCRBY', KEYS[2 * i - 1], ARGV[2])
  end
end
return 1
"""

# KEYS: the reserved counters a lapsed lease holds, the set of leases, the hash of holdings,
# the lease's released marker. ARGV: the lease's id, its amount, now, how long the marker is
# kept. Nothing happens if it was settled, renewed or released meanwhile.
_RELEASE = """
local expires_at = redis.call('ZSCORE', KEYS[#KEYS - 2], ARGV[1])
if not expires_at or tonumber(expires_at) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZREM', KEYS[#KEYS - 2], ARGV[1])
redis.call('HDEL', KEYS[#KEYS - 1], ARGV[1])
redis.call('SET', KEYS[#KEYS], 1, 'EX', ARGV[4])
for i = 1, #KEYS - 3 do redis.call('DECRBY', KEYS[i], ARGV[2]) end
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
        self._leases = [f"{prefix}:leases", f"{prefix}:holdings", f"{prefix}:epoch"]
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._release = redis.register_script(_RELEASE)
        # The epoch each reservation of this process was made in, until it is settled.
        self._epochs: dict[str, bytes] = {}

    def _keys(self, scopes: Sequence[Scope]) -> list[str]:
        keys = []
        for scope in scopes:
            base = f"{self._prefix}:{scope.name}:{scope.period}"
            keys += [f"{base}:spent", f"{base}:reserved"]
        return keys

    def _released(self, lease_id: str | bytes) -> str:
        name = lease_id.decode() if isinstance(lease_id, bytes) else lease_id
        return f"{self._prefix}:released:{name}"

    async def reserve(self, scopes: Sequence[Scope], amount: int, lease: Lease) -> Scope | None:
        keys = self._keys(scopes)
        holding = json.dumps({"reserved": keys[1::2], "amount": amount})
        limits = [scope.limit_nano for scope in scopes]
        args = [amount, *limits, lease.id, repr(lease.expires_at), holding]
        while True:
            outcome, epoch = await self._reserve(keys=keys + self._leases, args=args)
            if outcome == 0:
                self._epochs[lease.id] = epoch
                return None
            if outcome > 0:
                return scopes[outcome - 1]
            await self._seed(scopes[-outcome - 1])

    async def _seed(self, scope: Scope) -> None:
        spent = await self._seeder.spent_nano(scope)
        base = f"{self._prefix}:{scope.name}:{scope.period}"
        await self._redis.set(f"{base}:spent", spent, nx=True, ex=scope.ttl_s)
        if scope.ttl_s is not None:
            await self._redis.expire(f"{base}:reserved", scope.ttl_s)

    async def settle(
        self, scopes: Sequence[Scope], lease: Lease, reserved: int, actual: int
    ) -> None:
        epoch = self._epochs.get(lease.id)
        if epoch is None:
            return  # settled already, and this process had the answer
        keys = [*self._keys(scopes), *self._leases, self._released(lease.id)]
        await self._settle(keys=keys, args=[reserved, actual, lease.id, epoch])
        del self._epochs[lease.id]  # only once it landed: a retry needs it

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
            keys = [*held["reserved"], *self._leases[:2], self._released(lease_id)]
            args = [lease_id, held["amount"], repr(now), RELEASED_KEPT_S]
            released += int(await self._release(keys=keys, args=args))
        return released

    async def usage(self, name: str, period: str) -> tuple[int, int]:
        base = f"{self._prefix}:{name}:{period}"
        spent, reserved = await self._redis.mget(f"{base}:spent", f"{base}:reserved")
        return int(spent or 0), int(reserved or 0)
