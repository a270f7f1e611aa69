"""The cascade engine, driven by a scripted provider: no HTTP, every path."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from cascade_gateway import tokens
from cascade_gateway.budget.meter import Hold, Meter
from cascade_gateway.cascade.engine import CascadeEngine, Decided, DraftDelta, Finished, Output
from cascade_gateway.config import parse_config
from cascade_gateway.domain import ChatRequest, ToolCall, Usage
from cascade_gateway.errors import ModelNotFound, NoUpstreamAnswered, ProviderError
from cascade_gateway.providers.scripted import Scripted
from cascade_gateway.validation import SignalScore, Validator
from tests.configs import WEATHER_TOOL, config_dict
from tests.conftest import engine_for

GOOD = "The capital of France is Paris."
HEDGE = "I'm not sure, but it might possibly be Lyon, I think. I don't know."


def ask(text: str = "What is the capital of France?", **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kwargs)


def exact(value: float):
    return pytest.approx(value, rel=1e-12, abs=1e-18)


async def test_good_draft_is_accepted_and_strong_model_never_called(engine, scripted, recorder):
    scripted.enqueue("draft-model", Scripted(text=GOOD, usage=Usage(100, 50)))

    result = await engine.complete(engine.resolve("default"), ask(), request_id="r1")

    assert result.completion.text == GOOD
    assert [model for model, _ in scripted.history] == ["draft-model"]
    trace = result.trace
    assert trace.outcome == "accepted"
    assert trace.model_used == "small"
    assert trace.attempts[0].decision == "accepted"
    assert trace.attempts[0].verdict is not None and trace.attempts[0].verdict.accepted


async def test_accepted_draft_cost_and_savings_are_exact(engine, scripted, recorder):
    scripted.enqueue("draft-model", Scripted(text=GOOD, usage=Usage(100, 50)))

    trace = (await engine.complete(engine.resolve("default"), ask(), request_id="r")).trace

    assert trace.cost_usd == exact((100 * 0.15 + 50 * 0.60) / 1e6)
    assert trace.baseline_estimated is True
    assert trace.baseline_cost_usd == exact((100 * 2.50 + 50 * 10.00) / 1e6)
    assert trace.savings_usd == exact((250 + 500 - 15 - 30) / 1e6)
    assert trace.savings_pct == pytest.approx(100 * 705 / 750)


async def test_hedging_draft_escalates_to_the_strong_model(engine, scripted, recorder):
    scripted.enqueue("draft-model", Scripted(text=HEDGE, usage=Usage(100, 20)))
    scripted.enqueue("strong-model", Scripted(text=GOOD, usage=Usage(100, 10)))

    result = await engine.complete(engine.resolve("default"), ask(), request_id="r")

    assert result.completion.text == GOOD
    trace = result.trace
    assert trace.outcome == "escalated"
    assert trace.model_used == "large"
    assert [a.decision for a in trace.attempts] == ["escalated", "served"]
    assert trace.rejection_reason is not None


async def test_escalated_request_pays_for_both_and_saves_negative_draft_cost(
    engine, scripted, recorder
):
    scripted.enqueue("draft-model", Scripted(text=HEDGE, usage=Usage(100, 20)))
    scripted.enqueue("strong-model", Scripted(text=GOOD, usage=Usage(100, 10)))

    trace = (await engine.complete(engine.resolve("default"), ask(), request_id="r")).trace

    draft = (100 * 0.15 + 20 * 0.60) / 1e6
    strong = (100 * 2.50 + 10 * 10.00) / 1e6
    assert trace.draft_cost_usd == exact(draft)
    assert trace.verifier_cost_usd == exact(strong)
    assert trace.cost_usd == exact(draft + strong)
    assert trace.baseline_estimated is False
    assert trace.baseline_cost_usd == exact(strong)
    assert trace.savings_usd == exact(-draft)


async def test_truncated_draft_escalates(engine, scripted, recorder):
    scripted.enqueue(
        "draft-model", Scripted(text="The capital of France is", finish_reason="length")
    )
    scripted.enqueue("strong-model", GOOD)

    trace = (await engine.complete(engine.resolve("default"), ask(), request_id="r")).trace

    assert trace.outcome == "escalated"
    assert "truncation" in (trace.rejection_reason or "")


async def test_three_tiers_escalate_one_step_at_a_time(engine, scripted, recorder):
    scripted.enqueue("draft-model", HEDGE)
    scripted.enqueue("medium-model", Scripted(text="Partial", finish_reason="length"))
    scripted.enqueue("strong-model", GOOD)

    trace = (await engine.complete(engine.resolve("three"), ask(), request_id="r")).trace

    assert [a.model for a in trace.attempts] == ["small", "medium", "large"]
    assert [a.decision for a in trace.attempts] == ["escalated", "escalated", "served"]
    assert trace.model_used == "large"


async def test_middle_tier_can_accept_in_a_three_tier_cascade(engine, scripted, recorder):
    scripted.enqueue("draft-model", HEDGE)
    scripted.enqueue("medium-model", GOOD)

    trace = (await engine.complete(engine.resolve("three"), ask(), request_id="r")).trace

    assert trace.model_used == "medium"
    assert trace.outcome == "escalated"
    assert [model for model, _ in scripted.history] == ["draft-model", "medium-model"]


async def test_failed_draft_escalates_instead_of_failing(engine, scripted, recorder):
    scripted.enqueue("draft-model", ProviderError("overloaded", provider="local", status=503))
    scripted.enqueue("strong-model", GOOD)

    trace = (await engine.complete(engine.resolve("default"), ask(), request_id="r")).trace

    assert trace.model_used == "large"
    assert trace.attempts[0].decision == "failed"
    assert "overloaded" in (trace.attempts[0].error or "")


async def test_final_tier_failure_raises_and_is_still_recorded(engine, scripted, recorder):
    scripted.enqueue("draft-model", HEDGE)
    scripted.enqueue("strong-model", ProviderError("down", provider="local", status=500))

    with pytest.raises(NoUpstreamAnswered) as caught:
        await engine.complete(engine.resolve("default"), ask(), request_id="lost")

    assert caught.value.status_code == 502 and "down" in caught.value.message

    trace = recorder.get("lost")
    assert trace is not None
    assert trace.outcome == "error"
    assert trace.cost_usd > 0  # the draft was paid for
    assert trace.savings_usd == 0


async def test_plain_model_name_bypasses_the_cascade(engine, scripted, recorder):
    scripted.enqueue("strong-model", HEDGE)

    trace = (await engine.complete(engine.resolve("large"), ask(), request_id="r")).trace

    assert trace.outcome == "direct"
    assert trace.attempts[0].verdict is None
    assert trace.savings_usd == 0


async def test_unknown_model_is_model_not_found(engine):
    with pytest.raises(ModelNotFound):
        engine.resolve("gpt-nonexistent")


async def test_draft_is_asked_for_logprobs_but_the_final_tier_is_not(engine, scripted, recorder):
    scripted.enqueue("draft-model", HEDGE)
    scripted.enqueue("strong-model", GOOD)

    await engine.complete(engine.resolve("default"), ask(), request_id="r")

    (_, draft_request), (_, strong_request) = scripted.history
    assert draft_request.logprobs is True
    assert strong_request.logprobs is False


async def test_a_draft_is_not_asked_for_logprobs_when_no_signal_reads_them(scripted, recorder):
    raw = config_dict(
        default={"tiers": ["small", "large"], "signals": {"logprob": {"enabled": False}}}
    )
    engine = engine_for(parse_config(raw), scripted, recorder)
    scripted.enqueue("draft-model", GOOD)

    await engine.complete(engine.resolve("default"), ask(), request_id="r")

    ((_, draft_request),) = scripted.history
    assert draft_request.logprobs is False


class ClockedPrior:
    """A query-only signal that notes when it was scored."""

    name = "prior"

    def __init__(self) -> None:
        self.scored_at: list[float] = []

    def score_query(self, request: ChatRequest) -> SignalScore:
        self.scored_at.append(time.perf_counter())
        return SignalScore.of_soft(self.name, 1.0, 1.0, "easy")

    def __call__(self, request: ChatRequest, completion) -> SignalScore:
        return self.score_query(request)


async def test_the_query_is_scored_while_the_draft_is_in_flight(engine, scripted):
    prior = ClockedPrior()
    route = replace(engine.resolve("default"), validator=Validator([prior], 0.5))
    scripted.enqueue("draft-model", Scripted(text=GOOD, delay_s=0.2))

    await engine.complete(route, ask(), request_id="r")
    answered_at = time.perf_counter()

    (scored_at,) = prior.scored_at
    assert answered_at - scored_at >= 0.15


async def test_a_streamed_query_is_scored_while_the_draft_is_in_flight(engine, scripted):
    prior = ClockedPrior()
    route = replace(engine.resolve("default"), validator=Validator([prior], 0.5))
    scripted.enqueue("draft-model", Scripted(text=GOOD, delay_s=0.2))

    events = [event async for event in engine.stream(route, ask(), request_id="r")]
    answered_at = time.perf_counter()

    assert output_text(events) == GOOD
    (scored_at,) = prior.scored_at
    assert answered_at - scored_at >= 0.15


async def test_validator_sees_the_requested_tools(engine, scripted, recorder):
    bad_call = ToolCall(id="call_1", name="get_wether", arguments='{"city": "Paris"}')
    scripted.enqueue("draft-model", Scripted(tool_calls=[bad_call], finish_reason="tool_calls"))
    scripted.enqueue(
        "strong-model",
        Scripted(
            tool_calls=[ToolCall(id="call_2", name="get_weather", arguments='{"city": "Paris"}')],
            finish_reason="tool_calls",
        ),
    )

    result = await engine.complete(
        engine.resolve("default"), ask(tools=[WEATHER_TOOL]), request_id="r"
    )

    assert result.trace.outcome == "escalated"
    assert result.completion.tool_calls[0].name == "get_weather"


async def test_every_request_is_recorded_exactly_once(engine, scripted, recorder):
    scripted.enqueue("draft-model", GOOD)
    scripted.enqueue("draft-model", HEDGE)
    scripted.enqueue("strong-model", GOOD)

    for rid in ("a", "b"):
        await engine.complete(engine.resolve("default"), ask(), request_id=rid)

    assert [t.outcome for t in recorder.traces] == ["accepted", "escalated"]


async def collect(
    engine: CascadeEngine,
    route: str,
    provisional: bool = False,
    rid: str = "s",
    request: ChatRequest | None = None,
):
    events = []
    async for event in engine.stream(
        engine.resolve(route), request or ask(), request_id=rid, provisional=provisional
    ):
        events.append(event)
    return events


def output_text(events) -> str:
    return "".join(e.delta.text for e in events if isinstance(e, Output))


async def test_stream_releases_an_accepted_draft_only_after_validation(engine, scripted, recorder):
    scripted.enqueue("draft-model", GOOD)

    events = await collect(engine, "default")

    kinds = [type(e).__name__ for e in events]
    assert kinds.index("Decided") < kinds.index("Output")
    assert output_text(events) == GOOD
    assert isinstance(events[-1], Finished)
    assert events[-1].trace.outcome == "accepted"


async def test_stream_releases_an_accepted_draft_in_one_delta_then_the_closing_one(
    engine, scripted, recorder
):
    scripted.enqueue("draft-model", GOOD)

    outputs = [e for e in await collect(engine, "default") if isinstance(e, Output)]

    assert [o.delta.text for o in outputs] == [GOOD, ""]
    assert outputs[-1].delta.finish_reason == "stop"


async def test_stream_fetches_a_held_draft_whole_and_streams_the_final_tier(
    engine, scripted, recorder
):
    scripted.enqueue("draft-model", HEDGE)
    scripted.enqueue("strong-model", GOOD)

    events = await collect(engine, "default")

    assert [model for model, _ in scripted.history] == ["draft-model", "strong-model"]
    assert scripted.closed_streams == 1  # only the final tier's answer was streamed
    assert output_text(events) == GOOD


async def test_stream_releases_a_draft_fetched_whole_with_its_tool_calls_and_usage(
    engine, scripted, recorder
):
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    scripted.enqueue(
        "draft-model", Scripted(tool_calls=[call], finish_reason="tool_calls", usage=Usage(40, 12))
    )

    events = await collect(engine, "default", request=ask(tools=[WEATHER_TOOL]))

    outputs = [e for e in events if isinstance(e, Output)]
    assert all(o.released for o in outputs)
    fragment = outputs[0].delta.tool_calls[0]
    assert (fragment.id, fragment.name, fragment.arguments) == (call.id, call.name, call.arguments)
    assert outputs[-1].delta.finish_reason == "tool_calls"
    assert events[-1].trace.outcome == "accepted"
    assert events[-1].completion.usage == Usage(40, 12)


async def test_stream_cancelled_while_its_draft_is_fetched_whole_bills_the_prompt(
    engine, scripted, recorder
):
    scripted.enqueue("draft-model", Scripted(text=GOOD, delay_s=5))
    task = asyncio.create_task(collect(engine, "default", rid="left"))
    await asyncio.sleep(0.05)
    assert [model for model, _ in scripted.history] == ["draft-model"]  # now fetching it

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    trace = recorder.get("left")
    assert trace is not None and trace.outcome == "cancelled"
    draft = trace.attempts[0]
    assert draft.decision == "cancelled" and draft.usage_counted is True
    assert draft.input_tokens == tokens.count_messages(ask().messages, None)
    assert draft.output_tokens == 0 and draft.cost_usd > 0


async def test_stream_never_sends_text_of_a_rejected_draft(engine, scripted, recorder):
    scripted.enqueue("draft-model", HEDGE)
    scripted.enqueue("strong-model", GOOD)

    events = await collect(engine, "default")

    assert output_text(events) == GOOD
    assert all(e.tier == 1 for e in events if isinstance(e, Output))
    assert not any(isinstance(e, DraftDelta) for e in events)


async def test_provisional_stream_shows_draft_tokens_then_the_decision(engine, scripted, recorder):
    scripted.enqueue("draft-model", HEDGE)
    scripted.enqueue("strong-model", GOOD)

    events = await collect(engine, "default", provisional=True)

    drafts = "".join(e.delta.text for e in events if isinstance(e, DraftDelta))
    assert drafts == HEDGE
    assert scripted.closed_streams == 2  # the draft too was streamed, to be shown
    decided = [e for e in events if isinstance(e, Decided)]
    assert len(decided) == 1 and decided[0].attempt.decision == "escalated"
    assert output_text(events) == GOOD


async def test_stream_trace_records_time_to_first_token(engine, scripted, recorder):
    scripted.enqueue("draft-model", GOOD)

    events = await collect(engine, "default")

    trace = events[-1].trace
    assert trace.streamed is True
    assert trace.ttft_ms is not None and trace.ttft_ms <= trace.total_ms
    assert trace.attempts[0].ttft_ms is not None


async def test_client_leaving_mid_stream_still_bills_the_tokens_produced(
    engine, scripted, recorder
):
    scripted.enqueue("strong-model", "one two three four five six seven eight")

    events = engine.stream(engine.resolve("large"), ask(), request_id="gone")
    seen = [await anext(events) for _ in range(3)]
    await events.aclose()

    assert "".join(e.delta.text for e in seen) == "one two three "
    trace = recorder.get("gone")
    assert trace is not None and trace.outcome == "cancelled"
    attempt = trace.attempts[0]
    assert attempt.usage_counted is True
    assert attempt.output_tokens == tokens.count_text("one two three ")
    assert attempt.cost_usd > 0
    assert scripted.closed_streams == 1


async def test_stream_broken_mid_way_on_the_final_tier_raises_and_bills(engine, scripted, recorder):
    scripted.enqueue(
        "strong-model",
        Scripted(
            text="one two three four",
            fail_after=2,
            error=ProviderError("connection reset", provider="local"),
        ),
    )

    with pytest.raises(ProviderError):
        await collect(engine, "large", rid="broken")

    trace = recorder.get("broken")
    assert trace is not None and trace.outcome == "error"
    assert trace.attempts[0].output_tokens == tokens.count_text("one two ")
    assert trace.attempts[0].usage_counted is True


async def test_closing_the_stream_after_it_finished_keeps_the_outcome(engine, scripted, recorder):
    scripted.enqueue("draft-model", GOOD)

    events = engine.stream(engine.resolve("default"), ask(), request_id="done")
    async for event in events:
        if isinstance(event, Finished):
            break
    await events.aclose()

    assert recorder.get("done").outcome == "accepted"


class SlowSettlingMeter(Meter):
    """Settles as a shared counter store would: over a round trip that takes a while."""

    def __init__(self) -> None:
        self.settling = asyncio.Event()
        self.settled: list[float] = []

    async def settle(self, hold: Hold, cost_usd: float) -> None:
        self.settling.set()
        await asyncio.sleep(0.05)
        self.settled.append(cost_usd)


async def test_a_request_cancelled_while_settling_its_budget_still_settles(engine, scripted):
    scripted.enqueue("draft-model", Scripted(text=GOOD, usage=Usage(100, 50)))
    meter = SlowSettlingMeter()
    request = engine.complete(engine.resolve("default"), ask(), request_id="r", meter=meter)
    task = asyncio.create_task(request)

    await meter.settling.wait()
    task.cancel()  # as a client leaving a stream, or a shutdown, cancels it: natively
    with pytest.raises(asyncio.CancelledError):
        await task

    assert meter.settled == [exact((100 * 0.15 + 50 * 0.60) / 1e6)]
