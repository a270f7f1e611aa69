"""A small closed-loop HTTP/1.1 load generator, run as its own process by `benchmarks/load.py`.

Each of `concurrency` connections (keep-alive) sends the same POST again as soon as the previous
answer is complete, for `warmup + duration` seconds; requests started during the warm-up are not
counted. It reports latency and (for streams) time-to-first-token percentiles, requests/s,
errors, and its own CPU use — a client near 100 % of one core is the bottleneck, not the server.

It is deliberately thin: uvloop when installed, raw asyncio protocols, httptools' C parser (both
come with `uvicorn[standard]`), no per-request objects beyond the timings. `null-server` answers
every request with a canned response, to measure the client's own ceiling.

    python benchmarks/loadgen.py drive --url http://127.0.0.1:8000/v1/chat/completions \\
        --model small --concurrency 16 --duration 5 [--stream]      # prints one JSON object
    python benchmarks/loadgen.py null-server --port 9999
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import httptools

PROMPT = "What is the capital of France?"
# The first content-bearing SSE frame, whatever the JSON spacing: `"content":"P` or `"content": "P`
# (the role-only opening frame carries `"content": ""` and does not match).
_FIRST_TOKEN = re.compile(rb'"content": ?"[^"]')
_DONE = b"data: [DONE]"
# Requests still unanswered this long after the end are counted as errors (hung).
_GRACE_S = 10.0


def chat_body(model: str, stream: bool) -> bytes:
    """The chat-completions body every request carries."""
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    ).encode()


def request_bytes(host: str, port: int, path: str, model: str, stream: bool) -> bytes:
    """The raw HTTP/1.1 request every connection sends."""
    body = chat_body(model, stream)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer unused\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange()` sends a request and waits for the whole answer."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.first_token = 0.0
        self.tail = b""
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(exc or ConnectionResetError("connection closed by the server"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.stream:
            if not self.first_token and _FIRST_TOKEN.search(body):
                self.first_token = time.perf_counter()
            self.tail = (self.tail + body)[-32:]

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True
        self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    async def exchange(self, request: bytes) -> None:
        assert self.transport is not None
        self.status, self.first_token, self.tail = 0, 0.0, b""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        await self.waiter

    def ok(self) -> bool:
        return self.status == 200 and (not self.stream or self.tail.rstrip().endswith(_DONE))


async def _connect(host: str, port: int, stream: bool) -> _Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: _Connection(stream), host, port)
    return conn


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99 (linear interpolation between closest ranks), in the samples' unit."""
    if not samples:
        return {}
    ordered = sorted(samples)
    result = {}
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        result[name] = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return result


async def drive(
    url: str,
    model: str,
    concurrency: int,
    duration: float,
    warmup: float,
    stream: bool,
    samples: bool = False,
) -> dict[str, Any]:
    """Closed-loop load for `warmup + duration` seconds; a summary of the measured part (with
    every measured latency and time to first token too, if `samples`)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request_bytes(host, port, parts.path or "/", model, stream)
    latencies: list[float] = []
    ttfts: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    measure_from = start + warmup
    end_at = measure_from + duration

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def worker() -> None:
        conn: _Connection | None = None
        while True:
            began = time.perf_counter()
            if began >= end_at:
                break
            try:
                if conn is None or conn.closed:
                    conn = await _connect(host, port, stream)
                await conn.exchange(request)
            except (OSError, httptools.HttpParserError) as exc:
                if began >= measure_from:
                    error(type(exc).__name__)
                conn = None
                await asyncio.sleep(0.01)  # do not spin on a refused connection
                continue
            if began < measure_from:
                continue
            if not conn.ok():
                error(f"status {conn.status}" if conn.status != 200 else "incomplete stream")
                continue
            latencies.append((time.perf_counter() - began) * 1000)
            if stream and conn.first_token:
                ttfts.append((conn.first_token - began) * 1000)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, hung = await asyncio.wait(tasks, timeout=warmup + duration + _GRACE_S)
    for task in hung:
        task.cancel()
        error("hung")
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - start
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    summary = {
        "url": url,
        "model": model,
        "stream": stream,
        "concurrency": concurrency,
        "duration_s": duration,
        "warmup_s": warmup,
        "completed": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": len(latencies) / duration,
        "latency_ms": percentiles(latencies),
        "ttft_ms": percentiles(ttfts) if stream else {},
        "client_cpu": cpu / wall,
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }
    if samples:
        summary["samples"] = {"latency_ms": latencies, "ttft_ms": ttfts}
    return summary


class _NullServer(asyncio.Protocol):
    """Answers every request with the same small JSON body, as fast as Python can."""

    RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(self.RESPONSE)


async def null_server(host: str, port: int) -> None:
    """Serve canned answers until killed."""
    server = await asyncio.get_running_loop().create_server(_NullServer, host, port)
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def _run(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, just with a lower ceiling
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("drive", help="drive load at one point; print a JSON summary")
    load.add_argument("--url", required=True, help="full URL of the chat completions endpoint")
    load.add_argument("--model", required=True)
    load.add_argument("--concurrency", type=int, default=1)
    load.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    load.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    load.add_argument("--stream", action="store_true")
    load.add_argument("--samples", action="store_true", help="also print every measured timing")
    null = commands.add_parser("null-server", help="answer every request with a canned 200")
    null.add_argument("--host", default="127.0.0.1")
    null.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "null-server":
        with contextlib.suppress(KeyboardInterrupt):
            _run(null_server(args.host, args.port))
        return 0
    summary = _run(
        drive(
            args.url,
            args.model,
            args.concurrency,
            args.duration,
            args.warmup,
            args.stream,
            args.samples,
        )
    )
    json.dump(summary, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
