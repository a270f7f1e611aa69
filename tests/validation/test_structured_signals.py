"""JSON mode and tool calls, checked against the schemas the request gave."""

from __future__ import annotations

import pytest

from cascade_gateway.domain import ToolCall
from cascade_gateway.validation.signals import JsonFormat, ToolCalls
from cascade_gateway.validation.signals.structured import _compiled, schema_problem
from tests.configs import WEATHER_TOOL

JSON_OBJECT = {"type": "json_object"}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}


def call(name: str = "get_weather", arguments: str = '{"city": "Paris"}') -> ToolCall:
    return ToolCall(id="call_1", name=name, arguments=arguments)


def test_json_does_not_apply_without_response_format(ask, answer):
    assert JsonFormat()(ask(), answer("not json")) is None


def test_json_does_not_apply_to_text_response_format(ask, answer):
    assert JsonFormat()(ask(response_format={"type": "text"}), answer("not json")) is None


def test_json_object_passes_an_object(ask, answer):
    score = JsonFormat()(ask(response_format=JSON_OBJECT), answer('{"city": "Paris"}'))

    assert (score.gate, score.passed) == (True, True)


def test_json_object_tolerates_surrounding_whitespace(ask, answer):
    score = JsonFormat()(ask(response_format=JSON_OBJECT), answer('\n  {"city": "Paris"}\n'))

    assert score.passed is True


def test_json_fails_text_that_does_not_parse(ask, answer):
    score = JsonFormat()(ask(response_format=JSON_OBJECT), answer("The capital is Paris."))

    assert score.passed is False
    assert score.detail == "invalid JSON: Expecting value at 1:1"


def test_json_fails_a_fenced_answer(ask, answer):
    fenced = '```json\n{"city": "Paris"}\n```'

    score = JsonFormat()(ask(response_format=JSON_OBJECT), answer(fenced))

    assert score.passed is False
    assert score.detail == "JSON wrapped in a ``` fence"


def test_json_object_fails_an_array(ask, answer):
    score = JsonFormat()(ask(response_format=JSON_OBJECT), answer('["Paris"]'))

    assert score.passed is False
    assert score.detail == "expected a JSON object, got array"


def test_json_schema_passes_a_conforming_answer(ask, answer):
    score = JsonFormat()(ask(response_format=JSON_SCHEMA), answer('{"name": "Ada", "age": 36}'))

    assert score.passed is True


def test_json_schema_fails_a_missing_required_property(ask, answer):
    score = JsonFormat()(ask(response_format=JSON_SCHEMA), answer('{"name": "Ada"}'))

    assert score.passed is False
    assert score.detail == "schema: 'age' is a required property at $"


def test_json_schema_fails_a_wrong_type(ask, answer):
    score = JsonFormat()(
        ask(response_format=JSON_SCHEMA), answer('{"name": "Ada", "age": "thirty-six"}')
    )

    assert score.passed is False
    assert score.detail == "schema: 'thirty-six' is not of type 'integer' at $.age"


def test_json_schema_without_a_schema_only_parses(ask, answer):
    response_format = {"type": "json_schema", "json_schema": {"name": "anything"}}

    assert JsonFormat()(ask(response_format=response_format), answer("[1, 2]")).passed is True


def test_json_does_not_apply_when_the_model_called_a_tool(ask, answer):
    request = ask(response_format=JSON_OBJECT, tools=[WEATHER_TOOL])

    assert JsonFormat()(request, answer("", tool_calls=[call()])) is None


def test_schema_is_compiled_once_for_equal_schemas():
    _compiled.cache_clear()

    schema_problem({"type": "object", "required": ["a"]}, {})
    schema_problem({"required": ["a"], "type": "object"}, {"a": 1})

    assert _compiled.cache_info().misses == 1


def test_invalid_schema_does_not_blame_the_answer():
    assert schema_problem({"type": "no-such-type"}, {"a": 1}) is None


def test_schema_problem_is_clipped():
    problem = schema_problem({"maxLength": 1}, "x" * 1000)

    assert problem is not None
    assert len(problem) == 160


