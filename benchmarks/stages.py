"""Where a request's time goes, stage by stage, one request at a time behind a slow upstream.

At concurrency 1 behind a 50 ms upstream, the gateway's code runs after 50 ms of idling, with
its caches cold, and costs several times what it costs under load (`app_cpu.py`): that is what
the added latency at c = 1 is made of. This drives the ASGI app in-process (`app_cpu.Driver`,
no HTTP server) against the fake upstream in another process, times the gateway's main steps
in place with `perf_counter` wrappers, and prints the wall time each took per request. Nested
steps are listed under their parent's total (the signals are part of `validate`); what happens
after the response (`run_deferred`) is listed too: the client does not wait for it, but at
c = 1 the connection's next request does when it arrives before that work is done.

    python benchmarks/stages.py                                 # (c) JSON, 50 ms, c = 1
    python benchmarks/stages.py --model small --latency-ms 0 --concurrency 32
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import app_cpu  # the in-process driver
import load  # the load benchmark's fake upstream
import loadgen

spent: dict[str, float] = {}
# The steps in the order a request meets them; indented: part of the step above.
ORDER = (
    "parse the request",
    "build the upstream call's body",
    "complexity (scored while the draft is in flight)",
    "read the upstream's answer",
    "validate",
    "  SIGNALS",  # one line per signal of the chain, in its order
    "  the verdict (combine)",
    "build the response body",
    "build the x-cascade-* headers",
    "accounting, after the response",
    "  the trace queued for the ledger",
    "  metrics",
    "  the log line's figures",
    "the log line, after the response",
    "the log line made, in the log's batched write",
)


def _timed(function: Callable[..., Any], label: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - began

    return timed


def _timed_async(function: Callable[..., Any], label: str) -> Callable[..., Any]:
    """For a coroutine that does not wait (the validator, with synchronous signals)."""

    @functools.wraps(function)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - began

    return timed


def instrument(chain: tuple[Any, ...]) -> None:
    """Wrap the steps worth timing, and each signal of the cascade's validator `chain`
    (imported here: after the config is in the environment)."""
    from cascade_gateway import after_response
    from cascade_gateway.accounting import accountant, ledger
    from cascade_gateway.api import protocol, serving
    from cascade_gateway.observability import logs, metrics
    from cascade_gateway.providers import openai
    from cascade_gateway.validation import validator
    from cascade_gateway.validation.signals import query

    for module, name, label in (
        (protocol, "parse_request", "parse the request"),
        (openai, "_body", "build the upstream call's body"),
        (openai, "_completion", "read the upstream's answer"),
        (protocol, "completion_body", "build the response body"),
        (serving, "trace_headers", "build the x-cascade-* headers"),
        (after_response, "run_deferred", "accounting, after the response"),
        (metrics, "observe", "  metrics"),
        (accountant, "_describe", "  the log line's figures"),
        (logs, "close_request", "the log line, after the response"),
        (logs, "_request_line", "the log line made, in the log's batched write"),
    ):
        setattr(module, name, _timed(getattr(module, name), label))
    ledger.Ledger.queue = _timed(ledger.Ledger.queue, "  the trace queued for the ledger")
    validator.Validator.validate = _timed_async(validator.Validator.validate, "validate")
    validator.combine = _timed(validator.combine, "  the verdict (combine)")
    for signal in chain:
        kind = type(signal)
        kind.__call__ = _timed(kind.__call__, f"  signal {signal.name}")
    query.Complexity.score_query = _timed(
        query.Complexity.score_query, "complexity (scored while the draft is in flight)"
    )


async def run(args: argparse.Namespace, upstream_v1: str, folder: Path) -> None:
    driver = await app_cpu.started_app(upstream_v1, folder)
    validator = driver.app.state.services.engine.routes["default"].validator
    instrument(validator.signals)
    signals = [f"  signal {signal.name}" for signal in validator.signals]
    body = loadgen.chat_body(args.model, args.stream)
    await app_cpu.measure(driver, body, 20, args.concurrency)  # warm up
    spent.clear()
    cpu = await app_cpu.measure(driver, body, args.requests, args.concurrency)
    mode = "sse" if args.stream else "json"
    print(f"model {args.model}, {mode}, c = {args.concurrency}, {args.latency_ms:g} ms upstream")
    print(f"{'CPU per request (all of it, timers included)':<52} {cpu:8.1f} µs")
    for label in ORDER:
        for line in signals if label == "  SIGNALS" else [label]:
            if line in spent:
                print(f"{line:<52} {spent[line] / args.requests * 1e6:8.1f} µs")
    await driver.lifespan("shutdown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default", help="small: (b); default: (c)")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        folder = Path(name)
        upstream = load.start_fake_upstream(folder, args.latency_ms, stack).url
        # The request log (one line a request, as in production) goes to stderr: into a file.
        with open(folder / "gateway.log", "wb") as log:
            os.dup2(log.fileno(), sys.stderr.fileno())
        uvloop.run(run(args, upstream + "/v1", folder))


if __name__ == "__main__":
    main()
