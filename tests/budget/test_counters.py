"""The budget counters, on each store they can live in (SQLite, PostgreSQL, Redis): exact
reservations under concurrency, settlement, and reservations released once their lease lapses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from redis.exceptions import TimeoutError as RedisTimeout

from cascade_gateway.budget.counters import (
    RELEASED_KEPT_S,
    Counters,
    Lease,
    RedisCounters,
    Scope,
    SqlCounters,
)
from cascade_gateway.storage.database import open_database
from cascade_gateway.storage.migrations import migrate
from tests.relay import Relay, relay_to

# Leases in these tests lapse at made-up times, long before any real gateway's.
NOW = 1_000.0


def lease(expires_at: float = NOW + 60) -> Lease:
    return Lease(uuid.uuid4().hex, expires_at)


class NothingSpent:
    """The ledger's answer when Redis seeds a counter: no spend yet."""

    async def spent_nano(self, scope: Scope) -> int:
        return 0


class RedisAlone:
    """Counters on Redis under a prefix of their own, which can lose their data."""

    def __init__(self, client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.counters = RedisCounters(client, NothingSpent(), prefix=prefix)

    async def lose_data(self) -> None:
        """As a restart of a Redis without persistence would."""
        await self.client.delete(
            *[key async for key in self.client.scan_iter(f"{self.prefix}:*")] or ["-"]
        )


@asynccontextmanager
async def redis_alone_at(url: str, **client_options: float) -> AsyncIterator[RedisAlone]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, **client_options)
    alone = RedisAlone(client, f"cascade-test:{uuid.uuid4().hex}")
    try:
        yield alone
    finally:
        await alone.lose_data()
        await client.aclose()


@pytest.fixture
async def redis_alone(redis_url: str) -> AsyncIterator[RedisAlone]:
    async with redis_alone_at(redis_url) as alone:
        yield alone


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    if request.param == "redis":
        async with redis_alone_at(request.getfixturevalue("redis_url")) as alone:
            yield alone.counters
        return
    url = "sqlite://" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = await open_database(url)
    await migrate(db)
    await db.execute("DELETE FROM budget_holds WHERE expires_at < :t", {"t": NOW * 10})
    yield SqlCounters(db)
    await db.aclose()


def a_scope(limit: int) -> Scope:
    return Scope(f"key:{uuid.uuid4().hex}", "total", limit_nano=limit)


async def test_reservations_stop_exactly_at_the_limit(counters):
    scope = a_scope(10)

    results = [await counters.reserve([scope], 3, lease()) for _ in range(4)]

    assert results[:3] == [None, None, None]
    assert results[3] == scope
    assert await counters.usage(scope.name, "total") == (0, 9)


async def test_concurrent_reservations_never_overcommit(counters):
    scope = a_scope(100)

    results = await asyncio.gather(*(counters.reserve([scope], 7, lease()) for _ in range(50)))

    assert results.count(None) == 14  # 14 * 7 = 98 <= 100 < 105
    assert await counters.usage(scope.name, "total") == (0, 98)


async def test_settling_replaces_the_reservation_with_the_real_cost(counters):
    scope = a_scope(100)
    held = lease()
    await counters.reserve([scope], 60, held)

    await counters.settle([scope], held, reserved=60, actual=25)

    assert await counters.usage(scope.name, "total") == (25, 0)
    assert await counters.reserve([scope], 75, lease()) is None


async def test_a_refusal_on_one_scope_reserves_nothing_on_the_other(counters):
    roomy, tight = a_scope(1000), a_scope(5)

    assert await counters.reserve([roomy, tight], 10, lease()) == tight

    assert await counters.usage(roomy.name, "total") == (0, 0)


async def test_a_reservation_never_settled_is_released_once_its_lease_lapses(counters):
    key, gateway = a_scope(100), a_scope(1000)
    await counters.reserve([key, gateway], 60, lease(expires_at=NOW - 1))

    released = await counters.release_lapsed(NOW)

    assert released == 1
    assert await counters.usage(key.name, "total") == (0, 0)
    assert await counters.usage(gateway.name, "total") == (0, 0)
    assert await counters.reserve([key], 100, lease()) is None


async def test_a_reservation_within_its_lease_is_kept(counters):
    scope = a_scope(100)
    await counters.reserve([scope], 60, lease(expires_at=NOW + 1))

    assert await counters.release_lapsed(NOW) == 0

    assert await counters.usage(scope.name, "total") == (0, 60)


async def test_settling_a_reservation_released_for_its_lapsed_lease_only_charges_it(counters):
    scope = a_scope(100)
    late = lease(expires_at=NOW - 1)
    await counters.reserve([scope], 60, late)
    await counters.reserve([scope], 30, lease())
    await counters.release_lapsed(NOW)

    await counters.settle([scope], late, reserved=60, actual=25)

    assert await counters.usage(scope.name, "total") == (25, 30)


