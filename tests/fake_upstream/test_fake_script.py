"""Rules, replies and faults: validation, plain-data round trips, script files, matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade_gateway.fake_upstream import Fault, Reply, Rule, Script, load_script
from cascade_gateway.fake_upstream.answer import split_pieces
from cascade_gateway.fake_upstream.script import ReceivedRequest


def test_a_rule_round_trips_through_plain_data():
    rule = Rule(
        model="draft",
        prompt_contains="JSON",
        protocol="openai",
        times=2,
        reply=Reply(
            text="hi",
            tool_calls=[("f", '{"a": 1}')],
            usage=(3, 4),
            logprobs=[-0.1],
            per_chunk_s=0.01,
        ),
    )

    assert Rule.from_dict(rule.to_dict()) == rule


def test_plain_data_leaves_out_defaults():
    rule = Rule(model="y", fault=Fault(kind="hang"))

    assert rule.to_dict() == {"model": "y", "fault": {"kind": "hang"}}


def test_tool_call_arguments_given_as_a_mapping_are_dumped_to_json():
    reply = Reply.from_dict({"tool_calls": [{"name": "f", "arguments": {"city": "Paris"}}]})

    assert reply.tool_calls == (("f", '{"city": "Paris"}'),)


def test_a_yaml_script_file_loads_its_rules(tmp_path: Path):
    path = tmp_path / "script.yaml"
    path.write_text(
        "rules:\n"
        "  - model: draft\n"
        "    prompt_contains: capital\n"
        "    reply: {text: Paris.}\n"
        "  - model: strong\n"
        "    times: 1\n"
        "    fault: {status: 429, retry_after: 2}\n"
    )

    assert load_script(path) == [
        Rule(model="draft", prompt_contains="capital", reply=Reply(text="Paris.")),
        Rule(model="strong", times=1, fault=Fault(status=429, retry_after=2)),
    ]


def test_an_unknown_field_is_refused():
    with pytest.raises(ValueError, match="unknown Reply field"):
        Rule.from_dict({"reply": {"txt": "typo"}})


def test_a_rule_cannot_both_reply_and_fail():
    with pytest.raises(ValueError, match="not both"):
        Rule(reply=Reply(text="x"), fault=Fault())


def test_an_unknown_fault_kind_is_refused():
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="explode")  # type: ignore[arg-type]


def test_matching_uses_up_times_then_falls_back_to_older_rules():
    always, once = Rule(model="m", reply=Reply(text="a")), Rule(model="m", times=1)
    script = Script([always, once])

    assert [script.match("openai", "m", "") for _ in range(2)] == [once, always]
    assert script.rules == [always]


def test_finish_reason_defaults_to_what_the_content_implies():
    assert Reply(text="x").resolved_finish_reason == "stop"
    assert Reply(tool_calls=[("f", "{}")]).resolved_finish_reason == "tool_calls"


def test_pieces_keep_whitespace_so_they_join_back_into_the_text():
    text = '  Hello, wörld!\n{"a": 1} '

    assert "".join(split_pieces(text)) == text
    assert split_pieces("Hi, Paris.") == ["Hi", ",", " Paris", "."]


def a_request(model: str) -> ReceivedRequest:
    return ReceivedRequest("/v1/chat/completions", "openai", model, {}, {}, stream=False)


def test_the_history_keeps_the_latest_requests_up_to_its_bound():
    script = Script(history=2)
    for model in ("a", "b", "c"):
        script.record(a_request(model))

    assert [r.model for r in script.requests] == ["b", "c"]


def test_a_history_of_zero_keeps_nothing():
    script = Script(history=0)
    script.record(a_request("a"))

    assert script.requests == []
