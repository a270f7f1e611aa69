"""Shared fixtures: configs, a scripted provider, the service graph built on them, and the real
PostgreSQL and Redis on 127.0.0.1.

Without those servers their tests skip — unless CASCADE_TEST_REQUIRE_SERVICES=1 (as in CI), when
an unreachable server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

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

POSTGRES_ADMIN_URL = os.environ.get(
    "CASCADE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CASCADE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CASCADE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty database for this test session, dropped afterwards."""
    import psycopg

    name = f"cascade_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    return REDIS_URL


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
