"""Shared fixtures: configs, a scripted provider, and the service graph built on them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from cascade_gateway.cascade.engine import CascadeEngine
from cascade_gateway.cascade.trace import Trace
from cascade_gateway.config import GatewayConfig, parse_config, resolve_models
from cascade_gateway.providers.base import Provider
from cascade_gateway.providers.scripted import ScriptedProvider
from cascade_gateway.services import build_routes
from cascade_gateway.storage.database import Database, open_database
from cascade_gateway.storage.migrations import migrate
from tests.configs import config_dict


@pytest.fixture
def config() -> GatewayConfig:
    return parse_config(config_dict())


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    """A migrated in-memory SQLite database."""
    database = await open_database("sqlite://")
    await migrate(database)
    yield database
    await database.aclose()


@pytest.fixture
def scripted() -> ScriptedProvider:
    return ScriptedProvider("local")


class Recorder:
    """A trace sink that keeps what it is given."""

    def __init__(self) -> None:
        self.traces: list[Trace] = []

    async def record(self, trace: Trace) -> None:
        self.traces.append(trace)

    def get(self, request_id: str) -> Trace | None:
        return next((t for t in self.traces if t.request_id == request_id), None)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def engine_for(config: GatewayConfig, provider: Provider, sink: Recorder) -> CascadeEngine:
    """The engine over `config`'s routes, with `provider` as its one provider (`local`)."""
    return CascadeEngine(build_routes(config, resolve_models(config), {"local": provider}), sink)


@pytest.fixture
def engine(config: GatewayConfig, scripted: ScriptedProvider, recorder: Recorder) -> CascadeEngine:
    return engine_for(config, scripted, recorder)


def pytest_configure(config: pytest.Config) -> None:
    # Token counting must work offline, exactly as in production.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
