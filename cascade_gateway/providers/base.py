"""The one interface every upstream adapter implements.

A provider is an authenticated, pooled client for one upstream account. It knows its wire
protocol and nothing about cascades, prices or budgets. Adapters raise only
`cascade_gateway.errors.ProviderError`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from cascade_gateway.domain import ChatRequest, Completion, Delta


class Provider(Protocol):
    """Complete or stream a chat request against one upstream model.

    Example:
        completion = await provider.complete("gpt-4o-mini", ChatRequest(messages=[...]))
        async for delta in provider.stream("gpt-4o-mini", request): ...
    """

    name: str

    async def complete(self, model: str, request: ChatRequest) -> Completion:
        """One non-streamed call; usage comes from the upstream (or is counted, flagged)."""
        ...

    def stream(self, model: str, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Stream deltas; the last one carries `finish_reason`, and one carries `usage`.

        When the upstream reports no usage, the adapter counts tokens itself and sets
        `Usage.counted`. Closing the iterator early must abort the upstream call.
        """
        ...

    async def aclose(self) -> None:
        """Release pooled connections."""
        ...
