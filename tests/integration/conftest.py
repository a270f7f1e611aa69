"""Real PostgreSQL and Redis on 127.0.0.1, and gateway processes sharing them.

Without the servers these tests skip — unless CASCADE_TEST_REQUIRE_SERVICES=1 (as in CI), when
an unreachable server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cascade_gateway.fake_upstream import FakeUpstream
from tests.configs import config_dict
from tests.processes import gateway_process

POSTGRES_ADMIN_URL = os.environ.get(
    "CASCADE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CASCADE_TEST_REDIS", "redis://127.0.0.1:6379/0")
MASTER_KEY = "integration-master-key-0123456789"


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


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.running() as up:
        yield up


@pytest.fixture(scope="module")
def gateways(
    upstream: FakeUpstream, postgres_url: str, redis_url: str, tmp_path_factory
) -> Iterator[list[str]]:
    """Two gateway processes sharing PostgreSQL and Redis, in front of the fake upstream."""
    raw = config_dict(base_url=f"{upstream.url}/v1")
    raw["storage"] = {"database_url": postgres_url, "redis_url": redis_url}
    env = {"CASCADE_MASTER_KEY": MASTER_KEY}
    folder = Path(tmp_path_factory.mktemp("shared"))
    with (
        gateway_process(raw, folder, env=env) as (first, _),
        gateway_process(raw, folder, env=env) as (second, _),
    ):
        yield [first, second]


@pytest.fixture
def admin(gateways: list[str]) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=gateways[0], headers=headers, timeout=30) as client:
        yield client
