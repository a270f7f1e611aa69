"""The request envelope runs the work a request deferred once its response has gone out."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.types import Message, Receive, Scope, Send

from cascade_gateway import after_response
from cascade_gateway.api.middleware import RequestContextMiddleware
from cascade_gateway.lifecycle import Lifecycle
from cascade_gateway.observability import logs


def a_request() -> Scope:
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}


async def receive() -> Message:
    return {"type": "http.request", "body": b""}


async def test_deferred_work_runs_after_the_last_byte_and_before_the_log_line():
    events: list[str] = []
    lifecycle = Lifecycle(drain_seconds=1)

    def account() -> None:
        # The request's line is still open for its figures; a draining server still waits.
        open_line = logs.request_fields() is not None
        events.append(f"accounted (log line open: {open_line}, in flight: {lifecycle.in_flight})")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert after_response.defer(account)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message: Message) -> None:
        events.append(message["type"])

    await RequestContextMiddleware(app, lifecycle)(a_request(), receive, send)

    assert events == [
        "http.response.start",
        "http.response.body",
        "accounted (log line open: True, in flight: 1)",
    ]
    assert lifecycle.in_flight == 0


async def test_the_log_lines_latency_ends_with_the_last_byte_not_the_deferred_work(
    caplog: pytest.LogCaptureFixture,
):
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert after_response.defer(lambda: asyncio.sleep(0.5))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        await send({"type": "http.response.body", "body": b"}"})

    async def send(message: Message) -> None:
        pass

    with caplog.at_level(logging.INFO, logger=logs.ACCESS.name):
        await RequestContextMiddleware(app, Lifecycle(drain_seconds=1))(a_request(), receive, send)

    (line,) = [record.fields for record in caplog.records if record.name == logs.ACCESS.name]
    assert line["status"] == 200
    assert 0 < line["latency_ms"] < 500
