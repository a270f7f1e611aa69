"""The benchmarks' machinery at tiny scale: real processes, one short point, sane numbers.

Not a performance test: nothing here asserts a latency, a rate or a size, only that the
figures the benchmarks print are made of completed work and hang together.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from cascade_gateway.fake_upstream import FakeUpstream, Reply, Rule

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _printed(*argv: str, timeout: float = 60) -> str:
    """What a benchmark command prints, once it has succeeded."""
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _run(*argv: str, timeout: float = 60) -> dict:
    return json.loads(_printed(*argv, timeout=timeout))


def _loadgen() -> ModuleType:
    """benchmarks/loadgen.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("loadgen", BENCHMARKS / "loadgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sane(point: dict) -> None:
    assert point["errors"] == 0, point["error_kinds"]
    assert point["completed"] > 0
    assert point["rps"] > 0
    latency = point["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]


def test_one_point_through_upstream_and_gateway_in_rounds() -> None:
    report = _run(
        str(BENCHMARKS / "load.py"), "--json", "--upstream-latency-ms", "0",
        "--concurrency", "2", "--modes", "json", "--paths", "a", "b", "--rounds", "2",
        "--duration", "0.5", "--warmup", "0.1", "--workers", "1", "--no-client-ceiling",
    )  # fmt: skip
    (run,) = report["runs"]
    direct, gateway = run["points"]
    assert (direct["path"], gateway["path"]) == ("a", "b")
    for point in (direct, gateway):
        _sane(point)
        assert point["concurrency"] == 2 and point["stream"] is False
        # Two rounds of 0.25 s each, pooled into one point; the timings stay out of the report.
        assert point["rounds"] == 2 and point["duration_s"] == 0.5
        assert point["rps"] == point["completed"] / 0.5
        assert "samples" not in point
    assert set(gateway["added_ms"]) == {"p50", "p90", "p99"}
    assert gateway["cpu"]["gateway"] > 0
    assert len(gateway["worker_cores"]) == 1  # one figure per worker
    assert run["rss_before"]["gateway"]["total_mb"] > 0
    assert run["rss_after"]["gateway"]["workers_mb"]


def test_streams_report_time_to_first_token_and_every_timing() -> None:
    with FakeUpstream.running([Rule(reply=Reply(text="The capital of France is Paris."))]) as up:
        point = _run(
            str(BENCHMARKS / "loadgen.py"), "drive", "--url", f"{up.url}/v1/chat/completions",
            "--model", "draft-model", "--concurrency", "2", "--duration", "0.5",
            "--warmup", "0.1", "--stream", "--samples",
        )  # fmt: skip
    _sane(point)
    assert 0 < point["ttft_ms"]["p50"] <= point["latency_ms"]["p50"]
    # Every measured timing is there to pool, and the percentiles are made of them.
    samples = point["samples"]
    assert len(samples["latency_ms"]) == len(samples["ttft_ms"]) == point["completed"]
    percentiles = _loadgen().percentiles
    assert percentiles(samples["latency_ms"]) == point["latency_ms"]
    assert percentiles(samples["ttft_ms"]) == point["ttft_ms"]


def test_ab_compares_two_checkouts_served_side_by_side() -> None:
    checkout = str(BENCHMARKS.parent)
    printed = _printed(
        str(BENCHMARKS / "ab.py"), "--old", checkout, "--new", checkout,
        "--rounds", "1", "--seconds", "0.5", "--concurrency", "2", timeout=120,
    )  # fmt: skip
    rows = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line}
    for side in ("old", "new"):
        cpu_ms, rps, p50, p99 = map(float, rows[side])
        assert cpu_ms > 0 and rps > 0 and 0 < p50 <= p99
    assert "new/old" in rows


def test_the_breaker_benchmark_fills_a_window_and_times_its_calls() -> None:
    printed = _printed(str(BENCHMARKS / "breaker.py"), "--rate", "200", "--calls", "300")

    assert "window of 6,000 calls" in printed
    assert "memory held" in printed and "state after: closed" in printed


def test_the_rate_limit_benchmark_times_a_busy_key_on_a_storage() -> None:
    printed = _printed(str(BENCHMARKS / "ratelimit.py"), "--storage", "sqlite", "--rate", "5")

    assert "a minute of 5 requests a second, 500 tokens each (150,000 tokens" in printed
    assert "sqlite:" in printed and "0 of 300 refused" in printed


def test_the_stages_benchmark_times_the_cascades_steps_with_the_prior_off_the_path() -> None:
    printed = _printed(
        str(BENCHMARKS / "stages.py"), "--latency-ms", "5", "--requests", "20", timeout=120
    )

    # "label   12.3 µs" per line, after the heading.
    timed = {
        label.strip(): float(figure)
        for label, figure, _ in (line.rsplit(None, 2) for line in printed.splitlines()[1:])
    }
    assert timed["validate"] > 0
    assert timed["parse the request"] > 0
    assert timed["complexity (scored while the draft is in flight)"] > 0
    assert timed["signal refusal"] > 0  # a line per signal of the chain, by its name
    assert "signal complexity" not in timed  # scored early, so never again in line
