"""Tiny recorded-answer files, written per test, and a config whose validator decides them
predictably: only the `arithmetic` soft signal is on, so a draft whose arithmetic is wrong
scores 0.25, every other draft 1.0."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cascade_gateway.config import GatewayConfig, parse_config

DRAFT, STRONG = "cheap-model", "strong-model"
DRAFT_PRICE, STRONG_PRICE = (1.0, 2.0), (10.0, 30.0)

# (id, prompt, draft text, strong text): draft 2 shows a wrong step, the others do not.
ANSWERS = (
    ("q1", "What is 3 times 4?", "3 x 4 = 12\n#### 12", "3 * 4 = 12, so 12."),
    ("q2", "What is 3 times 5?", "3 x 5 = 16\n#### 16", "3 * 5 = 15, so 15."),
    ("q3", "What is 7 minus 7?", "It is 7.", "It is 1."),
    ("q4", "What is 2 plus 2?", "2 + 2 = 4", "It is 5."),
)
CORRECT = {"q1": (True, True), "q2": (False, True), "q3": (False, False), "q4": (True, False)}
SCORES = {"q1": (8, 9), "q2": (2, 9), "q3": (5, 4), "q4": (7, 6)}


def rows(grades: dict[str, tuple[Any, Any]], key: str) -> list[dict[str, Any]]:
    return [
        {
            "id": row_id,
            "prompt": prompt,
            "responses": {
                DRAFT: {"text": draft, key: grades[row_id][0]},
                STRONG: {"text": strong, key: grades[row_id][1]},
            },
        }
        for row_id, prompt, draft, strong in ANSWERS
    ]


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def correct_file(tmp_path: Path) -> Path:
    """Four rows graded `correct`: draft right on q1 and q4, strong right on q1 and q2."""
    return write_jsonl(tmp_path / "correct.jsonl", rows(CORRECT, "correct"))


@pytest.fixture
def score_file(tmp_path: Path) -> Path:
    """The same four rows graded with a 1..10 `score`."""
    return write_jsonl(tmp_path / "score.jsonl", rows(SCORES, "score"))


def config_raw(threshold: float = 0.5) -> dict[str, Any]:
    off = {"enabled": False}
    return {
        "providers": {"up": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {
            "draft": {
                "provider": "up",
                "model": DRAFT,
                "input_per_mtok": DRAFT_PRICE[0],
                "output_per_mtok": DRAFT_PRICE[1],
            },
            "strong": {
                "provider": "up",
                "model": STRONG,
                "input_per_mtok": STRONG_PRICE[0],
                "output_per_mtok": STRONG_PRICE[1],
            },
        },
        "storage": {"database_url": "sqlite://"},
        "cascades": {
            "default": {
                "tiers": ["draft", "strong"],
                "threshold": threshold,
                "signals": {
                    "hedging": off,
                    "complexity": off,
                    "length_fit": off,
                    "logprob": off,
                },
            }
        },
    }


@pytest.fixture
def make_config() -> Callable[..., GatewayConfig]:
    """`make_config(threshold=0.5)`: the predictable two-tier config."""
    return lambda threshold=0.5: parse_config(config_raw(threshold))


CONFIG_TEXT = """\
# The replay tests' cascade.
providers:
  up:
    kind: openai
    base_url: http://127.0.0.1:9/v1   # never called
models:
  draft: {provider: up, model: cheap-model, input_per_mtok: 1.0, output_per_mtok: 2.0}
  strong: {provider: up, model: strong-model, input_per_mtok: 10.0, output_per_mtok: 30.0}
storage:
  database_url: "sqlite://"
cascades:
  default:
    tiers: [draft, strong]
    threshold: 0.5   # calibrated below
    signals:
      hedging: {enabled: false}
      complexity: {enabled: false}
      length_fit: {enabled: false}
      logprob: {enabled: false}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The same config as a YAML file with comments, for the commands."""
    path = tmp_path / "cascade.yaml"
    path.write_text(CONFIG_TEXT, encoding="utf-8")
    return path
