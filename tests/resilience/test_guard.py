"""The guarded provider: retries, deadlines, breaker and back-pressure around a scripted one."""

from __future__ import annotations

import asyncio

import pytest

from cascade_gateway.domain import ChatRequest
from cascade_gateway.errors import ProviderError
from cascade_gateway.providers.scripted import Scripted, ScriptedProvider
from cascade_gateway.resilience.breaker import BreakerSettings, CircuitBreaker
from cascade_gateway.resilience.guard import Admission, CallPolicy, GuardedProvider

ASK = ChatRequest(messages=[{"role": "user", "content": "hi"}])


class Sleeps:
    """A fake sleep that records the delays it was asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def guarded(
    inner: ScriptedProvider,
    sleeps: Sleeps | None = None,
    *,
    admission: Admission | None = None,
    breaker: CircuitBreaker | None = None,
    **policy,
) -> GuardedProvider:
    return GuardedProvider(
        inner,
        "m",
        CallPolicy(**policy),
        breaker or CircuitBreaker("m", BreakerSettings(failure_threshold=3)),
        admission or Admission("m", limit=10, queue=10, wait_s=1),
        sleep=sleeps or Sleeps(),
        jitter=lambda: 1.0,
    )


def error(status: int | None, retry_after: float | None = None) -> ProviderError:
    return ProviderError("boom", provider="p", status=status, retry_after=retry_after)


async def test_a_5xx_is_retried_with_exponential_backoff(scripted):
    sleeps = Sleeps()
    scripted.enqueue("m", error(500))
    scripted.enqueue("m", error(502))
    scripted.enqueue("m", "ok")

    completion = await guarded(scripted, sleeps, max_attempts=3, backoff_s=0.5).complete("m", ASK)

    assert completion.text == "ok"
    assert sleeps.delays == [0.5, 1.0]


async def test_a_429_waits_at_least_its_retry_after(scripted):
    sleeps = Sleeps()
    scripted.enqueue("m", error(429, retry_after=3))
    scripted.enqueue("m", "ok")

    await guarded(scripted, sleeps, max_attempts=2, backoff_s=0.1).complete("m", ASK)

    assert sleeps.delays == [3]


async def test_a_4xx_is_not_retried(scripted):
    scripted.enqueue("m", error(400))

    with pytest.raises(ProviderError):
        await guarded(scripted, max_attempts=3).complete("m", ASK)

    assert len(scripted.history) == 1


async def test_retries_stop_at_max_attempts(scripted):
    for _ in range(3):
        scripted.enqueue("m", error(503))

    with pytest.raises(ProviderError):
        await guarded(scripted, max_attempts=2).complete("m", ASK)

    assert len(scripted.history) == 2


async def test_retries_stop_when_the_time_budget_would_be_exceeded(scripted):
    sleeps = Sleeps()
    scripted.enqueue("m", error(429, retry_after=30))

    with pytest.raises(ProviderError):
        await guarded(scripted, sleeps, max_attempts=5, budget_s=10).complete("m", ASK)

    assert sleeps.delays == []


async def test_a_stream_is_retried_before_its_first_token(scripted):
    scripted.enqueue("m", error(500))
    scripted.enqueue("m", "hello there")

    text = "".join([d.text async for d in guarded(scripted, max_attempts=2).stream("m", ASK)])

    assert text == "hello there"


async def test_a_stream_is_never_retried_after_text_was_passed_on(scripted):
    scripted.enqueue("m", Scripted(text="one two three", fail_after=1, error=error(500)))
    scripted.enqueue("m", "must not be used")
    seen = []

    with pytest.raises(ProviderError):
        async for delta in guarded(scripted, max_attempts=3).stream("m", ASK):
            seen.append(delta.text)

    assert seen == ["one "]
    assert len(scripted.history) == 1


async def test_no_first_token_in_time_is_a_timeout(scripted):
    scripted.enqueue("m", Scripted(text="late", delay_s=1.0))

    with pytest.raises(ProviderError) as caught:
        async for _ in guarded(scripted, max_attempts=1, first_token_s=0.05).stream("m", ASK):
            pass

    assert caught.value.timed_out
    assert caught.value.status_code == 504
    assert "first token" in caught.value.message


async def test_a_slow_answer_hits_the_total_deadline(scripted):
    scripted.enqueue("m", Scripted(text="late", delay_s=1.0))

    with pytest.raises(ProviderError) as caught:
        await guarded(scripted, max_attempts=1, total_s=0.05).complete("m", ASK)

    assert caught.value.timed_out


async def test_an_open_breaker_fails_fast_without_calling(scripted):
    breaker = CircuitBreaker("m", BreakerSettings(failure_threshold=1, open_s=60))
    breaker.record(False)

    with pytest.raises(ProviderError) as caught:
        await guarded(scripted, breaker=breaker).complete("m", ASK)

    assert caught.value.code == "circuit_open"
    assert caught.value.status_code == 503
    assert caught.value.retry_after == pytest.approx(60, abs=1)
    assert scripted.history == []


async def test_failures_open_the_breaker(scripted):
    breaker = CircuitBreaker("m", BreakerSettings(failure_threshold=2))
    for _ in range(2):
        scripted.enqueue("m", error(500))
        with pytest.raises(ProviderError):
            await guarded(scripted, breaker=breaker, max_attempts=1).complete("m", ASK)

    assert breaker.state == "open"


async def test_calls_beyond_slots_and_queue_are_refused_as_overloaded():
    slow = ScriptedProvider("p")
    for _ in range(3):
        slow.enqueue("m", Scripted(text="x", delay_s=0.2))
    guard = guarded(slow, admission=Admission("m", limit=1, queue=1, wait_s=5), max_attempts=1)

    results = await asyncio.gather(
        *(guard.complete("m", ASK) for _ in range(3)), return_exceptions=True
    )

    refused = [r for r in results if isinstance(r, ProviderError)]
    assert len(refused) == 1
    assert refused[0].code == "overloaded" and refused[0].status_code == 503


async def test_a_queued_call_that_waits_too_long_is_refused():
    slow = ScriptedProvider("p")
    slow.enqueue("m", Scripted(text="x", delay_s=0.3))
    guard = guarded(slow, admission=Admission("m", limit=1, queue=5, wait_s=0.05), max_attempts=1)

    results = await asyncio.gather(
        guard.complete("m", ASK), guard.complete("m", ASK), return_exceptions=True
    )

    assert isinstance(results[1], ProviderError) and results[1].code == "overloaded"
