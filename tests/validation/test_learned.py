"""The learned scorer: opt-in, a probability from shipped weights, computed in pure Python."""

from __future__ import annotations

import pytest

from cascade_gateway.validation import build_validator
from cascade_gateway.validation.signals.features import FEATURE_NAMES, math_features
from cascade_gateway.validation.signals.learned import Learned, LogisticModel, shipped_model

QUESTION = "Tom has 3 boxes of 12 pencils. He gives away 10 pencils. How many are left?"
WORKED = "Tom has 3 x 12 = 36 pencils.\nAfter giving away 10, he has 36 - 10 = 26 left.\n#### 26"
SLIP = "Tom has 3 x 12 = 36 pencils.\nAfter giving away 10, he has 36 - 10 = 24 left.\n#### 24"


def test_features_are_computed_for_every_name():
    assert len(math_features(QUESTION, WORKED)) == len(FEATURE_NAMES)


def test_the_shipped_weights_fit_the_features():
    assert shipped_model().features == FEATURE_NAMES


def test_weights_trained_on_other_features_are_refused():
    data = {"features": ["other"], "mean": [0], "scale": [1], "coef": [1], "intercept": 0}

    with pytest.raises(ValueError, match="trained on other features"):
        LogisticModel.from_json(data)


def test_a_constant_feature_does_not_divide_by_zero():
    names = list(FEATURE_NAMES)
    zeros = [0.0] * len(names)
    data = {"features": names, "mean": zeros, "scale": zeros, "coef": zeros, "intercept": 0.0}

    assert LogisticModel.from_json(data).probability(zeros) == 0.5


def test_a_worked_answer_scores_higher_than_the_same_answer_with_a_slip(ask, answer):
    clean = Learned()(ask(QUESTION), answer(WORKED)).score
    slipped = Learned()(ask(QUESTION), answer(SLIP)).score

    assert clean > slipped


def test_a_cut_off_answer_scores_lower_than_a_finished_one(ask, answer):
    cut = "Tom has 3 x 12 = 36 pencils.\nAfter giving away 10, he has 36 - 10"

    assert (
        Learned()(ask(QUESTION), answer(cut)).score < Learned()(ask(QUESTION), answer(WORKED)).score
    )


def test_the_detail_gives_the_probability_and_the_feature_most_against(ask, answer):
    detail = Learned()(ask(QUESTION), answer(SLIP)).detail

    assert detail.startswith("p(correct)=")
    assert "most against: arith_wrong" in detail


def test_the_learned_scorer_does_not_apply_in_json_mode(ask, answer):
    request = ask(QUESTION, response_format={"type": "json_object"})

    assert Learned()(request, answer('{"left": 26}')) is None


def test_the_learned_scorer_is_off_by_default():
    assert "learned" not in [s.name for s in build_validator().signals]


def test_a_cascade_can_turn_the_learned_scorer_on():
    validator = build_validator(signals={"learned": {"enabled": True, "weight": 2.0}})

    assert next(s for s in validator.signals if s.name == "learned").weight == 2.0
