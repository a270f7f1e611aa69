"""`cascade-gateway replay` and `calibrate`, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade_gateway.cli import main
from cascade_gateway.config import load_config

REPO = Path(__file__).resolve().parents[2]
DEV_FILE = REPO.parent / "shared" / "data" / "gsm8k_cascade_dev.jsonl"
SHIPPED_CONFIG = REPO / "config" / "gsm8k-cascade.yaml"


def replay_json(capsys, *args: str) -> dict:
    assert main(["replay", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_replay_json_prints_the_headline_figures(correct_file, config_file, capsys):
    summary = replay_json(capsys, "--data", str(correct_file), "--config", str(config_file))

    assert summary["n"] == 4
    assert (summary["quality"], summary["escalation_rate"]) == (0.75, 0.25)
    assert {"draft_only_quality", "strong_only_quality", "cost_usd", "strong_only_cost_usd",
            "savings_pct", "curve"} <= set(summary)  # fmt: skip


def test_replay_threshold_flag_overrides_the_configured_one(correct_file, config_file, capsys):
    args = ("--data", str(correct_file), "--config", str(config_file), "--threshold", "0.1")

    assert replay_json(capsys, *args)["escalation_rate"] == 0.0


def test_replay_price_flags_override_the_configs_prices(correct_file, config_file, capsys):
    args = ("--data", str(correct_file), "--config", str(config_file))
    base = replay_json(capsys, *args)

    doubled = replay_json(capsys, *args, "--strong-price", "20", "60")

    assert doubled["strong_only_cost_usd"] == pytest.approx(2 * base["strong_only_cost_usd"])


def test_replay_writes_one_decision_per_row(correct_file, config_file, tmp_path, capsys):
    out = tmp_path / "decisions.jsonl"

    replay_json(
        capsys,
        "--data",
        str(correct_file),
        "--config",
        str(config_file),
        "--decisions-out",
        str(out),
    )

    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(d["id"], d["escalated"], d["score"]) for d in decisions] == [
        ("q1", False, 1.0),
        ("q2", True, 0.25),
        ("q3", False, 1.0),
        ("q4", False, 1.0),
    ]


def test_replay_without_json_prints_a_table_and_draws_the_plot(
    correct_file, config_file, tmp_path, capsys
):
    pytest.importorskip("matplotlib")
    png = tmp_path / "plot.png"

    code = main(
        ["replay", "--data", str(correct_file), "--config", str(config_file), "--plot", str(png)]
    )

    out = capsys.readouterr().out
    assert code == 0
    assert "cascade @ 0.5" in out and f"plot: {png}" in out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_replay_reports_bad_data_and_exits_2(tmp_path, config_file, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")

    assert main(["replay", "--data", str(bad), "--config", str(config_file), "--json"]) == 2
    assert "bad.jsonl:1: not JSON" in capsys.readouterr().err


def test_calibrate_writes_the_threshold_that_meets_the_target(
    correct_file, config_file, tmp_path, capsys
):
    out = tmp_path / "calibrated.yaml"

    code = main(
        ["calibrate", "--data", str(correct_file), "--config", str(config_file),
         "--target-quality", "0.75", "--out", str(out)]
    )  # fmt: skip

    assert code == 0
    assert load_config(out).cascades["default"].threshold == 0.6
    assert "threshold 0.6 on 4 rows" in capsys.readouterr().out


def test_calibrate_relative_target_is_a_share_of_strong_only(
    correct_file, config_file, tmp_path, capsys
):
    out = tmp_path / "calibrated.yaml"

    main(
        ["calibrate", "--data", str(correct_file), "--config", str(config_file),
         "--target-quality", "1.5", "--relative", "--out", str(out), "--json"]
    )  # fmt: skip

    # Strong-only quality is 0.5, so the target is 0.75.
    assert json.loads(capsys.readouterr().out)["quality"] == 0.75


def test_calibrate_with_an_unreachable_target_exits_2(correct_file, config_file, capsys):
    code = main(
        ["calibrate", "--data", str(correct_file), "--config", str(config_file),
         "--target-quality", "0.99"]
    )  # fmt: skip

    assert code == 2
    assert "no threshold reaches quality" in capsys.readouterr().err


@pytest.mark.skipif(not DEV_FILE.is_file(), reason="shared/data is not beside the repository")
def test_the_shipped_config_meets_the_bar_on_the_validation_half(capsys):
    summary = replay_json(
        capsys, "--data", str(DEV_FILE), "--config", str(SHIPPED_CONFIG), "--split", "validation"
    )

    assert summary["quality"] >= 0.95 * summary["strong_only_quality"]
    assert summary["savings_pct"] >= 50.0
