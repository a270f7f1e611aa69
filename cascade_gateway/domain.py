"""The gateway's own vocabulary: plain dataclasses that never import a web framework or an SDK.

Messages stay in OpenAI's chat format (a list of dicts) because it is the lingua franca every
adapter already speaks; everything the cascade reasons about (completions, usage, tool calls,
stream deltas) is a typed dataclass.

Values made per request, per token or per stream event, here and on the request's path
(requests, deltas, logprobs, signal scores, verdicts, engine events), are slotted but not
frozen, and never changed once made (`dataclasses.replace` makes a changed copy): a frozen
dataclass sets each field through `object.__setattr__`, which made building one 2.5 times
as costly, and a request builds dozens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

Message = dict[str, Any]


def content_text(content: Any) -> str:
    """The text of a message's `content`: a string, or the text parts of a list of parts/blocks
    (OpenAI's and Anthropic's shapes alike)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def last_user_text(messages: list[Message]) -> str:
    """The text of the last user message ("" if there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


@dataclass(slots=True)
class ChatRequest:
    """One chat completion request, as the cascade sees it (the `model` is chosen per tier)."""

    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    # Other OpenAI parameters (seed, user, presence_penalty, ...) passed through untouched.
    extra: dict[str, Any] = field(default_factory=dict)

    def with_logprobs(self) -> ChatRequest:
        """The same request asking the upstream for token logprobs."""
        return self if self.logprobs else replace(self, logprobs=True)

    def tool_named(self, name: str) -> dict[str, Any] | None:
        """The function definition of the tool called `name`, if the request offered it."""
        for tool in self.tools or ():
            function = tool.get("function") or {}
            if function.get("name") == name:
                return function
        return None


@dataclass(slots=True)
class Usage:
    """Tokens billed for one upstream call; `counted`: we counted them, the upstream did not."""

    input_tokens: int = 0
    output_tokens: int = 0
    counted: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ToolCall:
    """A function call the model asked for; `arguments` is the raw JSON text it produced."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float


@dataclass(slots=True)
class Completion:
    """A finished answer from one upstream call."""

    text: str
    finish_reason: str
    usage: Usage
    model: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None

    def as_deltas(self) -> list[Delta]:
        """The answer as a stream would have brought it, all at once: its content in one
        delta (if it has any), then the closing delta with finish reason and usage."""
        closing = Delta(finish_reason=self.finish_reason, usage=self.usage, ends_stream=True)
        if not (self.text or self.tool_calls or self.logprobs):
            return [closing]
        body = Delta(
            text=self.text,
            tool_calls=tuple(
                ToolCallDelta(index, id=call.id, name=call.name, arguments=call.arguments)
                for index, call in enumerate(self.tool_calls)
            ),
            logprobs=tuple(self.logprobs or ()),
            ends_stream=True,
        )
        return [body, closing]


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call; `index` identifies the call across fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Delta:
    """One piece of a streamed answer. The last delta of a stream carries `finish_reason`;
    `usage` appears on whichever delta the upstream reported it (often the last).

    `ends_stream`: the upstream's stream ended with this piece (its end marker came in the
    same read), so the closing delta follows without waiting on the network: whoever sends
    pieces on can send this one together with the end.
    """

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: tuple[TokenLogprob, ...] = ()
    ends_stream: bool = False


def merge_deltas(deltas: Sequence[Delta]) -> Delta:
    """Consecutive deltas as one: text and logprobs joined, each tool call's fragments joined
    into one fragment per call, the last finish reason and usage kept; it ends the stream if
    the last of them did.

    A client folding the merged delta ends with the same message as from the pieces; the
    gateway sends an answer it held back (a validated draft) this way, in one chunk.
    """
    if len(deltas) == 1:
        return deltas[0]  # already one: nothing to join
    text: list[str] = []
    logprobs: list[TokenLogprob] = []
    calls: dict[int, list[ToolCallDelta]] = {}
    finish_reason: str | None = None
    usage: Usage | None = None
    for delta in deltas:
        text.append(delta.text)
        logprobs.extend(delta.logprobs)
        for fragment in delta.tool_calls:
            calls.setdefault(fragment.index, []).append(fragment)
        finish_reason = delta.finish_reason or finish_reason
        usage = delta.usage or usage
    return Delta(
        text="".join(text),
        tool_calls=tuple(_merge_fragments(index, parts) for index, parts in calls.items()),
        finish_reason=finish_reason,
        usage=usage,
        logprobs=tuple(logprobs),
        ends_stream=deltas[-1].ends_stream,
    )


def _merge_fragments(index: int, parts: list[ToolCallDelta]) -> ToolCallDelta:
    return ToolCallDelta(
        index=index,
        id=next((p.id for p in parts if p.id), None),
        name=next((p.name for p in parts if p.name), None),
        arguments="".join(p.arguments for p in parts),
    )


FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")
