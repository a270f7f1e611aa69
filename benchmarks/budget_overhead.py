"""What keys, budgets and the ledger cost per request, on SQLite and on PostgreSQL + Redis.

Starts the fake upstream and, one after another, a gateway process per setup, and sends
sequential requests (concurrency 1) through each to a plain model:

    open        no master key: no auth, no budget (the ledger is still written)
    key         a key without budget or limits: one key lookup per request
    budget      a key with a budget, rpm and tpm: reserve + settle + rate-limit counters
    budget_pg   the same on PostgreSQL + Redis (the multi-replica setup)

and prints p50/p90/p99 latency per setup and the difference to `open`.

    python benchmarks/budget_overhead.py [--requests 400] [--postgres URL] [--redis URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import gateway_process

MASTER = "bench-master-key-0123456789abcdef"
BODY = {"model": "small", "messages": [{"role": "user", "content": "What is the capital?"}]}


def config(upstream: str, database: str, redis: str | None) -> dict:
    storage = {"database_url": database} | ({"redis_url": redis} if redis else {})
    return {
        "providers": {"local": {"kind": "openai", "base_url": f"{upstream}/v1"}},
        "models": {
            "small": {"provider": "local", "model": "draft-model",
                      "input_per_mtok": 0.15, "output_per_mtok": 0.60},
        },
        "storage": storage,
        "log": {"level": "warning"},
    }  # fmt: skip


def measure(url: str, headers: dict[str, str], n: int) -> list[float]:
    samples = []
    with httpx.Client(timeout=30, headers=headers) as client:
        for i in range(n + 50):
            started = time.perf_counter()
            response = client.post(f"{url}/v1/chat/completions", json=BODY)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if i >= 50:  # warm-up
                samples.append(elapsed)
    return samples


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p90": round(cuts[89], 3), "p99": round(cuts[98], 3)}


def run_setup(
    name: str, raw: dict, folder: Path, n: int, key_settings: dict | None
) -> dict[str, float]:
    env = {"CASCADE_MASTER_KEY": MASTER} if key_settings is not None else {}
    with gateway_process(raw, folder, env=env) as (url, _):
        headers = {}
        if key_settings is not None:
            created = httpx.post(
                f"{url}/admin/keys",
                json={"name": f"bench-{name}", **key_settings},
                headers={"authorization": f"Bearer {MASTER}"},
            ).json()
            headers = {"authorization": f"Bearer {created['key']}"}
        return percentiles(measure(url, headers, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    budget = {"budget_usd": 1000.0, "budget_period": "day", "rpm": 1_000_000, "tpm": 10**9}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "script.yaml"
        script.write_text(yaml.safe_dump({"rules": [{"reply": {"text": "Paris."}}]}))
        port = 9300 + uuid.uuid4().int % 500
        upstream = subprocess.Popen(
            [sys.executable, "-m", "cascade_gateway", "fake-upstream", "--port", str(port),
             "--script", str(script), "--history", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            up = f"http://127.0.0.1:{port}"
            sqlite = f"sqlite:///{folder}/ledger.db"
            # A schema per run keeps PostgreSQL runs from seeing each other's rows.
            pg_db = f"bench_{uuid.uuid4().hex[:8]}"
            subprocess.run(["psql", args.postgres, "-qc", f"CREATE DATABASE {pg_db}"], check=True)
            pg = args.postgres.rsplit("/", 1)[0] + f"/{pg_db}"
            results = {
                "open": run_setup("open", config(up, sqlite, None), folder, args.requests, None),
                "key": run_setup("key", config(up, sqlite, None), folder, args.requests, {}),
                "budget": run_setup(
                    "budget", config(up, sqlite, None), folder, args.requests, budget
                ),
                "budget_pg": run_setup(
                    "budget_pg", config(up, pg, args.redis), folder, args.requests, budget
                ),
            }
            subprocess.run(
                ["psql", args.postgres, "-qc", f"DROP DATABASE {pg_db} WITH (FORCE)"], check=True
            )
        finally:
            upstream.terminate()
            upstream.wait(timeout=30)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    base = results["open"]
    print(f"{args.requests} sequential requests per setup (latency ms)\n")
    print(f"{'setup':10} {'p50':>8} {'p90':>8} {'p99':>8}   added p50 / p99 vs open")
    for name, result in results.items():
        added = f"{result['p50'] - base['p50']:+.2f} / {result['p99'] - base['p99']:+.2f}"
        print(f"{name:10} {result['p50']:8.2f} {result['p90']:8.2f} {result['p99']:8.2f}   {added}")


if __name__ == "__main__":
    main()
