"""The validator as the cascade uses it: built from config, run on a draft, one verdict."""

from __future__ import annotations

import asyncio
import math

import pytest

from cascade_gateway.domain import ChatRequest, Completion
from cascade_gateway.validation import SIGNAL_NAMES, SignalScore, Validator, build_validator
from cascade_gateway.validation.validator import OPT_IN


class Fixed:
    """A sync signal that always says the same thing, and counts its calls."""

    def __init__(self, name: str, score: SignalScore | None) -> None:
        self.name = name
        self.score = score
        self.calls = 0

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        self.calls += 1
        return self.score


class SlowJudge:
    """An async signal, as a judge model calling an LLM would be."""

    name = "judge"

    def __init__(self, score: float) -> None:
        self.score = score
        self.awaited = False

    async def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore:
        await asyncio.sleep(0)
        self.awaited = True
        return SignalScore.of_soft(self.name, self.score, 1.0, "judged")


class QueryOnly:
    """A signal that reads only the question: it offers `score_query`, and counts its calls."""

    def __init__(self, name: str = "prior", score: float = 0.9, fails: bool = False) -> None:
        self.name = name
        self.score = score
        self.fails = fails
        self.query_calls = 0

    def score_query(self, request: ChatRequest) -> SignalScore:
        self.query_calls += 1
        if self.fails:
            raise RuntimeError("prior offline")
        return SignalScore.of_soft(self.name, self.score, 1.0, request.messages[-1]["content"])

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore:
        return self.score_query(request)


class Broken:
    name = "broken"

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore:
        raise RuntimeError("judge offline")


async def test_default_validator_accepts_a_plain_factual_answer(ask, answer):
    verdict = await build_validator().validate(ask(), answer("The capital of France is Paris."))

    assert verdict.accepted is True
    assert verdict.reason is None


async def test_default_validator_rejects_a_hedging_answer(ask, answer):
    text = "I'm not sure, but it might possibly be Lyon, I think."

    verdict = await build_validator().validate(ask(), answer(text))

    assert verdict.accepted is False
    assert verdict.reason.startswith("score 0.34 < threshold 0.70 (weakest: hedging")


async def test_default_validator_rejects_a_refusal(ask, answer):
    text = "I'm sorry, but I can't help with that."

    verdict = await build_validator().validate(ask(), answer(text))

    assert verdict.accepted is False
    assert verdict.reason == 'refusal: "i can\'t help"'


async def test_default_validator_rejects_a_truncated_answer(ask, answer):
    verdict = await build_validator().validate(ask(), answer("The capital", finish_reason="length"))

    assert verdict.reason == "truncation: finish_reason=length"


async def test_default_validator_rejects_a_clean_answer_the_model_was_unsure_of(ask, answer):
    unsure = answer("The capital of France is Paris.", logprobs=[math.log(0.3)] * 8)

    assert (await build_validator().validate(ask(), unsure)).accepted is False


async def test_default_validator_accepts_a_confident_answer(ask, answer):
    sure = answer("The capital of France is Paris.", logprobs=[-0.01] * 8)

    assert (await build_validator().validate(ask(), sure)).accepted is True


async def test_complexity_alone_does_not_reject_a_clean_answer(ask, answer):
    question = "Prove step by step that sqrt(2) is irrational; derive and analyze the argument."
    proof = (
        "Suppose sqrt(2) = p/q in lowest terms. Then p^2 = 2q^2, so p is even; write p = 2k. "
        "Then q^2 = 2k^2, so q is even too, contradicting lowest terms."
    )

    assert (await build_validator().validate(ask(question), answer(proof))).accepted is True


async def test_verdict_reports_the_validators_threshold(ask, answer):
    assert (await build_validator(0.55).validate(ask(), answer())).threshold == 0.55


async def test_signals_that_do_not_apply_are_left_out(ask, answer):
    verdict = await build_validator().validate(ask(), answer())

    assert [s.name for s in verdict.signals] == [
        "truncation",
        "empty",
        "refusal",
        "hedging",
        "complexity",
    ]


def test_signal_names_list_the_built_ins_in_evaluation_order():
    assert SIGNAL_NAMES == (
        "truncation",
        "empty",
        "refusal",
        "json",
        "tool_calls",
        "hedging",
        "logprob",
        "arithmetic",
        "complexity",
        "length_fit",
        "learned",
    )


def test_build_validator_runs_every_built_in_but_the_opt_in_ones_by_default():
    expected = [name for name in SIGNAL_NAMES if name not in OPT_IN]

    assert [s.name for s in build_validator().signals] == expected


def test_the_learned_scorer_is_the_only_opt_in_signal():
    assert frozenset({"learned"}) == OPT_IN


def test_build_validator_leaves_out_a_disabled_signal():
    validator = build_validator(signals={"logprob": {"enabled": False}})

    assert "logprob" not in [s.name for s in validator.signals]


def test_a_chain_with_the_logprob_signal_needs_logprobs_and_one_without_does_not():
    assert build_validator().needs_logprobs
    assert not build_validator(signals={"logprob": {"enabled": False}}).needs_logprobs
    assert not Validator([Fixed("custom", None)], 0.5).needs_logprobs


async def test_build_validator_applies_a_weight(ask, answer):
    validator = build_validator(signals={"hedging": {"weight": 2.0}})

    verdict = await validator.validate(ask(), answer())

    assert verdict.signal("hedging").weight == 2.0


