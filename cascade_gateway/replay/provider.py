"""A provider that answers with recorded answers: the draft "says" what the draft model said.

Example:
    provider = ReplayProvider("replay", {"draft-model": {"What is 2+2?": Answer("4", 1.0)}})
    completion = await provider.complete("draft-model", request)  # text "4", usage counted
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from cascade_gateway import tokens
from cascade_gateway.domain import ChatRequest, Completion, Delta, Usage, last_user_text
from cascade_gateway.errors import ProviderError
from cascade_gateway.replay.data import Answer


class ReplayProvider:
    """Serves `answers[model][prompt]`, the prompt being the request's last user message.

    Usage is counted with the gateway's own counter (`cascade_gateway.tokens`), as for any
    upstream that reports none, so the engine prices replayed calls like live ones.
    """

    def __init__(self, name: str, answers: Mapping[str, Mapping[str, Answer]]) -> None:
        self.name = name
        self._answers = {model: dict(by_prompt) for model, by_prompt in answers.items()}
        self.calls = 0

    def _lookup(self, model: str, request: ChatRequest) -> Answer:
        self.calls += 1
        by_prompt = self._answers.get(model)
        if by_prompt is None:
            known = ", ".join(sorted(self._answers))
            raise ProviderError(
                f"no recorded answers for model {model!r} (recorded: {known})",
                provider=self.name,
                status=404,
            )
        answer = by_prompt.get(last_user_text(request.messages))
        if answer is None:
            raise ProviderError(
                f"no recorded answer of {model!r} for this prompt", provider=self.name, status=404
            )
        return answer

    @staticmethod
    def _usage(request: ChatRequest, answer: Answer) -> Usage:
        return Usage(
            input_tokens=tokens.count_messages(request.messages, request.tools),
            output_tokens=tokens.count_text(answer.text),
            counted=True,
        )

    async def complete(self, model: str, request: ChatRequest) -> Completion:
        answer = self._lookup(model, request)
        return Completion(
            text=answer.text,
            finish_reason=answer.finish_reason,
            usage=self._usage(request, answer),
            model=model,
        )

    async def stream(self, model: str, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        answer = self._lookup(model, request)
        yield Delta(text=answer.text)
        yield Delta(finish_reason=answer.finish_reason, usage=self._usage(request, answer))

    async def aclose(self) -> None:
        return None
