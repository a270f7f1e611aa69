"""Per-key rate limits: requests per minute and tokens per minute, in a moving window.

Built on `limits`, the engine behind slowapi, through its asyncio API. slowapi itself is not a
dependency: its `Limiter` only talks to its storage synchronously, which would block the event
loop on every request, and its per-route decorators know nothing of keys or token counts.
The storage is shared (Redis) when configured, so limits hold across replicas.
"""

from __future__ import annotations

import time

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from cascade_gateway.errors import RateLimited


class RateLimiter:
    """Checks and counts requests and tokens per key."""

    def __init__(self, redis_url: str | None = None) -> None:
        if redis_url:
            storage = storage_from_string(
                "async+" + redis_url, implementation="redispy", key_prefix="cascade:rate"
            )
        else:
            storage = storage_from_string("async+memory://")
        self._limiter = MovingWindowRateLimiter(storage)
        self._storage = storage

    async def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        """Count one request against `rpm`; refuse it (429) if that or `tpm` is used up."""
        if tpm is not None:
            window = await self._limiter.get_window_stats(
                RateLimitItemPerMinute(tpm), key_id, "tpm"
            )
            if window.remaining <= 0:
                raise RateLimited(
                    f"Rate limit reached: {tpm} tokens per minute for this key.",
                    kind="tokens",
                    retry_after=window.reset_time - time.time(),
                )
        if rpm is not None:
            item = RateLimitItemPerMinute(rpm)
            if not await self._limiter.hit(item, key_id, "rpm"):
                window = await self._limiter.get_window_stats(item, key_id, "rpm")
                raise RateLimited(
                    f"Rate limit reached: {rpm} requests per minute for this key.",
                    kind="requests",
                    retry_after=window.reset_time - time.time(),
                )

    async def spend_tokens(self, key_id: str, tpm: int, tokens: int) -> None:
        """Count tokens a request really used. A request larger than what is left of the window
        fills it (the excess is not carried into the next minute)."""
        if tokens <= 0:
            return
        item = RateLimitItemPerMinute(tpm)
        window = await self._limiter.get_window_stats(item, key_id, "tpm")
        cost = min(tokens, window.remaining)
        if cost > 0:
            await self._limiter.hit(item, key_id, "tpm", cost=cost)

    async def ping(self) -> None:
        if not await self._storage.check():
            raise ConnectionError("rate-limit storage is unreachable")