def test_tool_calls_do_not_apply_without_calls_or_a_required_call(ask, answer):
    assert ToolCalls()(ask(tools=[WEATHER_TOOL]), answer("It is sunny.")) is None


def test_tool_calls_pass_a_valid_call(ask, answer):
    score = ToolCalls()(ask(tools=[WEATHER_TOOL]), answer("", tool_calls=[call()]))

    assert (score.gate, score.passed) == (True, True)


def test_tool_calls_fail_an_unknown_tool(ask, answer):
    score = ToolCalls()(ask(tools=[WEATHER_TOOL]), answer("", tool_calls=[call("get_wether")]))

    assert score.passed is False
    assert score.detail == "unknown tool 'get_wether' (offered: get_weather)"


def test_tool_calls_fail_a_call_when_no_tools_were_offered(ask, answer):
    score = ToolCalls()(ask(), answer("", tool_calls=[call()]))

    assert score.detail == "unknown tool 'get_weather' (offered: none)"


def test_tool_calls_fail_arguments_that_are_not_json(ask, answer):
    bad = call(arguments='{"city": "Par')

    score = ToolCalls()(ask(tools=[WEATHER_TOOL]), answer("", tool_calls=[bad]))

    assert score.passed is False
    assert score.detail.startswith("get_weather arguments: invalid JSON: ")


def test_tool_calls_fail_arguments_that_are_not_an_object(ask, answer):
    score = ToolCalls()(
        ask(tools=[WEATHER_TOOL]), answer("", tool_calls=[call(arguments='"Paris"')])
    )

    assert score.detail == "get_weather arguments: expected a JSON object, got string"


def test_tool_calls_fail_arguments_that_break_the_schema(ask, answer):
    score = ToolCalls()(ask(tools=[WEATHER_TOOL]), answer("", tool_calls=[call(arguments="{}")]))

    assert score.passed is False
    assert score.detail == "get_weather arguments: 'city' is a required property at $"


def test_tool_calls_check_every_call(ask, answer):
    calls = [call(), call("get_time")]

    assert ToolCalls()(ask(tools=[WEATHER_TOOL]), answer("", tool_calls=calls)).passed is False


def test_tool_without_parameters_takes_any_object(ask, answer):
    tools = [{"type": "function", "function": {"name": "ping"}}]

    score = ToolCalls()(ask(tools=tools), answer("", tool_calls=[call("ping", '{"x": 1}')]))

    assert score.passed is True


@pytest.mark.parametrize(
    ("tool_choice", "detail"),
    [
        ("required", "tool_choice requires a call; none"),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            "tool_choice requires a call to get_weather; none",
        ),
    ],
)
def test_tool_calls_fail_a_required_call_that_never_came(ask, answer, tool_choice, detail):
    score = ToolCalls()(ask(tools=[WEATHER_TOOL], tool_choice=tool_choice), answer("It is sunny."))

    assert score.passed is False
    assert score.detail == detail


def test_tool_calls_fail_a_call_to_another_tool_than_the_named_one(ask, answer):
    tools = [WEATHER_TOOL, {"type": "function", "function": {"name": "get_time"}}]
    choice = {"type": "function", "function": {"name": "get_weather"}}

    score = ToolCalls()(
        ask(tools=tools, tool_choice=choice), answer("", tool_calls=[call("get_time", "{}")])
    )

    assert score.detail == "tool_choice names get_weather but the model called get_time"


def test_tool_calls_fail_a_call_when_tool_choice_is_none(ask, answer):
    score = ToolCalls()(
        ask(tools=[WEATHER_TOOL], tool_choice="none"), answer("", tool_calls=[call()])
    )

    assert score.detail == "tool_choice=none but the model called get_weather"


def test_tool_calls_assume_no_requirement_from_an_unknown_tool_choice(ask, answer):
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}

    assert (
        ToolCalls()(ask(tools=[WEATHER_TOOL], tool_choice=choice), answer("It is sunny.")) is None
    )
