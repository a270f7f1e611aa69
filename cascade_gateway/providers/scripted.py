"""A provider that answers from a script: for unit tests, demos and offline replays.

Example:
    provider = ScriptedProvider("fake")
    provider.enqueue("draft-model", "Paris.")
    provider.enqueue("strong-model", ProviderError("down", provider="fake", status=503))
    ...
    provider.history  # [(model, request), ...] in call order
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from cascade_gateway import tokens
from cascade_gateway.domain import (
    ChatRequest,
    Completion,
    Delta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from cascade_gateway.errors import ProviderError


@dataclass(slots=True)
class Scripted:
    """One scripted answer. `usage` None: counted from the request and text, as real-ish."""

    text: str = ""
    finish_reason: str = "stop"
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    logprobs: list[float] | None = None
    # Streaming: fail with this error after `fail_after` deltas have been sent.
    fail_after: int | None = None
    error: ProviderError | None = None
    delay_s: float = 0.0


class ScriptedProvider:
    """Answers each model's calls from its queue, in order; records every call in `history`."""

    def __init__(self, name: str = "scripted", chunk_words: int = 1) -> None:
        self.name = name
        self.history: list[tuple[str, ChatRequest]] = []
        self._queues: dict[str, deque[Scripted]] = defaultdict(deque)
        self._chunk_words = chunk_words
        self.closed_streams = 0

    def enqueue(self, model: str, answer: str | Scripted | ProviderError) -> None:
        """Script the next answer of `model`: text, a full `Scripted`, or an error to raise."""
        if isinstance(answer, str):
            answer = Scripted(text=answer)
        elif isinstance(answer, ProviderError):
            answer = Scripted(error=answer)
        self._queues[model].append(answer)

    def _next(self, model: str, request: ChatRequest) -> Scripted:
        self.history.append((model, request))
        queue = self._queues.get(model)
        if not queue:
            raise ProviderError(f"nothing scripted for {model!r}", provider=self.name, status=500)
        return queue.popleft()

    @staticmethod
    def _usage(answer: Scripted, request: ChatRequest) -> Usage:
        if answer.usage is not None:
            return answer.usage
        produced = answer.text + "".join(c.arguments for c in answer.tool_calls)
        return Usage(
            input_tokens=tokens.count_messages(request.messages, request.tools),
            output_tokens=tokens.count_text(produced),
        )

    async def complete(self, model: str, request: ChatRequest) -> Completion:
        answer = self._next(model, request)
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.error is not None:
            raise answer.error
        return Completion(
            text=answer.text,
            finish_reason=answer.finish_reason,
            usage=self._usage(answer, request),
            model=model,
            tool_calls=list(answer.tool_calls),
            logprobs=_logprobs(answer) if request.logprobs else None,
        )

    async def stream(self, model: str, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        answer = self._next(model, request)
        try:
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
            if answer.error is not None and answer.fail_after is None:
                raise answer.error
            words = answer.text.split(" ") if answer.text else []
            pieces = [
                " ".join(words[i : i + self._chunk_words]) + " "
                for i in range(0, len(words), self._chunk_words)
            ]
            if pieces:
                pieces[-1] = pieces[-1][:-1]
            for sent, piece in enumerate(pieces):
                if answer.fail_after is not None and sent >= answer.fail_after:
                    raise answer.error or ProviderError("stream broke", provider=self.name)
                await asyncio.sleep(0)
                yield Delta(text=piece)
            for index, call in enumerate(answer.tool_calls):
                fragment = ToolCallDelta(
                    index, id=call.id, name=call.name, arguments=call.arguments
                )
                yield Delta(tool_calls=(fragment,))
            yield Delta(finish_reason=answer.finish_reason, usage=self._usage(answer, request))
        finally:
            self.closed_streams += 1

    async def aclose(self) -> None:
        return None


def _logprobs(answer: Scripted) -> list[TokenLogprob] | None:
    if answer.logprobs is None:
        return None
    words = answer.text.split() or [""]
    return [
        TokenLogprob(token=words[i % len(words)], logprob=lp)
        for i, lp in enumerate(answer.logprobs)
    ]
