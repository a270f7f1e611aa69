"""Picking a threshold from replayed rows, and writing it into a config without losing it."""

from __future__ import annotations

import pytest

from cascade_gateway.config import load_config
from cascade_gateway.replay.calibrate import CalibrationError, pick, write_threshold
from cascade_gateway.replay.data import load
from cascade_gateway.replay.run import replay


@pytest.fixture
def outcomes(correct_file, make_config):
    # Scores: q2 0.25 (its draft's arithmetic is wrong), the others 1.0.
    return replay(make_config(), load(correct_file)).outcomes


def test_a_quality_target_picks_the_cheapest_threshold_that_meets_it(outcomes):
    chosen = pick(outcomes, target_quality=0.75)

    assert (chosen.quality, chosen.escalation_rate) == (0.75, 0.25)


def test_the_chosen_threshold_is_written_with_few_decimals(outcomes):
    # Any threshold in (0.25, 1.0] makes the same decisions; 0.6 is the shortest midpoint.
    assert pick(outcomes, target_quality=0.75).threshold == 0.6


def test_an_unreachable_quality_target_says_what_the_best_is(outcomes):
    with pytest.raises(CalibrationError, match=r"no threshold reaches quality 0.9000; the best"):
        pick(outcomes, target_quality=0.9)


def test_a_maximum_escalation_picks_the_best_quality_within_it(outcomes):
    chosen = pick(outcomes, max_escalation=0.0)

    assert (chosen.quality, chosen.escalation_rate) == (0.5, 0.0)


def test_exactly_one_target_must_be_given(outcomes):
    with pytest.raises(ValueError, match="exactly one"):
        pick(outcomes, target_quality=0.5, max_escalation=0.5)


def test_writing_the_threshold_keeps_the_rest_of_the_file(config_file, tmp_path):
    out = tmp_path / "calibrated.yaml"

    preserved = write_threshold(config_file, "default", 0.6, out)

    before, after = config_file.read_text().splitlines(), out.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert preserved is True
    assert changed == [
        ("    threshold: 0.5   # calibrated below", "    threshold: 0.6   # calibrated below")
    ]


def test_a_cascade_without_a_threshold_gets_one(config_file, tmp_path):
    text = config_file.read_text().replace("    threshold: 0.5   # calibrated below\n", "")
    config_file.write_text(text)
    out = tmp_path / "calibrated.yaml"

    write_threshold(config_file, "default", 0.6, out)

    assert load_config(out).cascades["default"].threshold == 0.6
    assert out.read_text().startswith("# The replay tests' cascade.")


def test_a_flow_style_cascade_is_rewritten_from_its_content(config_file, tmp_path):
    text = config_file.read_text()
    start = text.index("cascades:")
    config_file.write_text(text[:start] + "cascades:\n  default: {tiers: [draft, strong]}\n")
    out = tmp_path / "calibrated.yaml"

    preserved = write_threshold(config_file, "default", 0.6, out)

    assert preserved is False
    assert load_config(out).cascades["default"].threshold == 0.6
