"""Latency the gateway adds on loopback, and time to first token through a cascade.

Starts the fake upstream and the gateway as separate processes on 127.0.0.1, then sends
sequential requests (concurrency 1) from this process:

    (a) straight to the fake upstream
    (b) through the gateway, naming a model directly (pass-through)
    (c) through the gateway's 2-tier cascade, draft accepted

and prints p50/p90/p99 latency per path, streamed and not, plus time to first token.

    python benchmarks/overhead.py [--requests 300] [--upstream-latency-ms 0]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "The capital of France is Paris."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], probe: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cascade_gateway", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(probe)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


def measure(client: httpx.Client, url: str, model: str, stream: bool, n: int) -> dict:
    body = {"model": model, "messages": PROMPT, "stream": stream}
    totals, ttfts = [], []
    for i in range(n + 20):
        start = time.perf_counter()
        first = None
        with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if first is None and '"content":"' in line and '"content":""' not in line:
                    first = time.perf_counter()
        end = time.perf_counter()
        if i >= 20:  # warm-up
            totals.append((end - start) * 1000)
            if stream and first is not None:
                ttfts.append((first - start) * 1000)
    result = {"latency_ms": percentiles(totals)}
    if ttfts:
        result["ttft_ms"] = percentiles(ttfts)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--upstream-latency-ms", type=float, default=0.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    up_port, gw_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.yaml"
        script.write_text(yaml.safe_dump({"rules": [{"reply": {"text": ANSWER}}]}))
        config = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
        config["providers"]["local"]["base_url"] = f"http://127.0.0.1:{up_port}/v1"
        config_path = Path(tmp) / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config))
        upstream = f"http://127.0.0.1:{up_port}"
        gateway = f"http://127.0.0.1:{gw_port}"
        env_latency = ["--latency-ms", str(args.upstream_latency_ms)]
        with (
            process(
                ["fake-upstream", "--port", str(up_port), "--script", str(script), *env_latency],
                f"{upstream}/v1/models",
            ),
            process(
                [
                    "serve",
                    "--config",
                    str(config_path),
                    "--port",
                    str(gw_port),
                    "--log-level",
                    "warning",
                ],
                f"{gateway}/health",
            ),
            httpx.Client(timeout=30) as client,
        ):
            paths = {
                "a_direct_upstream": (f"{upstream}/v1/chat/completions", "draft-model"),
                "b_gateway_passthrough": (f"{gateway}/v1/chat/completions", "small"),
                "c_gateway_cascade": (f"{gateway}/v1/chat/completions", "default"),
            }
            results = {
                f"{name}{'_stream' if stream else ''}": measure(
                    client, url, model, stream, args.requests
                )
                for stream in (False, True)
                for name, (url, model) in paths.items()
            }
    report = {
        "requests_per_point": args.requests,
        "upstream_latency_ms": args.upstream_latency_ms,
        "cpu": os.cpu_count(),
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.requests} sequential requests per point, upstream latency "
        f"{args.upstream_latency_ms} ms\n"
    )
    print(f"{'path':32} {'p50':>8} {'p90':>8} {'p99':>8}   added p50/p99 vs (a)")
    for name, result in results.items():
        lat = result["latency_ms"]
        base = results["a_direct_upstream" + ("_stream" if name.endswith("_stream") else "")]
        added = (
            f"{lat['p50'] - base['latency_ms']['p50']:+.2f} / "
            f"{lat['p99'] - base['latency_ms']['p99']:+.2f}"
        )
        print(f"{name:32} {lat['p50']:8.2f} {lat['p90']:8.2f} {lat['p99']:8.2f}   {added}")
        if "ttft_ms" in result:
            t = result["ttft_ms"]
            print(f"{'  time to first token':32} {t['p50']:8.2f} {t['p90']:8.2f} {t['p99']:8.2f}")


if __name__ == "__main__":
    main()