async def test_a_lapsed_reservation_is_released_once_however_many_replicas_try(counters):
    scope = a_scope(100)
    await counters.reserve([scope], 60, lease(expires_at=NOW - 1))
    await counters.reserve([scope], 30, lease())

    released = await asyncio.gather(*(counters.release_lapsed(NOW) for _ in range(4)))

    assert sum(released) == 1
    assert await counters.usage(scope.name, "total") == (0, 30)


class Interposed:
    """`target`, but its `method` calls `then()` after it has answered: to put another
    replica's step between two of this one's."""

    def __init__(self, target, method: str, then: Callable[[], Awaitable[None]]) -> None:
        self._target, self._method, self._then = target, method, then

    def __getattr__(self, name: str):
        found = getattr(self._target, name)
        if name != self._method:
            return found

        async def then_the_other(*args, **kwargs):
            answer = await found(*args, **kwargs)
            await self._then()
            return answer

        return then_the_other


def replica_reading_then(counters: Counters, then: Callable[[], Awaitable[None]]) -> Counters:
    """Another replica on the store of `counters`, which calls `then()` once it has read which
    leases lapsed, before it releases any."""
    if isinstance(counters, SqlCounters):
        return SqlCounters(Interposed(counters._db, "fetchall", then))
    assert isinstance(counters, RedisCounters)
    store = Interposed(counters._redis, "hmget", then)
    return RedisCounters(store, NothingSpent(), prefix=counters._prefix)


async def test_a_lease_renewed_while_another_replica_releases_it_is_kept(counters):
    scope, held = a_scope(100), lease(expires_at=NOW - 1)
    await counters.reserve([scope], 60, held)

    async def renewed_by_its_holder() -> None:
        await counters.renew([held.id], NOW + 100)

    releasing = replica_reading_then(counters, renewed_by_its_holder)

    assert await releasing.release_lapsed(NOW) == 0
    assert await counters.usage(scope.name, "total") == (0, 60)


async def test_a_lease_settled_while_another_replica_releases_it_is_released_once(counters):
    scope, held = a_scope(100), lease(expires_at=NOW - 1)
    await counters.reserve([scope], 60, held)

    async def settled_by_its_holder() -> None:
        await counters.settle([scope], held, reserved=60, actual=25)

    releasing = replica_reading_then(counters, settled_by_its_holder)

    assert await releasing.release_lapsed(NOW) == 0
    assert await counters.usage(scope.name, "total") == (25, 0)


async def test_a_settled_reservation_is_not_released_when_its_lease_lapses(counters):
    scope = a_scope(100)
    held = lease(expires_at=NOW - 1)
    await counters.reserve([scope], 60, held)
    await counters.settle([scope], held, reserved=60, actual=25)

    assert await counters.release_lapsed(NOW) == 0

    assert await counters.usage(scope.name, "total") == (25, 0)


async def test_a_reservation_tried_again_under_its_lease_is_held_once(counters):
    scope, held = a_scope(100), lease()
    await counters.reserve([scope], 60, held)

    assert await counters.reserve([scope], 60, held) is None  # its first answer was lost

    assert await counters.usage(scope.name, "total") == (0, 60)


async def test_a_settlement_tried_again_after_it_landed_charges_once(counters):
    scope, held = a_scope(100), lease()
    await counters.reserve([scope], 60, held)
    await counters.settle([scope], held, reserved=60, actual=25)

    await counters.settle([scope], held, reserved=60, actual=25)  # its first answer was lost

    assert await counters.usage(scope.name, "total") == (25, 0)


async def test_a_released_reservation_settled_twice_is_charged_once(counters):
    scope, late = a_scope(100), lease(expires_at=NOW - 1)
    await counters.reserve([scope], 60, late)
    await counters.release_lapsed(NOW)

    for _ in range(2):
        await counters.settle([scope], late, reserved=60, actual=25)

    assert await counters.usage(scope.name, "total") == (25, 0)


async def test_a_renewed_lease_lapses_at_its_new_time_not_its_first(counters):
    scope, held = a_scope(100), lease(expires_at=NOW + 1)
    await counters.reserve([scope], 60, held)

    await counters.renew([held.id], NOW + 100)

    assert await counters.release_lapsed(NOW + 50) == 0
    assert await counters.usage(scope.name, "total") == (0, 60)
    assert await counters.release_lapsed(NOW + 101) == 1


