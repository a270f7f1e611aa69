"""Combining signal scores into a verdict: a pure function of the scores and the threshold."""

from __future__ import annotations

import pytest

from cascade_gateway.validation import SignalScore, combine


def soft(name: str, score: float, weight: float = 1.0) -> SignalScore:
    return SignalScore.of_soft(name, score, weight, f"{name} detail")


def gate(name: str, passed: bool) -> SignalScore:
    return SignalScore.of_gate(name, passed, f"{name} detail")


def test_failed_gate_rejects_whatever_the_soft_signals_say():
    verdict = combine([gate("truncation", False), soft("hedging", 1.0)], 0.7)

    assert verdict.accepted is False


def test_failed_gate_sets_the_score_to_zero():
    assert combine([gate("truncation", False), soft("hedging", 1.0)], 0.7).score == 0.0


def test_reason_is_the_first_failed_gate():
    verdict = combine([gate("truncation", False), gate("empty", False)], 0.7)

    assert verdict.reason == "truncation: truncation detail"


def test_passed_gates_leave_the_score_to_the_soft_signals():
    assert combine([gate("empty", True), soft("hedging", 0.8)], 0.7).score == pytest.approx(0.8)


def test_score_is_the_weighted_mean_of_soft_signals():
    verdict = combine([soft("a", 1.0, weight=3.0), soft("b", 0.0, weight=1.0)], 0.7)

    assert verdict.score == pytest.approx(0.75)


def test_no_soft_signals_score_one():
    assert combine([gate("empty", True)], 0.7).score == 1.0


def test_soft_signals_of_zero_weight_score_one():
    assert combine([soft("a", 0.0, weight=0.0)], 0.7).score == 1.0


def test_score_equal_to_threshold_is_accepted():
    verdict = combine([soft("a", 0.7)], 0.7)

    assert verdict.accepted is True
    assert verdict.reason is None


def test_low_score_reason_names_score_threshold_and_weakest_signal():
    verdict = combine([soft("hedging", 0.2), soft("complexity", 0.6)], 0.7)

    assert verdict.reason == ("score 0.40 < threshold 0.70 (weakest: hedging 0.20, hedging detail)")


def test_verdict_keeps_every_score_and_the_threshold():
    scores = [gate("empty", True), soft("hedging", 0.9)]

    verdict = combine(scores, 0.5)

    assert verdict.signals == tuple(scores)
    assert verdict.threshold == 0.5


def test_same_scores_replay_at_another_threshold():
    scores = [soft("hedging", 0.6)]

    assert combine(scores, 0.5).accepted is True
    assert combine(scores, 0.7).accepted is False


def test_soft_score_is_clamped_to_zero_one():
    assert SignalScore.of_soft("a", 1.7, 1.0, "").score == 1.0
    assert SignalScore.of_soft("a", -0.2, 1.0, "").score == 0.0


def test_soft_signal_passes_from_one_half():
    assert SignalScore.of_soft("a", 0.5, 1.0, "").passed is True
    assert SignalScore.of_soft("a", 0.49, 1.0, "").passed is False


def test_gate_has_no_weight():
    assert gate("empty", True).weight == 0.0


def test_verdict_finds_a_signal_by_name():
    verdict = combine([gate("empty", True), soft("hedging", 0.9)], 0.7)

    assert verdict.signal("hedging").score == 0.9
    assert verdict.signal("logprob") is None
