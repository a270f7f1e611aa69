"""A provider wrapped in the gateway's failure policy: admission, breaker, deadlines, retries.

`GuardedProvider` implements the same `Provider` interface as what it wraps, so the cascade
engine does not change: a call either returns, or raises `ProviderError` — from the upstream,
or from the gateway itself (`circuit_open`, `overloaded`, `timeout`), which the engine treats
like any failure (a draft is skipped; a final tier falls back or reports).

For each call:
    1. the model's breaker must let it through (else `circuit_open`, at once);
    2. it takes one of the model's concurrency slots, waiting briefly in a bounded queue (else
       `overloaded`, 503 with Retry-After, instead of unbounded memory growth);
    3. it must produce its first token within `first_token_s` and finish within `total_s`;
    4. a retryable failure (no connection, 429 — after its Retry-After —, 5xx, a deadline) is
       retried with exponential backoff and full jitter, within `max_attempts` and `budget_s`,
       and only while nothing has been passed on: a stream that already yielded text is never
       retried (the client has seen it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

from cascade_gateway.domain import ChatRequest, Completion, Delta
from cascade_gateway.errors import ProviderError
from cascade_gateway.observability import metrics
from cascade_gateway.providers.base import Provider
from cascade_gateway.resilience.breaker import CircuitBreaker

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """Deadlines and retries for calls to one model (from one route's point of view)."""

    first_token_s: float | None = None
    total_s: float | None = None
    max_attempts: int = 3
    backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    budget_s: float = 15.0


class Admission:
    """At most `limit` calls of a model at once, `queue` more waiting up to `wait_s`.

    Used as `async with admission:` around one call (a class rather than a generator-based
    context manager, which cost three times as much on every call).
    """

    def __init__(self, name: str, limit: int, queue: int, wait_s: float) -> None:
        self.name = name
        self._slots = asyncio.Semaphore(limit)
        self._queue = queue
        self._wait_s = wait_s
        self._waiting = 0

    async def __aenter__(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        if self._waiting >= self._queue:
            raise self._overloaded()
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self._wait_s)
        except TimeoutError:
            raise self._overloaded() from None
        finally:
            self._waiting -= 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release()

    def _overloaded(self) -> ProviderError:
        return gateway_refusal(
            self.name, "overloaded", f"too many calls in flight to `{self.name}`", retry_after=1
        )


def gateway_refusal(
    model: str, code: str, message: str, retry_after: float | None = None
) -> ProviderError:
    """A call the gateway refused to make (503), as opposed to one the upstream failed."""
    error = ProviderError(message, provider=model, retry_after=retry_after)
    error.code = code
    error.refused_locally = True
    return error


class GuardedProvider:
    """`Provider` with the failure policy of one model applied."""

    def __init__(
        self,
        inner: Provider,
        model: str,
        policy: CallPolicy,
        breaker: CircuitBreaker,
        admission: Admission,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.name = inner.name
        self.model = model
        self._inner = inner
        self.policy = policy
        self._breaker = breaker
        self._admission = admission
        self._sleep = sleep
        self._jitter = jitter

    async def complete(self, model: str, request: ChatRequest) -> Completion:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._complete_once(model, request)
            except ProviderError as exc:
                await self._before_retry(exc, attempt, started)

    async def _complete_once(self, model: str, request: ChatRequest) -> Completion:
        self._admit()
        total_s = self.policy.total_s
        async with self._admission:
            try:
                async with _deadline_at(None if total_s is None else _now() + total_s):
                    completion = await self._inner.complete(model, request)
            except TimeoutError:
                raise self._timed_out(f"no answer within {total_s}s") from None
            except ProviderError as exc:
                self._record_failure(exc)
                raise
        self._breaker.record(True)
        return completion

    async def stream(self, model: str, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            passed_on = False
            try:
                self._admit()
                async with self._admission, aclosing(self._inner.stream(model, request)) as deltas:
                    policy = self.policy
                    opened = _now()
                    total_at = opened + policy.total_s if policy.total_s is not None else None
                    first_at = (
                        opened + policy.first_token_s if policy.first_token_s is not None else None
                    )
                    first = True
                    while True:
                        # Each wait for the next delta under the deadline that applies to it;
                        # never the `yield`, so that no deadline can fire in the consumer's code.
                        deadline = _earliest(first_at, total_at) if first else total_at
                        try:
                            async with _deadline_at(deadline):
                                delta = await anext(deltas)
                        except StopAsyncIteration:
                            break
                        except TimeoutError:
                            what = "first token" if first and deadline == first_at else "answer"
                            waited = _now() - opened
                            raise self._timed_out(f"no {what} after {waited:.1f}s") from None
                        except ProviderError as exc:
                            self._record_failure(exc)
                            raise
                        if first and (delta.text or delta.tool_calls):
                            first = False
                        passed_on = True
                        yield delta
                self._breaker.record(True)
                return
            except ProviderError as exc:
                if passed_on:
                    raise
                await self._before_retry(exc, attempt, started)

    def _admit(self) -> None:
        if not self._breaker.allow():
            raise gateway_refusal(
                self.model,
                "circuit_open",
                f"circuit open for `{self.model}` after repeated upstream failures",
                retry_after=self._breaker.retry_after(),
            )

    def _timed_out(self, message: str) -> ProviderError:
        error = ProviderError(message, provider=self.name, timed_out=True)
        self._record_failure(error)
        return error

    def _record_failure(self, exc: ProviderError) -> None:
        # A 4xx is the request's fault, not a sign the upstream is unhealthy.
        self._breaker.record(not exc.retryable)

    async def _before_retry(self, exc: ProviderError, attempt: int, started: float) -> None:
        """Sleep before the next try, or re-raise when this failure should not be retried."""
        if exc.refused_locally or not exc.retryable:
            raise exc
        if attempt >= self.policy.max_attempts:
            raise exc
        delay = (
            min(self.policy.max_backoff_s, self.policy.backoff_s * 2 ** (attempt - 1))
            * self._jitter()
        )
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        if time.monotonic() - started + delay > self.policy.budget_s:
            raise exc
        metrics.UPSTREAM_RETRIES.labels(self.model).inc()
        metrics.UPSTREAM_ERRORS.labels(self.name, exc.code or "upstream_error").inc()
        await self._sleep(delay)

    async def aclose(self) -> None:
        # The wrapped provider is shared by every route; the service graph closes it once.
        return None


def _now() -> float:
    return asyncio.get_running_loop().time()


_NO_DEADLINE: contextlib.AbstractAsyncContextManager[object] = contextlib.nullcontext()


def _deadline_at(when: float | None) -> contextlib.AbstractAsyncContextManager[object]:
    """`asyncio.timeout_at(when)`; without a deadline, a context that costs nothing."""
    return _NO_DEADLINE if when is None else asyncio.timeout_at(when)


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
