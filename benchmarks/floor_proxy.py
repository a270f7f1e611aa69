"""The floor: the least a Python proxy on this stack can do, as path (f) of `load.py`.

A bare ASGI app under the same server as the gateway (uvicorn with uvloop and httptools, the
same number of workers) that forwards each request to the upstream with the gateway's own HTTP
client (`cascade_gateway.providers.connections`; aiohttp until session 5), and answers with the
upstream's bytes: no routing, validation, accounting, metrics or logs. The gateway can only
approach it; what it adds over (a) is the cost of the stack itself on this machine.

    FLOOR_UPSTREAM=http://127.0.0.1:9100 uvicorn floor_proxy:app --app-dir benchmarks --workers 2
"""

from __future__ import annotations

import os
from typing import Any

from cascade_gateway.providers.connections import ConnectionPool, Origin

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:9100")
_pool: ConnectionPool | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Forward `POST /v1/chat/completions`; `GET /health` answers 200 for the readiness wait."""
    global _pool
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        if _pool is not None:
            await _pool.aclose()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if _pool is None:
        _pool = ConnectionPool(Origin.parse(UPSTREAM), headers={"content-type": "application/json"})
    upstream = await _pool.post(scope["path"], body, accept="application/json, text/event-stream")
    try:
        start = {"type": "http.response.start", "status": upstream.status}
        kind = upstream.headers.get("content-type", "application/json").encode()
        await send({**start, "headers": [(b"content-type", kind)]})
        while chunk := await upstream.read_some():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        upstream.release()
    await send({"type": "http.response.body", "body": b""})
