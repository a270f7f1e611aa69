"""The gateway on a real socket, in front of the fake upstream on another real socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI

from cascade_gateway.app import create_app
from cascade_gateway.config import parse_config
from cascade_gateway.fake_upstream import FakeUpstream
from tests.configs import config_dict
from tests.relay import Relay, relay_to


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Run `app` under uvicorn on a free port of 127.0.0.1; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.running() as up:
        yield up


@pytest.fixture(autouse=True)
def fresh_upstream(upstream: FakeUpstream) -> None:
    upstream.clear()


def gateway_config(upstream_url: str) -> dict:
    config = config_dict(
        base_url=f"{upstream_url}/v1",
        default={"tiers": ["small", "large"]},
        anthropic={"tiers": ["haiku", "large"]},
    )
    config["providers"]["claude"] = {"kind": "anthropic", "base_url": upstream_url}
    config["models"]["haiku"] = {
        "provider": "claude",
        "model": "claude-draft",
        "input_per_mtok": 0.80,
        "output_per_mtok": 4.00,
    }
    config["models"]["tiny"] = {
        "provider": "local",
        "model": "tiny-model",
        "input_per_mtok": 0.1,
        "output_per_mtok": 0.1,
        "context_window": 100,
    }
    config["server"] = {"max_body_bytes": 64 * 1024}
    # Tests here share one gateway: failures injected by one test must not trip a breaker or
    # add retries for the next. Resilience has its own tests with its own gateways.
    for model in config["models"].values():
        model["retries"] = {"max_attempts": 1}
        model["breaker"] = {"failure_threshold": 10_000, "min_calls": 10_000}
    return config


@pytest.fixture(scope="session")
def gateway_url(upstream: FakeUpstream) -> Iterator[str]:
    app = create_app(parse_config(gateway_config(upstream.url)))
    with serve_in_thread(app) as url:
        yield url


MASTER_KEY = "test-master-key-0123456789"


@pytest.fixture(scope="module")
def locked_gateway_url(upstream: FakeUpstream, tmp_path_factory) -> Iterator[str]:
    """A gateway with a master key: every request needs a key."""
    raw = gateway_config(upstream.url)
    raw["master_key"] = MASTER_KEY
    raw["storage"] = {"database_url": f"sqlite:///{tmp_path_factory.mktemp('db')}/gw.db"}
    raw["cascades"]["thrifty"] = {"tiers": ["small", "large"], "on_budget_pressure": "degrade"}
    with serve_in_thread(create_app(parse_config(raw))) as url:
        yield url


@pytest.fixture
def admin(locked_gateway_url: str) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=locked_gateway_url, headers=headers, timeout=10) as c:
        yield c


@pytest.fixture
def new_key(admin: httpx.Client, locked_gateway_url: str):
    """Create a key with the given settings; returns (key record, an openai client using it)."""
    clients = []

    def make(**settings) -> tuple[dict, openai.OpenAI]:
        response = admin.post("/admin/keys", json={"name": "team", **settings})
        assert response.status_code == 201, response.text
        record = response.json()
        client = openai.OpenAI(
            base_url=f"{locked_gateway_url}/v1", api_key=record["key"], max_retries=0
        )
        clients.append(client)
        return record, client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(gateway_url: str):
    async with openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
def http(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=10) as c:
        yield c


@contextmanager
def keyed_gateway(upstream: FakeUpstream, storage: dict) -> Iterator[str]:
    """A gateway with a master key and the given storage settings; its base URL."""
    raw = gateway_config(upstream.url)
    raw["master_key"] = MASTER_KEY
    raw["storage"] = storage
    with serve_in_thread(create_app(parse_config(raw))) as url:
        yield url


@pytest.fixture(scope="module")
def redis_relay(redis_url: str) -> Iterator[Relay]:
    """The real Redis, behind a relay a test can cut (and must restore)."""
    with relay_to(redis_url) as relay:
        yield relay


@pytest.fixture(scope="module")
def redis_outage_gateway_url(
    upstream: FakeUpstream, redis_url: str, redis_relay: Relay, tmp_path_factory
) -> Iterator[str]:
    """Keys in SQLite, budget and rate-limit counters in Redis through `redis_relay`."""
    database = f"sqlite:///{tmp_path_factory.mktemp('outage')}/gw.db"
    redis = redis_relay.url_for(redis_url)
    storage = {"database_url": database, "redis_url": redis, "timeout_s": 1}
    with keyed_gateway(upstream, storage) as url:
        yield url


@pytest.fixture(scope="module")
def postgres_relay(postgres_url: str) -> Iterator[Relay]:
    """The real PostgreSQL, behind a relay a test can cut (and must restore)."""
    with relay_to(postgres_url) as relay:
        yield relay


@pytest.fixture(scope="module")
def postgres_outage_gateway_url(
    upstream: FakeUpstream, postgres_url: str, postgres_relay: Relay
) -> Iterator[str]:
    """Keys, counters and the ledger in PostgreSQL through `postgres_relay`."""
    storage = {"database_url": postgres_relay.url_for(postgres_url), "timeout_s": 1}
    with keyed_gateway(upstream, storage) as url:
        yield url


def make_key(gateway_url: str, **settings) -> tuple[dict, openai.OpenAI]:
    """A new key on the gateway at `gateway_url` (made with the master key, retried while the
    gateway says its storage is coming back), and an openai client that uses it and does not
    retry."""
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    for _ in range(20):
        response = httpx.post(
            f"{gateway_url}/admin/keys", json={"name": "team", **settings}, headers=headers
        )
        if response.status_code != 503:
            break
        time.sleep(float(response.headers["retry-after"]))
    assert response.status_code == 201, response.text
    record = response.json()
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=record["key"], max_retries=0)
    return record, client
