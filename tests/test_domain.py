"""The domain's own helpers: merging stream deltas, a completion as deltas."""

from __future__ import annotations

from cascade_gateway.domain import (
    Completion,
    Delta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
    merge_deltas,
)


def test_merged_deltas_join_text_and_logprobs_in_order():
    merged = merge_deltas(
        [
            Delta(text="Hel", logprobs=(TokenLogprob("Hel", -0.1),)),
            Delta(text="lo", logprobs=(TokenLogprob("lo", -0.2),)),
        ]
    )

    assert merged.text == "Hello"
    assert merged.logprobs == (TokenLogprob("Hel", -0.1), TokenLogprob("lo", -0.2))


def test_merged_deltas_fold_each_tool_calls_fragments_into_one():
    merged = merge_deltas(
        [
            Delta(tool_calls=(ToolCallDelta(0, id="call_a", name="get_weather"),)),
            Delta(tool_calls=(ToolCallDelta(0, arguments='{"city": '),)),
            Delta(tool_calls=(ToolCallDelta(1, id="call_b", name="get_time", arguments="{}"),)),
            Delta(tool_calls=(ToolCallDelta(0, arguments='"Paris"}'),)),
        ]
    )

    assert merged.tool_calls == (
        ToolCallDelta(0, id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCallDelta(1, id="call_b", name="get_time", arguments="{}"),
    )


def test_merged_deltas_keep_the_finish_reason_and_usage_they_carry():
    merged = merge_deltas([Delta(text="Hi"), Delta(finish_reason="stop", usage=Usage(3, 1))])

    assert (merged.text, merged.finish_reason, merged.usage) == ("Hi", "stop", Usage(3, 1))


def test_merged_deltas_end_the_stream_when_their_last_one_does():
    assert merge_deltas([Delta(text="a"), Delta(text="b", ends_stream=True)]).ends_stream
    assert not merge_deltas([Delta(text="a", ends_stream=True), Delta(text="b")]).ends_stream


def test_a_completion_as_deltas_is_its_content_then_the_closing_delta():
    completion = Completion(
        text="Paris",
        finish_reason="tool_calls",
        usage=Usage(9, 4),
        model="m",
        tool_calls=[ToolCall(id="call_a", name="get_weather", arguments="{}")],
        logprobs=[TokenLogprob("Paris", -0.1)],
    )

    body, closing = completion.as_deltas()

    assert (body.text, body.logprobs, body.finish_reason) == (
        "Paris",
        (TokenLogprob("Paris", -0.1),),
        None,
    )
    assert body.tool_calls == (ToolCallDelta(0, id="call_a", name="get_weather", arguments="{}"),)
    assert (closing.text, closing.finish_reason, closing.usage) == ("", "tool_calls", Usage(9, 4))
    assert body.ends_stream and closing.ends_stream  # nothing more will come


def test_an_empty_completion_as_deltas_is_only_the_closing_delta():
    (closing,) = Completion(
        text="", finish_reason="length", usage=Usage(5, 0), model="m"
    ).as_deltas()

    assert closing.finish_reason == "length" and closing.usage == Usage(5, 0)