def test_build_validator_names_an_unknown_signal():
    with pytest.raises(ValueError, match=r"unknown signal 'hedge' \(known: truncation, empty"):
        build_validator(signals={"hedge": {}})


def test_build_validator_names_an_unknown_option():
    expected = r"hedging: unknown option 'wieght' \(options: enabled, weight\)"
    with pytest.raises(ValueError, match=expected):
        build_validator(signals={"hedging": {"wieght": 2.0}})


def test_build_validator_refuses_a_weight_on_a_gate():
    expected = r"truncation: unknown option 'weight' \(options: enabled\)"
    with pytest.raises(ValueError, match=expected):
        build_validator(signals={"truncation": {"weight": 2.0}})


@pytest.mark.parametrize("weight", [-1.0, "heavy", True, math.inf])
def test_build_validator_refuses_a_bad_weight(weight):
    with pytest.raises(ValueError, match=r"hedging.weight must be a number >= 0"):
        build_validator(signals={"hedging": {"weight": weight}})


def test_build_validator_refuses_a_non_boolean_enabled():
    with pytest.raises(ValueError, match=r"logprob.enabled must be true or false"):
        build_validator(signals={"logprob": {"enabled": "no"}})


def test_build_validator_refuses_settings_that_are_not_a_mapping():
    with pytest.raises(ValueError, match=r"hedging: settings must be a mapping, got 2.0"):
        build_validator(signals={"hedging": 2.0})  # type: ignore[dict-item]


def test_build_validator_reports_every_problem_at_once():
    with pytest.raises(ValueError) as caught:
        build_validator(signals={"nope": {}, "hedging": {"x": 1}, "logprob": {"weight": -1}})

    assert str(caught.value).count(";") == 2


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_threshold_outside_zero_one_is_refused(threshold):
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        build_validator(threshold)


async def test_custom_async_signal_is_awaited(ask, answer):
    judge = SlowJudge(0.2)

    verdict = await Validator([judge], threshold=0.7).validate(ask(), answer())

    assert judge.awaited is True
    assert verdict.score == pytest.approx(0.2)


async def test_custom_sync_signal_is_combined(ask, answer):
    shouting = Fixed("shouting", SignalScore.of_soft("shouting", 0.5, 1.0, "all caps"))

    verdict = await Validator([shouting], threshold=0.7).validate(ask(), answer())

    assert verdict.accepted is False


async def test_signal_returning_none_is_left_out(ask, answer):
    verdict = await Validator([Fixed("absent", None)], threshold=0.7).validate(ask(), answer())

    assert verdict.signals == ()
    assert verdict.score == 1.0


async def test_first_failed_gate_ends_the_run(ask, answer):
    later = Fixed("later", SignalScore.of_soft("later", 1.0, 1.0, ""))
    failing = Fixed("gate", SignalScore.of_gate("gate", False, "no"))

    await Validator([failing, later], threshold=0.7).validate(ask(), answer())

    assert later.calls == 0


async def test_signal_that_raises_rejects_the_draft(ask, answer, caplog):
    verdict = await Validator([Broken()], threshold=0.7).validate(ask(), answer())

    assert verdict.reason == "broken: signal raised RuntimeError: judge offline"
    assert "validation signal 'broken' failed" in caplog.text


async def test_a_query_only_signal_scored_early_is_not_scored_again(ask, answer):
    prior = QueryOnly(score=0.9)
    validator = Validator([Fixed("fixed", SignalScore.of_soft("fixed", 0.5, 1.0, "")), prior], 0.6)

    early = validator.score_query_soon(ask("Why?"))
    await asyncio.sleep(0)  # the event loop's next turn: the draft would be in flight
    assert prior.query_calls == 1
    verdict = await validator.validate(ask("Why?"), answer(), early)

    assert prior.query_calls == 1
    assert verdict.signal("prior").detail == "Why?"
    assert verdict.score == pytest.approx(0.7)


async def test_query_scores_not_ready_when_the_draft_answers_are_scored_in_line_once(ask, answer):
    prior = QueryOnly()
    validator = Validator([prior], 0.6)

    early = validator.score_query_soon(ask())
    verdict = await validator.validate(ask(), answer(), early)
    await asyncio.sleep(0)

    assert verdict.signal("prior").score == 0.9
    assert prior.query_calls == 1


async def test_a_query_only_signal_that_raised_early_fails_as_a_gate(ask, answer):
    validator = Validator([QueryOnly(fails=True), Fixed("later", None)], 0.5)

    early = validator.score_query_soon(ask())
    await asyncio.sleep(0)
    verdict = await validator.validate(ask(), answer(), early)

    assert verdict.accepted is False
    assert verdict.reason == "prior: signal raised RuntimeError: prior offline"


def test_a_chain_without_query_only_signals_has_nothing_to_score_early(ask):
    assert Validator([Fixed("custom", None)], 0.5).score_query_soon(ask()) is None


async def test_the_complexity_prior_is_scored_from_the_query_alone(ask, answer):
    validator = build_validator()

    early = validator.score_query_soon(ask("Prove step by step that 2 + 2 = 4."))
    await asyncio.sleep(0)
    verdict = await validator.validate(ask("What is 2 + 2?"), answer("4."), early)

    # The question asked early is the one judged: a proof, not the sum asked later.
    assert "prove" in verdict.signal("complexity").detail
