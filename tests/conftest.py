"""Shared fixtures: configs, a scripted provider, and the service graph built on them."""

from __future__ import annotations

import os

import pytest

from cascade_gateway.config import GatewayConfig, parse_config
from cascade_gateway.providers.scripted import ScriptedProvider
from cascade_gateway.services import Services, build_services
from tests.configs import config_dict


@pytest.fixture
def config() -> GatewayConfig:
    return parse_config(config_dict())


@pytest.fixture
def scripted() -> ScriptedProvider:
    return ScriptedProvider("local")


@pytest.fixture
def services(config: GatewayConfig, scripted: ScriptedProvider) -> Services:
    return build_services(config, providers={"local": scripted})


def pytest_configure(config: pytest.Config) -> None:
    # Token counting must work offline, exactly as in production.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
