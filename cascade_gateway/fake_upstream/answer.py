"""The protocol-neutral answer both wire formats render, and the seam each wire implements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.datastructures import Headers

from cascade_gateway.fake_upstream.script import ProtocolName, Reply
from cascade_gateway.tokens import count_text

# A confident model: logprobs close to 0 unless the script says otherwise.
DEFAULT_LOGPROB = -0.01

# Word-like pieces that keep their leading whitespace, so joining them gives back the text:
# "Hi, Paris." -> ["Hi", ",", " Paris", "."]. Close enough to real tokens for streaming.
_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")


def split_pieces(text: str) -> list[str]:
    """The text cut into token-like pieces, whitespace preserved."""
    return _PIECE.findall(text)


class BadRequest(Exception):
    """The request body is not one the real API would accept."""


class ScriptError(Exception):
    """The script asks for an answer this API cannot express."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """What matching needs from a request body."""

    model: str
    prompt: str
    stream: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply resolved for one request: finish reason and usage settled."""

    model: str
    text: str
    tool_calls: tuple[tuple[str, str], ...]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    scripted_logprobs: tuple[float, ...]
    report_usage: bool

    def token_logprobs(self, pieces: list[str]) -> list[tuple[str, float]]:
        """Each text piece with its logprob: scripted ones first, then the default."""
        scripted = self.scripted_logprobs
        return [
            (piece, scripted[i] if i < len(scripted) else DEFAULT_LOGPROB)
            for i, piece in enumerate(pieces)
        ]


def build_answer(reply: Reply, model: str, prompt_tokens: int) -> Answer:
    """Settle a reply for a request: counted usage unless the reply scripts it."""
    if reply.usage is not None:
        prompt_tokens, completion_tokens = reply.usage
    else:
        completion_tokens = count_text(reply.text) + sum(
            count_text(name) + count_text(arguments) for name, arguments in reply.tool_calls
        )
    return Answer(
        model=model,
        text=reply.text,
        tool_calls=tuple(reply.tool_calls),
        finish_reason=reply.resolved_finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        scripted_logprobs=tuple(reply.logprobs or ()),
        report_usage=not reply.omit_usage,
    )


class Wire(Protocol):
    """One API's JSON: how to read its requests and write its answers, streams and errors."""

    name: ProtocolName
    request_id_header: str
    malformed_frame: bytes

    def read(self, body: dict[str, Any]) -> Inbound:
        """Model, prompt and stream flag; raises `BadRequest` for a body the API would refuse."""
        ...

    def api_key(self, headers: Headers) -> str | None:
        """The key the client sent, where this API expects it."""
        ...

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """A deterministic token count of the request's messages."""
        ...

    def error(self, status: int, message: str) -> dict[str, Any]:
        """The API's error body for a status."""
        ...

    def models(self, names: list[str]) -> dict[str, Any]:
        """The `GET /v1/models` body listing `names` (never empty)."""
        ...

    def body(self, answer: Answer, request: dict[str, Any]) -> dict[str, Any]:
        """The non-streamed response body."""
        ...

    def frames(self, answer: Answer, request: dict[str, Any]) -> list[bytes]:
        """The streamed response, one SSE frame per element."""
        ...
