"""Gateway processes sharing the real PostgreSQL and Redis (`postgres_url`, `redis_url`:
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cascade_gateway.fake_upstream import FakeUpstream
from tests.configs import config_dict
from tests.processes import gateway_process

MASTER_KEY = "integration-master-key-0123456789"


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
