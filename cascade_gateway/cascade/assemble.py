"""Folding a stream of deltas back into a completion (for validation and billing)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cascade_gateway import tokens
from cascade_gateway.domain import (
    ChatRequest,
    Completion,
    Delta,
    TokenLogprob,
    ToolCall,
    Usage,
)


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Assembler:
    """Accumulates deltas; can bill a stream cut short by counting what arrived."""

    model: str
    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None

    def add(self, delta: Delta) -> None:
        if delta.text:
            self.text.append(delta.text)
        for fragment in delta.tool_calls:
            call = self.calls.setdefault(fragment.index, _PartialCall())
            call.id = fragment.id or call.id
            call.name = fragment.name or call.name
            if fragment.arguments:
                call.arguments.append(fragment.arguments)
        self.logprobs.extend(delta.logprobs)
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage

    @property
    def has_output(self) -> bool:
        return bool(self.text or self.calls)

    def counted_usage(self, request: ChatRequest) -> Usage:
        """Usage as reported, else counted from the prompt and the output seen so far."""
        if self.usage is not None:
            return self.usage
        produced = "".join(self.text) + "".join(
            "".join(c.arguments) + c.name for c in self.calls.values()
        )
        return Usage(
            input_tokens=tokens.count_messages(request.messages, request.tools),
            output_tokens=tokens.count_text(produced),
            counted=True,
        )

    def completion(self, request: ChatRequest) -> Completion:
        return Completion(
            text="".join(self.text),
            finish_reason=self.finish_reason or "stop",
            usage=self.counted_usage(request),
            model=self.model,
            tool_calls=[
                ToolCall(id=c.id, name=c.name, arguments="".join(c.arguments))
                for _, c in sorted(self.calls.items())
            ],
            logprobs=self.logprobs or None,
        )
