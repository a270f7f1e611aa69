"""benchmarks/escalation_gain.py: what escalating each slice of rows, lowest validator score
first, gains over a random pick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.replay.conftest import DRAFT, STRONG, write_jsonl

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "escalation_gain.py"


def gain(data: Path, decisions: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SCRIPT), "--data", str(data), "--decisions", str(decisions)]
    argv += ["--draft", DRAFT, "--strong", STRONG, *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_slices_are_cut_lowest_score_first_and_priced_against_a_random_pick(
    correct_file: Path, tmp_path: Path
):
    # q2 (draft wrong, strong right) and q3 (both wrong) score lowest: escalating them gains
    # q2; a random pick of two of the four rows would gain nothing on average.
    scores = {"q2": 0.1, "q3": 0.2, "q1": 0.9, "q4": 0.95}
    decisions = write_jsonl(
        tmp_path / "decisions.jsonl", [{"id": i, "score": s} for i, s in scores.items()]
    )

    done = gain(correct_file, decisions, "--slices", "2", "--json")

    assert done.returncode == 0, done.stderr
    first, last = json.loads(done.stdout)["slices"]
    assert (first["escalated_to"], first["max_score"]) == (0.5, 0.2)
    assert (first["draft_quality"], first["strong_quality"]) == (0.0, 0.5)
    assert (first["gain"], first["random_gain"], first["served_quality"]) == (0.5, 0.0, 0.75)
    # Escalating everything serves strong-only quality (q1 and q2 right).
    assert (last["gain"], last["random_gain"], last["served_quality"]) == (-0.5, -0.5, 0.5)


def test_decisions_naming_rows_the_data_lacks_are_refused(correct_file: Path, tmp_path: Path):
    decisions = write_jsonl(tmp_path / "decisions.jsonl", [{"id": "q9", "score": 0.5}])

    done = gain(correct_file, decisions)

    assert done.returncode == 2
    assert "q9" in done.stderr
