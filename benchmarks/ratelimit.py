"""What a busy key's rate limits cost per request and hold, on each storage.

A key with `--tpm` tokens and 100,000 requests a minute sends requests of `--tokens` tokens at
`--rate` a second (on a clock that moves only when told, so the minute passes in no time): each
request is admitted (`RateLimiter.admit`) and then its tokens counted (`spend_tokens`), as the
gateway does. Printed per storage: the time per request and the bytes the key's windows hold
once a minute of them is in the window.

    python benchmarks/ratelimit.py [--storage sqlite postgresql redis] [--rate 33]

PostgreSQL and Redis are those of `--postgres-url` and `--redis-url` (127.0.0.1 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from cascade_gateway.errors import RateLimited
from cascade_gateway.ratelimit import RateLimiter, RedisWindows, SqlWindows, Windows
from cascade_gateway.storage.database import Database, open_database
from cascade_gateway.storage.migrations import migrate

RPM = 100_000


class Clock:
    """Time that moves only when told."""

    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def held_in_database(db: Database, key: str) -> int:
    rows = await db.fetchall(
        "SELECT name, counts FROM rate_windows WHERE name LIKE :key", {"key": f"{{{key}}}:%"}
    )
    return sum(len(row["name"]) + len(row["counts"]) for row in rows)


async def held_in_redis(client: object, key: str) -> int:
    names = [name async for name in client.scan_iter(f"cascade:rate:{{{key}}}:*")]
    return sum([await client.memory_usage(name) or 0 for name in names])


async def measure(storage: str, args: argparse.Namespace) -> None:
    key = uuid.uuid4().hex
    windows: Windows
    with tempfile.TemporaryDirectory() as folder:
        if storage == "redis":
            import redis.asyncio as aioredis

            client = aioredis.from_url(args.redis_url)
            windows = RedisWindows(client)
        else:
            url = f"sqlite:///{Path(folder) / 'gateway.db'}"
            db = await open_database(url if storage == "sqlite" else args.postgres_url)
            await migrate(db)
            windows = SqlWindows(db)
        clock = Clock()
        limiter = RateLimiter(windows, clock)
        requests = int(args.rate * 60)
        refused = 0
        started = time.perf_counter()
        for _ in range(requests):
            try:
                await limiter.admit(key, RPM, args.tpm)
            except RateLimited:
                refused += 1
            else:
                await limiter.spend_tokens(key, args.tpm, args.tokens)
            clock.now += 1 / args.rate
        per_request = (time.perf_counter() - started) / requests
        if storage == "redis":
            held = await held_in_redis(client, key)
            await client.aclose()
        else:
            held = await held_in_database(db, key)
            await db.aclose()
    print(
        f"{storage:>10}: {per_request * 1e6:8.1f} µs a request (admit + spend), "
        f"{held:,} bytes held for the key, {refused:,} of {requests:,} refused"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", nargs="+", default=["sqlite", "postgresql", "redis"])
    parser.add_argument("--rate", type=float, default=33, help="requests a second")
    parser.add_argument("--tokens", type=int, default=500, help="tokens a request")
    parser.add_argument("--tpm", type=int, default=1_000_000, help="the key's tokens a minute")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    tokens = int(args.rate * 60) * args.tokens
    print(f"a minute of {args.rate:g} requests a second, {args.tokens} tokens each ", end="")
    print(f"({tokens:,} tokens against {args.tpm:,} a minute)")
    for storage in args.storage:
        await measure(storage, args)


if __name__ == "__main__":
    asyncio.run(main())
