"""Replaying through the real engine: the figures, worked out by hand on four rows.

With threshold 0.5 only q2 (whose draft writes "3 x 5 = 16") is escalated. Drafts are right
on q1 and q4, strong answers on q1 and q2.
"""

from __future__ import annotations

import pytest

from cascade_gateway import tokens
from cascade_gateway.replay.data import load
from cascade_gateway.replay.run import ReplayError, replay
from tests.replay.conftest import ANSWERS, DRAFT_PRICE, STRONG_PRICE, config_raw


def cost(prompt: str, text: str, price: tuple[float, float]) -> float:
    """A call's price from the gateway's own token counts."""
    prompt_tokens = tokens.count_messages([{"role": "user", "content": prompt}])
    return (prompt_tokens * price[0] + tokens.count_text(text) * price[1]) / 1e6


DRAFT_COSTS = {i: cost(p, d, DRAFT_PRICE) for i, p, d, _ in ANSWERS}
STRONG_COSTS = {i: cost(p, s, STRONG_PRICE) for i, p, _, s in ANSWERS}


@pytest.fixture
def report(correct_file, make_config):
    return replay(make_config(0.5), load(correct_file))


def test_the_draft_with_wrong_arithmetic_is_escalated(report):
    assert [(o.id, o.escalated) for o in report.outcomes] == [
        ("q1", False),
        ("q2", True),
        ("q3", False),
        ("q4", False),
    ]


def test_each_row_keeps_the_validators_score(report):
    assert [o.score for o in report.outcomes] == [1.0, 0.25, 1.0, 1.0]


def test_quality_is_the_fraction_of_served_answers_that_are_correct(report):
    summary = report.summary()

    assert summary["quality"] == 0.75  # q1 draft, q2 strong, q4 draft right; q3 wrong
    assert summary["draft_only_quality"] == 0.5
    assert summary["strong_only_quality"] == 0.5
    assert summary["escalation_rate"] == 0.25


def test_cost_is_every_draft_plus_the_escalated_strong_call(report):
    expected = sum(DRAFT_COSTS.values()) + STRONG_COSTS["q2"]

    assert report.summary()["cost_usd"] == pytest.approx(expected)


def test_strong_only_cost_is_every_strong_call(report):
    assert report.summary()["strong_only_cost_usd"] == pytest.approx(sum(STRONG_COSTS.values()))


def test_savings_compare_the_cascade_with_strong_only(report):
    strong = sum(STRONG_COSTS.values())
    spent = sum(DRAFT_COSTS.values()) + STRONG_COSTS["q2"]

    assert report.summary()["savings_pct"] == pytest.approx(100 * (strong - spent) / strong)


def test_the_oracle_escalates_only_where_the_strong_answer_is_better(report):
    oracle = report.summary()["oracle"]

    assert oracle["quality"] == 0.75
    assert oracle["escalation_rate"] == 0.25


def test_the_curve_at_the_configured_threshold_matches_what_the_engine_did(report):
    point = next(p for p in report.summary()["curve"] if p["threshold"] == 0.5)

    assert point["quality"] == report.summary()["quality"]
    assert point["cost_usd"] == pytest.approx(report.summary()["cost_usd"])


def test_the_curve_spans_thresholds_zero_to_one(report):
    thresholds = [p["threshold"] for p in report.summary()["curve"]]

    assert thresholds[0] == 0.0 and thresholds[-1] == 1.0 and len(thresholds) == 101


def test_below_the_slips_score_nothing_is_escalated(report):
    point = next(p for p in report.curve() if p.threshold == 0.2)

    assert (point.escalation_rate, point.quality) == (0.0, 0.5)


def test_with_score_grades_quality_is_the_mean_score(score_file, make_config):
    summary = replay(make_config(0.5), load(score_file)).summary()

    assert summary["metric"] == "score"
    assert summary["quality"] == (8 + 9 + 5 + 7) / 4
    assert summary["draft_only_quality"] == (8 + 2 + 5 + 7) / 4
    assert summary["strong_only_quality"] == (9 + 9 + 4 + 6) / 4


def test_with_score_grades_the_oracle_takes_the_better_score(score_file, make_config):
    oracle = replay(make_config(0.5), load(score_file)).summary()["oracle"]

    assert oracle["quality"] == (9 + 9 + 5 + 7) / 4
    assert oracle["escalation_rate"] == 0.5


def test_replay_refuses_a_model_the_data_does_not_have(correct_file, make_config):
    with pytest.raises(ReplayError, match="the data has no answers from 'gpt-5'"):
        replay(make_config(), load(correct_file), strong="gpt-5")


def test_replay_needs_a_two_tier_cascade(correct_file):
    from cascade_gateway.config import parse_config

    raw = config_raw()
    raw["cascades"]["default"]["tiers"] = ["draft"]

    with pytest.raises(ReplayError, match="has 1 tiers; replay needs exactly 2"):
        replay(parse_config(raw), load(correct_file))
