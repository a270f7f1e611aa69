"""Factories for the two things every signal reads: the request and the draft."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cascade_gateway.domain import ChatRequest, Completion, TokenLogprob, ToolCall, Usage


def make_request(question: str = "What is the capital of France?", **fields: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": question}], **fields)


def make_completion(
    text: str = "The capital of France is Paris.",
    *,
    finish_reason: str = "stop",
    tool_calls: list[ToolCall] | None = None,
    logprobs: list[float] | None = None,
) -> Completion:
    return Completion(
        text=text,
        finish_reason=finish_reason,
        usage=Usage(10, 10),
        model="draft",
        tool_calls=tool_calls or [],
        logprobs=None if logprobs is None else [TokenLogprob("t", lp) for lp in logprobs],
    )


@pytest.fixture
def ask() -> Callable[..., ChatRequest]:
    """`ask("question", tools=[...])`: a one-message chat request."""
    return make_request


@pytest.fixture
def answer() -> Callable[..., Completion]:
    """`answer("text", finish_reason=..., tool_calls=..., logprobs=[...])`: a draft."""
    return make_completion
