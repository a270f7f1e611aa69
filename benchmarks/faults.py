"""Load with injected upstream faults: does every request end well, and is every one recorded?

Starts the fake upstream and the gateway (2 workers, SQLite ledger) as separate processes on
127.0.0.1 and drives them from this process for a bounded time. A share of requests
(`--fault-rate`, default 10 %) asks the fake upstream for a fault — 429, 500, a hang past the
gateway's deadline, or a stream cut mid-way — spread over direct and cascade routes, streamed
and not. Reports requests served, failed with a proper error, unhandled 500s (must be 0),
ledger rows against requests (must match) and the gateway's RSS before and after.

    python benchmarks/faults.py [--duration 30] [--concurrency 64] [--fault-rate 0.1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import free_port, stop_group, wait_healthy

FAULTS = {
    "fault-429": {"status": 429, "retry_after": 1},
    "fault-500": {"status": 500},
    "fault-hang": {"kind": "hang"},
    "fault-broken": {"kind": "broken_stream", "after_chunks": 3},
}
ROUTES = ("default", "large")
WORKERS = "2"


def upstream_script() -> dict:
    rules = [{"reply": {"text": "The capital of France is Paris. " * 4}}]
    rules += [{"prompt_contains": marker, "fault": fault} for marker, fault in FAULTS.items()]
    return {"rules": rules}


def gateway_config(upstream_port: int, database: Path) -> dict:
    def model(name: str, price_in: float, price_out: float) -> dict:
        return {
            "provider": "local",
            "model": name,
            "input_per_mtok": price_in,
            "output_per_mtok": price_out,
            "timeouts": {"total_s": 2.0, "first_token_s": 2.0},
            "retries": {"max_attempts": 2, "backoff_s": 0.05},
        }

    return {
        "providers": {
            "local": {"kind": "openai", "base_url": f"http://127.0.0.1:{upstream_port}/v1"}
        },
        "models": {
            "small": model("draft-model", 0.15, 0.60),
            "large": model("strong-model", 2.50, 10.00),
        },
        "cascades": {"default": {"tiers": ["small", "large"]}},
        "storage": {"database_url": f"sqlite:///{database}"},
        "log": {"level": "warning"},
    }


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the uvicorn workers)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def one(client: httpx.AsyncClient, url: str, rng: random.Random, fault_rate: float) -> str:
    """Send one request; classify how it ended."""
    marker = rng.choice(list(FAULTS)) if rng.random() < fault_rate else "plain"
    stream = rng.random() < 0.5
    body = {
        "model": rng.choice(ROUTES),
        "messages": [{"role": "user", "content": f"What is the capital of France? {marker}"}],
        "stream": stream,
    }
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code == 500:
                return "unhandled_500"
            if response.status_code != 200:
                error = json.loads(await response.aread()).get("error", {})
                return (
                    "failed_cleanly" if {"message", "type", "code"} <= set(error) else "bad_error"
                )
            if not stream:
                payload = json.loads(await response.aread())
                return "served" if payload["choices"][0]["message"]["content"] else "bad_answer"
            saw_done = saw_error = False
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    saw_done = True
                elif line.startswith("data: ") and '"error"' in line[:20]:
                    saw_error = True
            if saw_error:
                return "failed_cleanly"
            return "served" if saw_done else "cut_silently"
    except httpx.HTTPError as exc:
        return f"transport_error:{type(exc).__name__}"


async def drive(
    url: str, duration: float, concurrency: int, fault_rate: float, seed: int
) -> Counter:
    outcomes: Counter = Counter()
    rng = random.Random(seed)
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                outcomes[await one(client, url, rng, fault_rate)] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def run(
    duration: float, concurrency: int, fault_rate: float, warmup: float = 3.0, seed: int = 7
) -> dict:
    """Start both processes, drive them, and report."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        database = folder / "ledger.db"
        script, config = folder / "script.yaml", folder / "gateway.yaml"
        up_port, gw_port = free_port(), free_port()
        script.write_text(yaml.safe_dump(upstream_script()))
        config.write_text(yaml.safe_dump(gateway_config(up_port, database)))
        cli = [sys.executable, "-m", "cascade_gateway"]
        quiet = {
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL,
            "start_new_session": True,
        }
        upstream = subprocess.Popen(
            [
                *cli,
                "fake-upstream",
                "--port",
                str(up_port),
                "--script",
                str(script),
                "--history",
                "0",
            ],
            **quiet,
        )
        gateway = subprocess.Popen(
            [*cli, "serve", "--config", str(config), "--port", str(gw_port), "--workers", WORKERS],
            **quiet,
        )
        url = f"http://127.0.0.1:{gw_port}"
        try:
            wait_healthy(url, gateway)
            # Warm up first: lazily loaded pieces (the tokenizer, SDK clients) are not growth.
            warm_up = asyncio.run(drive(url, warmup, concurrency, fault_rate, seed + 1))
            rss_before = rss_kib(gateway.pid)
            started = time.monotonic()
            outcomes = asyncio.run(drive(url, duration, concurrency, fault_rate, seed))
            elapsed = time.monotonic() - started
            time.sleep(0.5)  # let the last streams' ledger rows land
            rss_after = rss_kib(gateway.pid)
        finally:
            for proc in (gateway, upstream):
                stop_group(proc)
        with sqlite3.connect(database) as db:
            ledger_rows = db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    requests = sum(outcomes.values())
    sent = requests + sum(warm_up.values())
    return {
        "duration_s": round(elapsed, 1),
        "concurrency": concurrency,
        "fault_rate": fault_rate,
        "requests": requests,
        "rps": round(requests / elapsed, 1),
        "served": outcomes["served"],
        "failed_cleanly": outcomes["failed_cleanly"],
        "unhandled_500": outcomes["unhandled_500"],
        "other": {k: v for k, v in outcomes.items()
                  if k not in ("served", "failed_cleanly", "unhandled_500")},
        "ledger_rows": ledger_rows,
        "requests_incl_warmup": sent,
        "ledger_matches_requests": ledger_rows == sent,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before RSS is read")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(min(args.duration, 60.0), args.concurrency, args.fault_rate, args.warmup)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key:26} {value}")


if __name__ == "__main__":
    main()
