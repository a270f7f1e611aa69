"""Signals for machine-read answers: JSON mode and tool calls, checked against their schemas."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator as SchemaValidator
from jsonschema.validators import validator_for

from cascade_gateway.domain import ChatRequest, Completion
from cascade_gateway.validation.verdict import SignalScore

# Schema error messages quote the offending instance, which can be the whole answer.
_MAX_DETAIL = 160


@lru_cache(maxsize=512)
def _compiled(schema_json: str) -> SchemaValidator | str:
    """A validator for the schema (Draft 2020-12 unless it names its `$schema`), or why the
    schema itself is invalid. Keyed by canonical JSON: each request parses its own copy of
    the schema, so object identity would never hit the cache."""
    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        return f"invalid schema: {exc.message}"
    return cls(schema)


def schema_problem(schema: Mapping[str, Any] | bool, instance: Any) -> str | None:
    """Why `instance` does not conform to `schema`, or None when it does.

    An invalid schema is the client's mistake, not the draft's: it is reported as None (the
    draft is not blamed), and the upstream will have said so too.
    """
    validator = _compiled(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    if isinstance(validator, str):
        return None
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    return _clip(f"{error.message} at {error.json_path}")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _parse(text: str) -> tuple[Any, str | None]:
    """The parsed JSON value, or the reason it does not parse."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at {exc.lineno}:{exc.colno}"


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


@dataclass(frozen=True, slots=True)
class JsonFormat:
    """Gate: with `response_format` json_object or json_schema, the text must be that JSON.

    The text must be raw JSON (surrounding whitespace allowed), as OpenAI's JSON mode returns
    it. A ```json fence fails: the gateway serves the draft verbatim, and the client will call
    `json.loads` on it. json_object requires an object; json_schema validates against
    `response_format["json_schema"]["schema"]` when given.
    """

    name: str = field(default="json", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        response_format = request.response_format or {}
        kind = response_format.get("type")
        if kind not in ("json_object", "json_schema"):
            return None
        if completion.tool_calls and not completion.text.strip():
            return None  # The model chose to call a tool; its arguments are checked elsewhere.
        if completion.text.lstrip().startswith("```"):
            return SignalScore.of_gate(self.name, False, "JSON wrapped in a ``` fence")
        value, problem = _parse(completion.text)
        if problem is not None:
            return SignalScore.of_gate(self.name, False, problem)
        if kind == "json_object":
            if not isinstance(value, dict):
                detail = f"expected a JSON object, got {_type_name(value)}"
                return SignalScore.of_gate(self.name, False, detail)
            return SignalScore.of_gate(self.name, True, "valid JSON object")
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is None:
            return SignalScore.of_gate(self.name, True, "valid JSON (no schema given)")
        problem = schema_problem(schema, value)
        if problem is not None:
            return SignalScore.of_gate(self.name, False, f"schema: {problem}")
        return SignalScore.of_gate(self.name, True, "valid against the schema")


def _required_tool(tool_choice: str | dict[str, Any] | None) -> str | bool:
    """The function tool_choice names, True when it requires any call, False otherwise."""
    if tool_choice == "required":
        return True
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        return (tool_choice.get("function") or {}).get("name") or True
    return False


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Gate: tool calls name offered tools, with JSON-object arguments valid against the
    tool's `parameters`, and honour `tool_choice` ("required", "none" or a named function).

    Applies when the answer calls a tool, or when the request offers tools and requires a call.
    """

    name: str = field(default="tool_calls", init=False)

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        calls = completion.tool_calls
        required = _required_tool(request.tool_choice) if request.tools else False
        if not calls:
            if required is False:
                return None
            wanted = "a call" if required is True else f"a call to {required}"
            return SignalScore.of_gate(self.name, False, f"tool_choice requires {wanted}; none")
        if request.tool_choice == "none":
            detail = f"tool_choice=none but the model called {calls[0].name}"
            return SignalScore.of_gate(self.name, False, detail)
        for call in calls:
            problem = self._problem(request, call.name, call.arguments, required)
            if problem is not None:
                return SignalScore.of_gate(self.name, False, problem)
        return SignalScore.of_gate(self.name, True, f"{len(calls)} valid call(s)")

    @staticmethod
    def _problem(
        request: ChatRequest, name: str, arguments: str, required: str | bool
    ) -> str | None:
        if isinstance(required, str) and name != required:
            return f"tool_choice names {required} but the model called {name}"
        function = request.tool_named(name)
        if function is None:
            offered = ", ".join(
                (t.get("function") or {}).get("name", "?") for t in request.tools or ()
            )
            return f"unknown tool {name!r} (offered: {offered or 'none'})"
        value, problem = _parse(arguments)
        if problem is not None:
            return f"{name} arguments: {problem}"
        if not isinstance(value, dict):
            return f"{name} arguments: expected a JSON object, got {_type_name(value)}"
        parameters = function.get("parameters")
        if parameters is None:
            return None
        problem = schema_problem(parameters, value)
        return None if problem is None else f"{name} arguments: {problem}"