async def test_renewing_a_settled_lease_does_not_bring_its_reservation_back(counters):
    scope, held = a_scope(100), lease()
    await counters.reserve([scope], 60, held)
    await counters.settle([scope], held, reserved=60, actual=25)

    await counters.renew([held.id], NOW + 100)

    assert await counters.release_lapsed(NOW + 1000) == 0
    assert await counters.usage(scope.name, "total") == (25, 0)


async def test_renewing_leases_by_the_thousand_renews_every_one(counters):
    scope = a_scope(10_000)
    held = [lease(expires_at=NOW + 1) for _ in range(1_200)]
    for each in held:
        await counters.reserve([scope], 1, each)

    await counters.renew([each.id for each in held], NOW + 100)

    assert await counters.release_lapsed(NOW + 50) == 0


async def test_settling_after_redis_lost_its_data_leaves_no_counter_below_zero(redis_alone):
    counters, scope, held = redis_alone.counters, a_scope(100), lease()
    await counters.reserve([scope], 60, held)
    await redis_alone.lose_data()

    await counters.settle([scope], held, reserved=60, actual=25)

    # Nothing to release, and the spent counter is left for the ledger to seed.
    assert await counters.usage(scope.name, "total") == (0, 0)


async def test_settling_after_redis_lost_its_data_charges_the_counter_seeded_since(redis_alone):
    counters, scope, held = redis_alone.counters, a_scope(100), lease()
    await counters.reserve([scope], 60, held)
    await redis_alone.lose_data()
    await counters.reserve([scope], 10, lease())  # seeds the counter again, from the ledger

    await counters.settle([scope], held, reserved=60, actual=25)

    # The ledger did not have this call yet when it seeded the counter: charged now.
    assert await counters.usage(scope.name, "total") == (25, 10)


@pytest.fixture
async def redis_behind_a_relay(redis_url: str) -> AsyncIterator[tuple[RedisCounters, Relay]]:
    """Counters on a Redis reached through a relay, by a client that waits 0.3 s for an
    answer."""
    with relay_to(redis_url) as relay:
        async with redis_alone_at(relay.url_for(redis_url), socket_timeout=0.3) as alone:
            yield alone.counters, relay


async def test_a_redis_settlement_whose_answer_was_lost_charges_once_when_tried_again(
    redis_behind_a_relay,
):
    counters, relay = redis_behind_a_relay
    scope, held = a_scope(100), lease()
    await counters.reserve([scope], 60, held)

    with relay.answers_lost(), pytest.raises(RedisTimeout):
        await counters.settle([scope], held, reserved=60, actual=25)
    await counters.settle([scope], held, reserved=60, actual=25)

    assert await counters.usage(scope.name, "total") == (25, 0)


async def test_a_redis_reservation_whose_answer_was_lost_holds_once_when_tried_again(
    redis_behind_a_relay,
):
    counters, relay = redis_behind_a_relay
    scope, held = a_scope(100), lease()
    await counters.reserve([scope], 10, lease())  # the counter is seeded

    with relay.answers_lost(), pytest.raises(RedisTimeout):
        await counters.reserve([scope], 60, held)
    assert await counters.reserve([scope], 60, held) is None
    await counters.settle([scope], held, reserved=60, actual=25)

    assert await counters.usage(scope.name, "total") == (25, 10)


async def test_redis_forgets_a_released_reservation_a_week_after_its_release(redis_alone):
    late = lease(expires_at=NOW - 1)
    await redis_alone.counters.reserve([a_scope(100)], 60, late)

    await redis_alone.counters.release_lapsed(NOW)

    ttl = await redis_alone.client.ttl(f"{redis_alone.prefix}:released:{late.id}")
    assert RELEASED_KEPT_S - 60 < ttl <= RELEASED_KEPT_S


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_sql_forgets_released_reservations_a_week_after_their_release(store, request):
    url = "sqlite://" if store == "sqlite" else request.getfixturevalue("postgres_url")
    db = await open_database(url)
    await migrate(db)
    await db.execute("DELETE FROM budget_holds WHERE expires_at < :t", {"t": 2 * RELEASED_KEPT_S})
    counters, scope = SqlCounters(db), a_scope(1000)
    old, recent = lease(expires_at=NOW - 1), lease(expires_at=NOW + RELEASED_KEPT_S)
    await counters.reserve([scope], 60, old)
    await counters.release_lapsed(NOW)
    await counters.reserve([scope], 30, recent)

    await counters.release_lapsed(NOW + RELEASED_KEPT_S + 1)

    kept = await db.fetchall(
        "SELECT id FROM budget_released WHERE id IN (:old, :recent)",
        {"old": old.id, "recent": recent.id},
    )
    assert kept == [{"id": recent.id}]
    await db.aclose()
