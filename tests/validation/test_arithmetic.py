"""The arithmetic signal re-checks every `expression = value` an answer writes out."""

from __future__ import annotations

import pytest

from cascade_gateway.validation import build_validator
from cascade_gateway.validation.signals.arithmetic import Arithmetic, check_arithmetic, evaluate


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("3 x 60", 180.0),
        ("$1,200 x 15%", 180.0),
        ("2 + 1/2", 2.5),
        ("(4/20)*100%", 0.2),
        ("2^3", 8.0),
        ("-3 - -2", -1.0),
        ("12 \u00d7 3 \u00f7 4", 9.0),
    ],
)
def test_evaluate_reads_written_arithmetic(written, value):
    assert evaluate(written) == value


@pytest.mark.parametrize("written", ["__import__('os')", "3 x", "5 / 0", "2 ^ 999", "abc"])
def test_evaluate_refuses_anything_but_plain_arithmetic(written):
    assert evaluate(written) is None


def test_a_correct_step_checks_out():
    found = check_arithmetic("He runs 3 x 60 = 180 meters.")

    assert (found.checked, found.wrong) == (1, ())


def test_a_wrong_step_is_reported_with_the_right_value():
    assert check_arithmetic("So 12 x 5 = 50 apples.").wrong == ("12 x 5 = 50 (is 60)",)


def test_every_link_of_a_chain_is_checked():
    found = check_arithmetic("In total 2 + 1/2 = 5/2 = 2.5 bolts.")

    assert (found.checked, found.wrong) == (2, ())


def test_calculator_annotations_are_checked():
    assert check_arithmetic("80 + 50 = $<<80+50=120>>120").wrong == ("80+50 = 120 (is 130)",)


def test_a_step_shown_twice_counts_once():
    found = check_arithmetic("3 x 60 = <<3*60=180>>180 meters")

    assert found.checked == 1


def test_a_value_rounded_to_the_digits_it_shows_passes():
    assert check_arithmetic("Each gets 10 / 3 = 3.33 cups.").wrong == ()


def test_a_whole_number_standing_for_a_fraction_fails():
    assert check_arithmetic("Each gets 10 / 3 = 3 cups.").wrong == ("10 / 3 = 3 (is 3.333333333)",)


def test_a_percent_written_as_the_ratio_times_100_passes():
    assert check_arithmetic("That is (4 / 20) * 100 = 20% of them.").wrong == ()


def test_sides_that_mix_words_and_numbers_are_skipped():
    assert check_arithmetic("3 sprints * 60 meters = 180 meters").checked == 0


def test_an_equation_continuing_a_computation_in_words_is_skipped():
    # Only "60 + 20" would be seen; the "3 times" before it is part of the computation.
    assert check_arithmetic("It is 3 times 60 + 20 = 200.").checked == 0


def test_a_list_bullet_is_not_mistaken_for_a_minus():
    found = check_arithmetic("Steps:\n- 3 x 4 = 12\n- 12 + 1 = 13")

    assert (found.checked, found.wrong) == (2, ())


def test_markdown_escaped_operators_are_read():
    assert check_arithmetic(r"So 5 \* 3 = 16.").wrong == ("5 * 3 = 16 (is 15)",)


def test_the_signal_does_not_apply_to_an_answer_without_arithmetic(ask, answer):
    assert Arithmetic()(ask(), answer("The capital of France is Paris.")) is None


def test_the_signal_scores_one_when_every_step_checks_out(ask, answer):
    score = Arithmetic()(ask(), answer("3 x 60 = 180, and 180 x 3 = 540."))

    assert (score.score, score.detail) == (1.0, "2/2 steps check out")


def test_one_wrong_step_scores_a_quarter_and_names_the_step(ask, answer):
    score = Arithmetic()(ask(), answer("3 x 60 = 180, and 180 x 3 = 560."))

    assert score.score == 0.25
    assert score.detail == "1/2 steps check out; 180 x 3 = 560 (is 540)"


def test_the_signal_takes_a_weight(ask, answer):
    assert Arithmetic(weight=2.0)(ask(), answer("2 + 2 = 4")).weight == 2.0


async def test_the_default_validator_escalates_an_answer_with_wrong_arithmetic(ask, answer):
    verdict = await build_validator().validate(ask("What is 12 times 5?"), answer("12 x 5 = 50."))

    assert verdict.accepted is False
    assert "weakest: arithmetic 0.25" in verdict.reason


def test_a_chained_annotation_checks_every_link():
    # 2*4 + 3*6 is 26: the first link is wrong, the second (24 + 18 = 42) right.
    found = check_arithmetic("She had <<2*4+3*6=24+18=42>>42 colors.")

    assert found.checked == 2
    assert found.wrong == ("2*4+3*6 = 42 (is 26)",)


def test_several_annotations_in_one_are_each_checked():
    found = check_arithmetic("Each gets $<<90+150=240;240/3=80>>80.")

    assert (found.checked, found.wrong) == (2, ())
    assert check_arithmetic("Each gets $<<90+150=240;240/3=70>>70.").wrong == (
        "240/3 = 70 (is 80)",
    )
