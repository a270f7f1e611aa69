"""Per-key rate limits in SQLite, the real PostgreSQL and the real Redis: one specification."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cascade_gateway.errors import RateLimited
from cascade_gateway.ratelimit import RateLimiter, RedisWindows, SqlWindows, Windows
from cascade_gateway.storage.database import open_database
from cascade_gateway.storage.migrations import migrate

START = 1_800_000_000.25  # a quarter past a whole second


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[object]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def new_windows(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[Windows]]]:
    """Makes windows on one storage, each with a connection of its own, as workers and
    replicas have."""
    closers: list[Callable[[], Awaitable[None]]] = []

    async def replica() -> Windows:
        if request.param == "redis":
            import redis.asyncio as aioredis

            client = aioredis.from_url(request.getfixturevalue("redis_url"))
            closers.append(client.aclose)
            return RedisWindows(client, prefix="test:rate")
        if request.param == "sqlite":
            db = await open_database(f"sqlite:///{tmp_path / 'gateway.db'}")
        else:
            db = await open_database(request.getfixturevalue("postgres_url"))
        closers.append(db.aclose)
        await migrate(db)
        return SqlWindows(db)

    yield replica
    for close in closers:
        await close()


@pytest.fixture
def key() -> str:
    """A key id of this test's own: the PostgreSQL database and Redis outlive a test."""
    return uuid.uuid4().hex


@pytest.fixture
async def limiter(new_windows: Callable[[], Awaitable[Windows]], clock: Clock) -> RateLimiter:
    return RateLimiter(await new_windows(), clock)


async def refusal(limiter: RateLimiter, key: str, rpm: int | None = None, tpm: int | None = None):
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(key, rpm, tpm)
    return refused.value


async def test_a_key_gets_its_requests_per_minute_then_a_429(limiter: RateLimiter, key: str):
    for _ in range(3):
        await limiter.admit(key, rpm=3, tpm=None)

    refused = await refusal(limiter, key, rpm=3)

    assert refused.status_code == 429
    assert refused.error_type == "requests"
    assert "3 requests per minute" in str(refused)


async def test_keys_have_windows_of_their_own(limiter: RateLimiter, key: str):
    await limiter.admit(key, rpm=1, tpm=None)

    await limiter.admit(f"{key}-other", rpm=1, tpm=None)

    await refusal(limiter, key, rpm=1)


async def test_a_request_leaves_the_window_after_sixty_to_sixty_one_seconds(
    limiter: RateLimiter, clock: Clock, key: str
):
    await limiter.admit(key, rpm=1, tpm=None)  # at .25 past second S

    clock.now = START + 60.5  # S + 60.75: 60.5 s later, its second is still in the window
    await refusal(limiter, key, rpm=1)
    clock.now = START + 60.75  # S + 61
    await limiter.admit(key, rpm=1, tpm=None)


async def test_retry_after_is_when_enough_of_the_window_has_left(
    limiter: RateLimiter, clock: Clock, key: str
):
    await limiter.admit(key, rpm=2, tpm=None)
    clock.now += 10
    await limiter.admit(key, rpm=2, tpm=None)
    clock.now += 20

    refused = await refusal(limiter, key, rpm=2)

    # The first request's second leaves 61 s after it began, 30.25 s before now.
    assert refused.retry_after == pytest.approx(61 - 30.25)


async def test_tokens_per_minute_refuses_once_the_used_tokens_fill_the_window(
    limiter: RateLimiter, key: str
):
    await limiter.admit(key, rpm=None, tpm=100)
    await limiter.spend_tokens(key, tpm=100, tokens=99)
    await limiter.admit(key, rpm=None, tpm=100)  # one token left: still admitted
    await limiter.spend_tokens(key, tpm=100, tokens=1)

    refused = await refusal(limiter, key, tpm=100)

    assert refused.error_type == "tokens"
    assert "100 tokens per minute" in str(refused)


async def test_a_request_larger_than_what_is_left_fills_the_window_and_no_more(
    limiter: RateLimiter, clock: Clock, key: str
):
    await limiter.spend_tokens(key, tpm=100, tokens=60)
    clock.now += 30
    await limiter.spend_tokens(key, tpm=100, tokens=500)  # counts 40

    clock.now += 31  # the first 60 tokens have left: 40 of 100 used
    await limiter.admit(key, rpm=None, tpm=100)
    await limiter.spend_tokens(key, tpm=100, tokens=60)
    await refusal(limiter, key, tpm=100)


async def test_a_request_refused_for_tokens_is_not_counted_against_requests(
    limiter: RateLimiter, key: str
):
    await limiter.spend_tokens(key, tpm=10, tokens=10)
    for _ in range(3):
        await refusal(limiter, key, rpm=1, tpm=10)

    await limiter.admit(key, rpm=1, tpm=None)


async def test_racing_requests_from_several_replicas_get_exactly_the_limit(
    new_windows: Callable[[], Awaitable[Windows]], clock: Clock, key: str
):
    replicas = [RateLimiter(await new_windows(), clock) for _ in range(4)]

    async def one(index: int) -> bool:
        try:
            await replicas[index % 4].admit(key, rpm=25, tpm=None)
        except RateLimited:
            return False
        return True

    admitted = await asyncio.gather(*(one(i) for i in range(200)))

    assert admitted.count(True) == 25


async def test_a_redis_window_holds_one_count_per_second_however_many_tokens(
    redis_client, clock: Clock, key: str
):
    limiter = RateLimiter(RedisWindows(redis_client, prefix="test:rate"), clock)
    for _ in range(2_000):  # 1,000,000 tokens over 100 s
        await limiter.spend_tokens(key, tpm=1_000_000, tokens=500)
        clock.now += 0.05

    window = f"test:rate:{{{key}}}:tpm"
    assert 60 <= await redis_client.hlen(window) <= 61
    assert 0 < await redis_client.ttl(window) <= 62
