"""What the fake upstream says: rules that pick a reply or a fault, and the requests it received.

Matching policy: the most recently added rule that matches a request wins, so a test can override
a default set up earlier; a rule added with `times=N` answers N requests and is then dropped,
letting later requests fall through to older rules. A rule matches when each of `model`,
`protocol` and `prompt_contains` is unset or agrees with the request (`prompt_contains` is a
case-sensitive substring of the last user message's text). When no rule matches, the answer is
`Reply(text=f"Fake answer from {model}.")`.

Example:
    script = Script([Rule(model="draft", reply=Reply(text="Paris."))])
    script.add(Rule(model="draft", times=1, fault=Fault(status=429, retry_after=2)))
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

# Requests kept in the history; older ones are forgotten.
HISTORY_LIMIT = 10_000

ProtocolName = Literal["openai", "anthropic"]
FaultKind = Literal["http", "hang", "broken_stream", "malformed_stream"]


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer.

    `tool_calls` are `(name, arguments)` pairs, arguments as JSON text;
    `finish_reason` uses OpenAI's words and defaults to "tool_calls" or "stop"; `usage` is
    `(prompt_tokens, completion_tokens)` and overrides the counted usage; `logprobs` gives one
    logprob per reply token (tokens past the list get a near-0 default); `omit_usage` (OpenAI
    only) leaves usage out of the body and the stream; `latency_s` delays the response and
    `per_chunk_s` spaces stream frames.
    """

    text: str = ""
    tool_calls: Sequence[tuple[str, str]] = ()
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
    logprobs: Sequence[float] | None = None
    omit_usage: bool = False
    latency_s: float = 0.0
    per_chunk_s: float = 0.0

    def __post_init__(self) -> None:
        # Normalize to tuples so replies compare and serialize the same way whether written in
        # Python (lists) or loaded from YAML.
        calls = tuple((name, arguments) for name, arguments in self.tool_calls)
        if not all(isinstance(part, str) for call in calls for part in call):
            raise TypeError("tool calls are (name, arguments) pairs of strings (JSON arguments)")
        object.__setattr__(self, "tool_calls", calls)
        if self.usage is not None:
            object.__setattr__(self, "usage", (int(self.usage[0]), int(self.usage[1])))
        if self.logprobs is not None:
            object.__setattr__(self, "logprobs", tuple(float(lp) for lp in self.logprobs))

    @property
    def resolved_finish_reason(self) -> str:
        """The finish reason to report: the scripted one, else what the content implies."""
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (only fields that differ from the defaults)."""
        data = _non_defaults(self)
        if "tool_calls" in data:
            data["tool_calls"] = [{"name": n, "arguments": a} for n, a in self.tool_calls]
        for key in ("usage", "logprobs"):
            if key in data:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reply:
        """Inverse of `to_dict`; a tool call may be a `{name, arguments}` mapping (arguments as
        JSON text or a mapping) or a pair."""
        values = _known_fields(cls, data)
        if "tool_calls" in values:
            values["tool_calls"] = [_tool_call(call) for call in values["tool_calls"]]
        if values.get("usage") is not None:
            values["usage"] = tuple(values["usage"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure instead of an answer.

    kind "http": an error response with `status` in the protocol's error shape (plus a
    `retry-after` header when `retry_after` is set); "hang": never answer, until the client gives
    up (a server stopping meanwhile waits a second, then drops it); "broken_stream": send
    `after_chunks` frames (half the body when not streaming), then cut the connection;
    "malformed_stream": send `after_chunks` frames, then one whose data is not JSON (a truncated
    body when not streaming).
    """

    status: int = 500
    kind: FaultKind = "http"
    message: str | None = None
    retry_after: float | None = None
    after_chunks: int = 1

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {get_args(FaultKind)}")
        if self.kind == "http" and not 400 <= self.status <= 599:
            raise ValueError(f"an http fault needs a 4xx or 5xx status, not {self.status}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (only fields that differ from the defaults)."""
        return _non_defaults(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Inverse of `to_dict`."""
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True, slots=True)
class Rule:
    """When a request matches, answer with `reply` or fail with `fault` (neither: the default
    reply); `times` limits how many requests the rule answers."""

    model: str | None = None
    prompt_contains: str | None = None
    protocol: ProtocolName | None = None
    reply: Reply | None = None
    fault: Fault | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        if self.reply is not None and self.fault is not None:
            raise ValueError("a rule answers with a reply or a fault, not both")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be at least 1, not {self.times}")
        if self.protocol not in (None, *get_args(ProtocolName)):
            raise ValueError(f"unknown protocol {self.protocol!r}")

    def matches(self, protocol: str, model: str, prompt: str) -> bool:
        """Whether this rule applies to a request."""
        return (
            (self.model is None or self.model == model)
            and (self.protocol is None or self.protocol == protocol)
            and (self.prompt_contains is None or self.prompt_contains in prompt)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as accepted by `POST /_fake/rules` and script files."""
        data = _non_defaults(self)
        for key in ("reply", "fault"):
            if key in data:
                data[key] = data[key].to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """Inverse of `to_dict`; unknown keys are an error, so typos in scripts fail loudly."""
        values = _known_fields(cls, data)
        if values.get("reply") is not None:
            values["reply"] = Reply.from_dict(values["reply"])
        if values.get("fault") is not None:
            values["fault"] = Fault.from_dict(values["fault"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One API request the fake received; `prompt` is the text `prompt_contains` matched."""

    path: str
    protocol: ProtocolName
    model: str | None
    json: dict[str, Any]
    headers: dict[str, str]
    stream: bool
    prompt: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as served by `GET /_fake/requests`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Entry:
    rule: Rule
    remaining: int | None


class Script:
    """The rule book and request history, shared by the server thread and the test driving it."""

    def __init__(self, rules: Iterable[Rule] = (), history: int = HISTORY_LIMIT) -> None:
        self._entries: list[_Entry] = [_Entry(rule, rule.times) for rule in rules]
        # Bounded so a long run does not grow memory without limit; a benchmark keeps none
        # (`history=0`): 10,000 requests kept made the fake's full garbage collections take
        # 20-35 ms every few seconds, a stall for every request in flight.
        self._history: deque[ReceivedRequest] = deque(maxlen=history)
        self._lock = threading.Lock()

    def add(self, *rules: Rule) -> None:
        """Append rules; later ones take precedence."""
        with self._lock:
            self._entries.extend(_Entry(rule, rule.times) for rule in rules)

    @property
    def rules(self) -> list[Rule]:
        """The live rules, oldest first (expired `times` rules are gone)."""
        with self._lock:
            return [entry.rule for entry in self._entries]

    def reset_rules(self) -> None:
        """Forget every rule."""
        with self._lock:
            self._entries.clear()

    def match(self, protocol: str, model: str, prompt: str) -> Rule | None:
        """The rule answering this request, using up one of its `times`."""
        with self._lock:
            for position in range(len(self._entries) - 1, -1, -1):
                entry = self._entries[position]
                if not entry.rule.matches(protocol, model, prompt):
                    continue
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        del self._entries[position]
                return entry.rule
        return None

    def models(self) -> list[str]:
        """Model names the rules mention, in first-mentioned order."""
        with self._lock:
            names = (entry.rule.model for entry in self._entries)
            return list(dict.fromkeys(name for name in names if name is not None))

    def record(self, request: ReceivedRequest) -> None:
        """Remember a received request."""
        with self._lock:
            self._history.append(request)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Received requests, oldest first (a copy; the last `history` only)."""
        with self._lock:
            return list(self._history)

    def clear_requests(self) -> None:
        """Forget the request history."""
        with self._lock:
            self._history.clear()


def default_reply(model: str) -> Reply:
    """The answer when no rule matches."""
    return Reply(text=f"Fake answer from {model}.")


def load_script(path: str | Path) -> list[Rule]:
    """Rules from a YAML file shaped `{rules: [{model, prompt_contains, reply: {text}}, ...]}`."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    return rules_from_data(data)


def rules_from_data(data: Any) -> list[Rule]:
    """Rules from a list of rule mappings, or from `{"rules": [...]}`."""
    if isinstance(data, Mapping):
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise ValueError("expected a list of rules or a mapping with a 'rules' list")
    return [Rule.from_dict(item) for item in data]


def _tool_call(data: Any) -> tuple[str, str]:
    name, arguments = (
        (data["name"], data.get("arguments", "{}")) if isinstance(data, Mapping) else data
    )
    # Script files may write arguments as a mapping, which reads better in YAML than JSON text.
    return name, arguments if isinstance(arguments, str) else json.dumps(arguments)


def _non_defaults(instance: Any) -> dict[str, Any]:
    return {
        f.name: getattr(instance, f.name)
        for f in fields(instance)
        if getattr(instance, f.name) != f.default
    }


def _known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"a {cls.__name__} must be a mapping, not {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return dict(data)
