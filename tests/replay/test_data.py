"""Reading recorded answers: both grade formats, clear errors, the fixed train/validation split."""

from __future__ import annotations

import pytest

from cascade_gateway.replay.data import DataError, Dataset, Row, in_train, load
from tests.replay.conftest import DRAFT, STRONG, write_jsonl


def test_correct_grades_become_quality_one_or_zero(correct_file):
    dataset = load(correct_file)

    assert dataset.metric == "correct"
    assert [r.answers[DRAFT].quality for r in dataset.rows] == [1.0, 0.0, 0.0, 1.0]


def test_score_grades_are_kept_as_the_quality(score_file):
    dataset = load(score_file)

    assert dataset.metric == "score"
    assert [r.answers[STRONG].quality for r in dataset.rows] == [9.0, 9.0, 4.0, 6.0]


def test_models_lists_the_models_every_row_answers(correct_file):
    assert load(correct_file).models == (DRAFT, STRONG)


def test_a_file_mixing_correct_and_score_is_refused_naming_the_line(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"id": "a", "prompt": "p1", "responses": {"m": {"text": "x", "correct": True}}},
            {"id": "b", "prompt": "p2", "responses": {"m": {"text": "y", "score": 3}}},
        ],
    )

    with pytest.raises(DataError, match=r"mixed.jsonl:2: grades with `score`"):
        load(path)


def test_an_answer_without_a_grade_is_refused(tmp_path):
    path = write_jsonl(
        tmp_path / "ungraded.jsonl",
        [{"id": "a", "prompt": "p", "responses": {"m": {"text": "x"}}}],
    )

    with pytest.raises(DataError, match=r":1: responses.m: needs `correct`"):
        load(path)


def test_a_line_that_is_not_json_is_refused_naming_it(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text("{nope\n", encoding="utf-8")

    with pytest.raises(DataError, match=r"broken.jsonl:1: not JSON"):
        load(path)


def test_a_repeated_prompt_is_refused_since_answers_are_found_by_prompt(tmp_path):
    line = {"id": "a", "prompt": "same", "responses": {"m": {"text": "x", "correct": True}}}
    path = write_jsonl(tmp_path / "twice.jsonl", [line, {**line, "id": "b"}])

    with pytest.raises(DataError, match=r":2: same prompt as line 1"):
        load(path)


def test_train_and_validation_halves_partition_the_rows():
    rows = tuple(Row(f"row-{i}", f"prompt {i}", {}) for i in range(200))
    dataset = Dataset(rows, "correct")

    train, validation = dataset.split("train"), dataset.split("validation")

    assert sorted(r.id for r in train.rows + validation.rows) == sorted(r.id for r in rows)
    assert 60 < len(train.rows) < 140


def test_a_rows_half_depends_only_on_its_id():
    assert [in_train(f"q{i}") for i in range(50)] == [in_train(f"q{i}") for i in range(50)]
