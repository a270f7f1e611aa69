"""A short run of the fault-injection load benchmark: no unhandled 500, nothing unrecorded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("faults_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_under_faults_every_request_ends_well_and_is_recorded():
    report = load_benchmark().run(duration=4, concurrency=16, fault_rate=0.1, warmup=1)

    assert report["requests"] > 50
    assert report["unhandled_500"] == 0
    assert report["other"] == {}  # no silent cuts, transport errors or malformed errors
    assert report["failed_cleanly"] > 0  # the faults did happen
    assert report["served"] > 0
    assert report["ledger_matches_requests"] is True
