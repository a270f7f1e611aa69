"""Per-key rate limits: requests and tokens per minute, over a sliding window of per-second counts.

A key's window holds one count per second of its last minute, so memory and work per request
stay constant however high the limit. (A window of single hits, as `limits`' moving window
keeps, holds one entry per token: about 20 MB of Redis for a full 1M-tokens-per-minute key.)
A count leaves the window 60 to 61 s after it was made, so no 60 seconds ever see more than the
limit.

Each check-and-count is one atomic step, shared by every worker and replica: a transaction on
the window's row in the gateway's database (`SqlWindows`), or a Lua script in Redis
(`RedisWindows`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from cascade_gateway.errors import RateLimited
from cascade_gateway.storage.database import Connection, Database

WINDOW_S = 60
# A second's count stays this long after the second began: the window's edge moves in whole
# seconds, and a count must outlive every moment of its second by WINDOW_S.
_KEPT_S = WINDOW_S + 1


@dataclass(frozen=True, slots=True)
class Draw:
    """What one call asks of one window: `need` units must be free, then `take` are counted,
    no more than are free (a request larger than what is left fills the window)."""

    window: str
    limit: int
    need: int
    take: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """The draw (its index) a window refused, and when it would next be granted."""

    draw: int
    retry_after_s: float


class Windows(Protocol):
    """Where the windows live."""

    async def draw(self, draws: Sequence[Draw], now: float) -> Refusal | None:
        """Check every draw, then count them all, or none: the first refused, else None."""
        ...


class RateLimiter:
    """Checks and counts requests and tokens per key."""

    def __init__(self, windows: Windows, clock: Callable[[], float] = time.time) -> None:
        self._windows = windows
        self._clock = clock

    async def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        """Count one request against `rpm`; refuse it (429) if that or `tpm` is used up.

        A refused request is not counted."""
        limits: list[tuple[str, int]] = []
        draws: list[Draw] = []
        if tpm is not None:
            limits.append(("tokens", tpm))
            draws.append(Draw(_window(key_id, "tpm"), tpm, need=1, take=0))
        if rpm is not None:
            limits.append(("requests", rpm))
            draws.append(Draw(_window(key_id, "rpm"), rpm, need=1, take=1))
        if not draws:
            return
        refusal = await self._windows.draw(draws, self._clock())
        if refusal is not None:
            kind, limit = limits[refusal.draw]
            raise RateLimited(
                f"Rate limit reached: {limit} {kind} per minute for this key.",
                kind=kind,
                retry_after=refusal.retry_after_s,
            )

    async def spend_tokens(self, key_id: str, tpm: int, tokens: int) -> None:
        """Count tokens a request really used. A request larger than what is left of the window
        fills it (the excess is not carried into the next minute)."""
        if tokens > 0:
            await self._windows.draw([Draw(_window(key_id, "tpm"), tpm, 0, tokens)], self._clock())


def _window(key_id: str, kind: str) -> str:
    # The braces are a Redis Cluster hash tag: a key's windows share a slot, so one script
    # may touch both.
    return f"{{{key_id}}}:{kind}"


class _Counts:
    """One window: counts per second, oldest first, and their running total."""

    __slots__ = ("seconds", "total")

    def __init__(self, seconds: list[list[int]]) -> None:
        self.seconds = seconds  # [second, count]
        self.total = sum(count for _, count in seconds)

    @classmethod
    def decode(cls, text: str) -> _Counts:
        return cls(orjson.loads(text))

    def encode(self) -> str:
        return orjson.dumps(self.seconds).decode()

    def used(self, now: float) -> int:
        """The count in the window at `now`; what has left it is dropped."""
        oldest = math.floor(now) - WINDOW_S
        gone = 0
        while gone < len(self.seconds) and self.seconds[gone][0] < oldest:
            self.total -= self.seconds[gone][1]
            gone += 1
        del self.seconds[:gone]
        return self.total

    def add(self, now: float, count: int) -> None:
        second = math.floor(now)
        seconds = self.seconds
        # A clock that stepped back counts in the newest second, which stays longest.
        if seconds and seconds[-1][0] >= second:
            seconds[-1][1] += count
        else:
            seconds.append([second, count])
        self.total += count

    def retry_after(self, now: float, over: int) -> float:
        """Seconds until `over` units have left the window."""
        for second, count in self.seconds:
            over -= count
            if over <= 0:
                return second + _KEPT_S - now
        return float(_KEPT_S)


def _apply(draws: Sequence[Draw], windows: Sequence[_Counts], now: float) -> Refusal | None:
    """Check every draw against its window, then count them all, or none."""
    used = [counts.used(now) for counts in windows]
    for index, draw in enumerate(draws):
        over = used[index] + draw.need - draw.limit
        if over > 0:
            return Refusal(index, windows[index].retry_after(now, over))
    for draw, counts, already in zip(draws, windows, used, strict=True):
        taken = min(draw.take, draw.limit - already)
        if taken > 0:
            counts.add(now, taken)
    return None


class SqlWindows:
    """Windows in the gateway's database, a row each, locked while it is read and rewritten:
    exact across every worker and replica sharing the database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # SQLite's BEGIN IMMEDIATE already locks the whole file for the transaction.
        self._for_update = " FOR UPDATE" if db.dialect == "postgresql" else ""

    async def draw(self, draws: Sequence[Draw], now: float) -> Refusal | None:
        async with self._db.transaction() as conn:
            texts: dict[str, str] = {}
            # Rows are locked in name order: no two requests each hold a row the other waits on.
            for name in sorted({draw.window for draw in draws}):
                texts[name] = await self._locked(conn, name)
            windows = {name: _Counts.decode(text) for name, text in texts.items()}
            refusal = _apply(draws, [windows[draw.window] for draw in draws], now)
            for name, counts in windows.items():
                text = counts.encode()
                if text != texts[name]:
                    await conn.execute(
                        "UPDATE rate_windows SET counts = :counts WHERE name = :name",
                        {"counts": text, "name": name},
                    )
        return refusal

    async def _locked(self, conn: Connection, name: str) -> str:
        select = "SELECT counts FROM rate_windows WHERE name = :name" + self._for_update
        row = await conn.fetchone(select, {"name": name})
        if row is None:
            await conn.execute(
                "INSERT INTO rate_windows (name, counts) VALUES (:name, '[]') "
                "ON CONFLICT (name) DO NOTHING",
                {"name": name},
            )
            row = await conn.fetchone(select, {"name": name})
            assert row is not None
        return str(row["counts"])


