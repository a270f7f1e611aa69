"""Configuration: the example file, litellm prices, every problem with its key path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cascade_gateway.cli import main
from cascade_gateway.config import ConfigError, load_config, parse_config, resolve_models
from tests.configs import config_dict

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads_as_written():
    config = load_config(ROOT / "config" / "example.yaml")

    models = resolve_models(config)
    assert config.cascades["default"].tiers == ["small", "large"]
    assert models["small"].price.input_per_mtok == 0.15
    assert models["large"].price.output_per_mtok == 10.00


def test_unpriced_model_known_to_litellm_takes_its_price():
    raw = config_dict()
    raw["models"]["mini"] = {"provider": "local", "model": "gpt-4o-mini"}

    price = resolve_models(parse_config(raw))["mini"].price

    assert price.input_per_mtok == pytest.approx(0.15)
    assert price.output_per_mtok == pytest.approx(0.60)
    assert price.context_window == 128000


def test_a_price_in_the_file_wins_over_litellm():
    raw = config_dict()
    raw["models"]["mini"] = {"provider": "local", "model": "gpt-4o-mini", "input_per_mtok": 9}

    price = resolve_models(parse_config(raw))["mini"].price

    assert price.input_per_mtok == 9
    assert price.output_per_mtok == pytest.approx(0.60)


def test_every_problem_is_reported_with_its_key_path():
    raw = config_dict(default={"tiers": ["small", "huge"]})
    raw["models"]["orphan"] = {
        "provider": "nowhere",
        "model": "x",
        "input_per_mtok": 1,
        "output_per_mtok": 1,
    }
    raw["models"]["mystery"] = {"provider": "local", "model": "no-such-model-anywhere"}

    with pytest.raises(ConfigError) as caught:
        parse_config(raw)

    problems = caught.value.problems
    assert any(p.startswith("models.orphan.provider: unknown provider") for p in problems)
    assert any(p.startswith("models.mystery: no price") for p in problems)
    assert any(p.startswith("cascades.default.tiers.1: unknown model 'huge'") for p in problems)
    assert len(problems) == 3


def test_schema_errors_name_the_key_path():
    raw = config_dict()
    raw["providers"]["local"]["kind"] = "grpc"
    raw["models"]["small"]["input_per_mtok"] = -1
    raw["cascades"]["default"]["threshold"] = 2

    with pytest.raises(ConfigError) as caught:
        parse_config(raw)

    paths = {p.split(":")[0] for p in caught.value.problems}
    assert paths == {
        "providers.local.kind",
        "models.small.input_per_mtok",
        "cascades.default.threshold",
    }


def test_unknown_validator_signal_is_a_config_problem():
    raw = config_dict(default={"tiers": ["small", "large"], "signals": {"vibes": {}}})

    with pytest.raises(ConfigError) as caught:
        parse_config(raw)

    assert caught.value.problems[0].startswith("cascades.default.signals:")
    assert "vibes" in caught.value.problems[0]


def test_environment_overrides_the_file(monkeypatch):
    monkeypatch.setenv("CASCADE_SERVER__MAX_BODY_BYTES", "2048")

    config = parse_config(config_dict())

    assert config.server.max_body_bytes == 2048


def test_check_config_command_prints_problems_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config_dict(default={"tiers": ["nope"]})))

    with pytest.raises(SystemExit) as caught:
        main(["check-config", str(bad)])

    assert caught.value.code == 2
    assert "cascades.default.tiers.0: unknown model 'nope'" in capsys.readouterr().err


def test_check_config_command_accepts_the_example(capsys):
    assert main(["check-config", str(ROOT / "config" / "example.yaml")]) == 0
    assert "ok" in capsys.readouterr().out


def test_serve_refuses_a_bad_config_with_the_same_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: {}\nmodels: {m: {provider: p, model: x}}\n")

    run = subprocess.run(
        [sys.executable, "-m", "cascade_gateway", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 2
    assert "models.m.provider: unknown provider 'p'" in run.stderr


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml")

    assert "cannot read file" in caught.value.problems[0]


def test_keys_cli_creates_lists_and_revokes_a_key(tmp_path, capsys):
    raw = config_dict()
    raw["storage"] = {"database_url": f"sqlite:///{tmp_path}/keys.db"}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    base = ["keys", "--config", str(path)]

    assert main([*base, "create", "team-a", "--budget-usd", "5", "--budget-period", "day"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert main([*base, "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert main([*base, "revoke", created["id"]]) == 0
    capsys.readouterr()
    assert main([*base, "show", created["id"]]) == 0
    shown = json.loads(capsys.readouterr().out)

    assert created["key"].startswith("cgk-")
    assert [k["name"] for k in listed] == ["team-a"]
    assert listed[0]["budget"]["remaining_usd"] == 5.0
    assert "key" not in listed[0]
    assert shown["revoked_at"] is not None
