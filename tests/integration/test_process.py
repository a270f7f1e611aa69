"""A real gateway process: metrics summed over two workers, its log lines, and a drain on a
real SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import yaml

from cascade_gateway.fake_upstream import Reply, Rule
from cascade_gateway.observability import metrics
from tests.configs import config_dict
from tests.processes import children, gateway_process

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GOOD = "The capital of France is Paris."


def requests_total(metrics_text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("cascade_requests_total{")
    )


def test_metrics_are_summed_across_two_workers(upstream, tmp_path):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    metrics_dir = tmp_path / "prom"
    raw = config_dict(base_url=f"{upstream.url}/v1")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    with gateway_process(raw, tmp_path, "--workers", "2", env=env) as (url, _):
        body = {"model": "default", "messages": QUESTION}
        # Fresh connections, so the kernel spreads them over both workers' accept loops.
        for _ in range(40):
            assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 200
        # Each worker writes its counts at most FLUSH_S after a change.
        time.sleep(metrics.FLUSH_S + 0.2)
        text = httpx.get(f"{url}/metrics").text

    writers = {re.sub(r"^\w+?_(\d+)\.db$", r"\1", p.name) for p in metrics_dir.glob("counter_*.db")}
    assert len(writers) == 2  # both workers served and wrote their counters
    assert requests_total(text) == 40


def test_sigterm_drains_in_flight_requests_then_exits_zero(upstream, tmp_path: Path):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD, latency_s=1.5)))
    upstream.add(Rule(model="draft-model", reply=Reply(text="slow stream " * 20, per_chunk_s=0.05)))
    raw = config_dict(base_url=f"{upstream.url}/v1")
    raw["server"] = {"drain_seconds": 10}
    results: dict[str, str] = {}

    with gateway_process(raw, tmp_path) as (url, proc):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

        def plain(name: str) -> None:
            answer = client.chat.completions.create(model="large", messages=QUESTION)
            results[name] = answer.choices[0].message.content

        def streamed() -> None:
            chunks = client.chat.completions.create(model="small", messages=QUESTION, stream=True)
            results["stream"] = "".join(c.choices[0].delta.content or "" for c in chunks)

        threads = [threading.Thread(target=plain, args=(f"plain-{i}",)) for i in range(2)]
        threads.append(threading.Thread(target=streamed))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while httpx.get(f"{url}/health").json()["in_flight"] < 3:
            assert time.monotonic() < deadline, "requests never got in flight"
            time.sleep(0.02)

        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        readiness = httpx.get(f"{url}/readiness")
        refused = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "large", "messages": QUESTION}
        )
        for thread in threads:
            thread.join(timeout=15)
        exit_code = proc.wait(timeout=15)

    assert readiness.status_code == 503 and readiness.json()["status"] == "draining"
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "draining"
    assert results == {"plain-0": GOOD, "plain-1": GOOD, "stream": "slow stream " * 20}
    assert exit_code == 0


def test_each_request_is_logged_once_as_json_and_uvicorns_access_log_stays_off(
    upstream, tmp_path: Path
):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    raw = config_dict(base_url=f"{upstream.url}/v1")

    with gateway_process(raw, tmp_path, "--log-level", "info", "--workers", "2") as (url, proc):
        for _ in range(3):
            body = {"model": "default", "messages": QUESTION}
            assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 200
    lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]

    served = [line for line in lines if line.get("path") == "/v1/chat/completions"]
    assert len(served) == 3
    assert {line["logger"] for line in served} == {"cascade_gateway.access"}
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert [line["models_tried"] for line in served] == [["small"]] * 3
    assert all(line["outcome"] == "accepted" and line["cost_usd"] > 0 for line in served)


def test_with_two_workers_sigterm_drains_both_then_exits_zero(upstream, tmp_path: Path):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD, latency_s=1.5)))
    raw = config_dict(base_url=f"{upstream.url}/v1")
    raw["server"] = {"drain_seconds": 10}
    statuses: list[int] = []

    with gateway_process(raw, tmp_path, "--workers", "2") as (url, proc):
        body = {"model": "large", "messages": QUESTION}

        def one() -> None:  # a fresh connection each, so the kernel spreads them
            answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=20)
            statuses.append(answer.status_code)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # the supervisor only, as Kubernetes does
        for thread in threads:
            thread.join(timeout=15)
        exit_code = proc.wait(timeout=30)

    assert statuses == [200, 200, 200, 200]
    assert exit_code == 0


def test_a_worker_that_dies_is_replaced(upstream, tmp_path: Path):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))
    raw = config_dict(base_url=f"{upstream.url}/v1")

    with gateway_process(raw, tmp_path, "--workers", "2") as (url, proc):
        first = children(proc.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while len(children(proc.pid) - {victim}) < 2:
            assert time.monotonic() < deadline, "no replacement worker"
            time.sleep(0.1)
        # Wait for the newcomer to listen, then fresh connections reach both workers again.
        body = {"model": "default", "messages": QUESTION}
        deadline = time.monotonic() + 15
        while True:
            served = [httpx.post(f"{url}/v1/chat/completions", json=body) for _ in range(10)]
            if all(r.status_code == 200 for r in served) or time.monotonic() > deadline:
                break
            time.sleep(0.2)

    assert victim not in children(proc.pid)
    assert [r.status_code for r in served] == [200] * 10


def test_serving_on_a_port_in_use_fails_at_once(tmp_path: Path):
    raw = config_dict(base_url="http://127.0.0.1:9/v1")
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cascade_gateway", "serve", "--config", str(path),
             "--port", str(port), "--workers", "2"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert done.returncode != 0
    assert "Address already in use" in done.stderr