# KEYS: one hash per window, field = unix second, value = that second's count.
# ARGV: now, then limit, need, take for each window. Returns {0, 0} when every draw is granted
# and counted, else {index of the refused draw (from 1), milliseconds until it would be granted}.
_DRAW = f"""
local now = tonumber(ARGV[1])
local second = math.floor(now)
local oldest = second - {WINDOW_S}
local used = {{}}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  local total, stale, live = 0, {{}}, {{}}
  for j = 1, #fields, 2 do
    local at = tonumber(fields[j])
    if at < oldest then
      stale[#stale + 1] = fields[j]
    else
      local count = tonumber(fields[j + 1])
      total = total + count
      live[#live + 1] = {{at, count}}
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  local over = total + tonumber(ARGV[3 * i]) - tonumber(ARGV[3 * i - 1])
  if over > 0 then
    table.sort(live, function(a, b) return a[1] < b[1] end)
    for _, entry in ipairs(live) do
      over = over - entry[2]
      if over <= 0 then return {{i, math.ceil((entry[1] + {_KEPT_S} - now) * 1000)}} end
    end
    return {{i, {_KEPT_S * 1000}}}
  end
  used[i] = total
end
for i, key in ipairs(KEYS) do
  local taken = math.min(tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i - 1]) - used[i])
  if taken > 0 then
    redis.call('HINCRBY', key, second, taken)
    redis.call('EXPIRE', key, {_KEPT_S + 1})
  end
end
return {{0, 0}}
"""


class RedisWindows:
    """Windows in Redis, one hash per window: exact across every replica sharing it."""

    def __init__(self, redis: Any, prefix: str = "cascade:rate") -> None:
        self._prefix = prefix
        self._draw = redis.register_script(_DRAW)

    async def draw(self, draws: Sequence[Draw], now: float) -> Refusal | None:
        keys = [f"{self._prefix}:{draw.window}" for draw in draws]
        args: list[float | int] = [now]
        for draw in draws:
            args += [draw.limit, draw.need, draw.take]
        refused, retry_ms = await self._draw(keys=keys, args=args)
        if refused == 0:
            return None
        return Refusal(int(refused) - 1, int(retry_ms) / 1000)
