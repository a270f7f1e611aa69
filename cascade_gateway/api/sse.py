"""The one Server-Sent Events encoder for the whole service.

Both the OpenAI-compatible stream (bare `data:` frames ending in `[DONE]`) and the native API's
typed events go through here, and both end a failed stream with an error frame rather than a
silent cut.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from cascade_gateway.errors import GatewayError

PING_SECONDS = 15
DONE = ServerSentEvent(data="[DONE]")


def frame(data: Mapping[str, Any], event: str | None = None) -> ServerSentEvent:
    """One event whose data is compact JSON."""
    return ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event=event)


def error_frame(exc: GatewayError, event: str | None = None) -> ServerSentEvent:
    """An OpenAI-shaped error body as an event; the openai SDK raises it as an APIError."""
    return frame(exc.to_body(), event=event)


def response(
    events: AsyncIterator[ServerSentEvent], headers: Mapping[str, str] | None = None
) -> EventSourceResponse:
    """A streaming response; comment pings keep idle proxies from cutting long drafts."""
    return EventSourceResponse(
        events,
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})},
        ping=PING_SECONDS,
        sep="\n",
    )
