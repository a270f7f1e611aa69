"""Recorded answers to replay: one JSON object a line, each model's answer graded.

    {"id": "q1", "prompt": "...", "responses": {
        "cheap-model":  {"text": "...", "correct": true},
        "strong-model": {"text": "...", "correct": false}}}

A grade is `correct` (a boolean: quality is then the fraction correct) or `score` (a number,
e.g. 1..10 from a judge: quality is then the mean score). One file uses one kind throughout.
The GSM8K file in `shared/data/` comes from the RouteLLM project's published evaluations
(Apache-2.0).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Metric = Literal["correct", "score"]
Split = Literal["all", "train", "validation"]
SPLITS: tuple[Split, ...] = ("all", "train", "validation")

# The share of rows, by a hash of their id, in the training half.
TRAIN_PERCENT = 50


class DataError(Exception):
    """The file cannot be replayed; the message names the line."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One model's recorded answer and its grade (1.0/0.0 for correct/wrong, or the score)."""

    text: str
    quality: float
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    prompt: str
    answers: dict[str, Answer]


@dataclass(frozen=True, slots=True)
class Dataset:
    """Rows with the answers of every model they record, graded one way (`metric`)."""

    rows: tuple[Row, ...]
    metric: Metric
    source: str = ""

    @property
    def models(self) -> tuple[str, ...]:
        """Models every row has an answer from, in the first row's order."""
        if not self.rows:
            return ()
        return tuple(m for m in self.rows[0].answers if all(m in r.answers for r in self.rows))

    def split(self, part: Split) -> Dataset:
        """The rows of one half (`train`/`validation`, fixed by a hash of each id), or all."""
        if part == "all":
            return self
        rows = tuple(r for r in self.rows if (part == "train") == in_train(r.id))
        return Dataset(rows, self.metric, self.source)


def in_train(row_id: str) -> bool:
    """Whether a row belongs to the training half: a seeded, stable hash of its id."""
    digest = hashlib.sha256(f"cascade-split:{row_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 100 < TRAIN_PERCENT


def load(path: str | Path) -> Dataset:
    """Read a JSONL file of recorded answers; DataError names the first bad line."""
    source = str(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{source}: cannot read: {exc.strerror}") from exc
    rows: list[Row] = []
    metric: Metric | None = None
    prompts: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON: {exc.msg}") from exc
        row, row_metric = _row(raw, where)
        if metric is None:
            metric = row_metric
        elif row_metric != metric:
            raise DataError(f"{where}: grades with `{row_metric}`, earlier lines with `{metric}`")
        if row.prompt in prompts:
            # The replay provider finds answers by prompt.
            raise DataError(f"{where}: same prompt as line {prompts[row.prompt]}")
        prompts[row.prompt] = number
        rows.append(row)
    if metric is None:
        raise DataError(f"{source}: no rows")
    return Dataset(tuple(rows), metric, source)


def _row(raw: Any, where: str) -> tuple[Row, Metric]:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected an object")
    row_id, prompt, responses = raw.get("id"), raw.get("prompt"), raw.get("responses")
    if not isinstance(row_id, str | int) or not isinstance(prompt, str):
        raise DataError(f"{where}: needs a string `id` and `prompt`")
    if not isinstance(responses, dict) or not responses:
        raise DataError(f"{where}: needs `responses`, an object of model -> answer")
    answers: dict[str, Answer] = {}
    metrics: set[Metric] = set()
    for model, response in responses.items():
        answer, metric = _answer(response, f"{where}: responses.{model}")
        answers[model] = answer
        metrics.add(metric)
    if len(metrics) > 1:
        raise DataError(f"{where}: mixes `correct` and `score` grades")
    return Row(str(row_id), prompt, answers), metrics.pop()


def _answer(raw: Any, where: str) -> tuple[Answer, Metric]:
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
        raise DataError(f"{where}: needs a string `text`")
    finish_reason = raw.get("finish_reason", "stop")
    if "correct" in raw:
        if not isinstance(raw["correct"], bool):
            raise DataError(f"{where}: `correct` must be true or false")
        return Answer(raw["text"], 1.0 if raw["correct"] else 0.0, finish_reason), "correct"
    score = raw.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        return Answer(raw["text"], float(score), finish_reason), "score"
    raise DataError(f"{where}: needs `correct` (true/false) or a numeric `score`")
