"""CPU per request of the gateway's own code: the ASGI app driven in-process, no HTTP server.

The load benchmark (`load.py`) measures what a client sees, but on a shared 2-core machine its
figures move by ±15 % from one run to the next: the gateway, the upstream and the load
generator compete for the same cores. To compare two versions of the gateway's code, this
drives the app directly (an ASGI call per request, `concurrency` at a time, on one event loop)
against the fake upstream in another process, and reports the CPU time of this process only:
the app, its upstream HTTP client, and the small driver (the same for every version). Each
figure is the best of `--repeats` runs, which strips most of the noise other processes add.

    python benchmarks/app_cpu.py                      # JSON and SSE, pass-through and cascade
    python benchmarks/app_cpu.py --requests 5000 --repeats 7
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import uvloop
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # the load benchmark's config, answer and request: both measure the same
import loadgen


class Driver:
    """Calls an ASGI app the way uvicorn would, with a canned request body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def lifespan(self, event: str) -> None:
        """Run the app's lifespan `startup` (leaving it running) or `shutdown`."""
        if event == "startup":
            self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            self._task = asyncio.create_task(self.app(scope, self._inbox.get, self._outbox.put))
        await self._inbox.put({"type": f"lifespan.{event}"})
        message = await self._outbox.get()
        assert message["type"] == f"lifespan.{event}.complete", message

    async def request(self, body: bytes) -> int:
        """POST /v1/chat/completions; the status (the body is read and dropped)."""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        status = 0
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body", False):
                done.set()

        await self.app(scope, receive, send)
        return status


async def measure(driver: Driver, body: bytes, requests: int, concurrency: int) -> float:
    """CPU microseconds per request, `concurrency` requests at a time."""
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await driver.request(body)
            assert status == 200, status

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / requests * 1e6


async def started_app(upstream_v1: str, folder: Path) -> Driver:
    """The gateway on the load benchmark's config (files in `folder`), started, in a driver."""
    config_path = folder / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(load.gateway_config(upstream_v1, folder, "info")))
    os.environ["CASCADE_CONFIG_FILE"] = str(config_path)
    # Metrics as with several workers (the CLI sets this then): kept in memory-mapped files.
    (folder / "metrics").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "metrics")
    from cascade_gateway.app import create_app_from_env

    driver = Driver(create_app_from_env())
    await driver.lifespan("startup")
    return driver


async def run(args: argparse.Namespace, upstream_v1: str, folder: Path) -> None:
    driver = await started_app(upstream_v1, folder)
    points = [
        (name, model, stream)
        for stream in (False, True)
        for name, model in (("(b) pass-through", "small"), ("(c) cascade", "default"))
    ]
    print(f"{'point':<22} {'mode':<5} {'cpu µs/req (best)':>18}  all runs")
    for name, model, stream in points:
        body = loadgen.chat_body(model, stream)
        await measure(driver, body, args.requests // 5, args.concurrency)  # warm up
        runs = [
            await measure(driver, body, args.requests, args.concurrency)
            for _ in range(args.repeats)
        ]
        mode = "sse" if stream else "json"
        listed = " ".join(f"{r:.0f}" for r in runs)
        print(f"{name:<22} {mode:<5} {min(runs):>18.0f}  {listed}", flush=True)
    await driver.lifespan("shutdown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        folder = Path(name)
        upstream = load.start_fake_upstream(folder, 0, stack).url
        # The request log (one line a request, as in production) goes to stderr: into a file.
        with open(folder / "gateway.log", "wb") as log:
            os.dup2(log.fileno(), sys.stderr.fileno())
        uvloop.run(run(args, upstream + "/v1", folder))


if __name__ == "__main__":
    main()
