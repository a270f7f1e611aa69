"""What counts as an outage of the gateway's storage (a 503 to retry) and what is a bug (500)."""

from __future__ import annotations

import socket
import sqlite3

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cascade_gateway.storage.outage import is_outage


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sqlite_locked_past_its_timeout_is_an_outage(tmp_path):
    path = tmp_path / "gateway.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)

    with pytest.raises(sqlite3.OperationalError) as caught:
        waiter.execute("BEGIN IMMEDIATE")

    assert is_outage(caught.value)


def test_sqlite_refusing_bad_sql_is_not_an_outage():
    with pytest.raises(sqlite3.OperationalError) as caught:
        sqlite3.connect(":memory:").execute("SELECT * FROM no_such_table")

    assert not is_outage(caught.value)


async def test_postgresql_refusing_connections_is_an_outage():
    with pytest.raises(psycopg.OperationalError) as caught:
        await psycopg.AsyncConnection.connect(f"postgresql://127.0.0.1:{closed_port()}/test")

    assert is_outage(caught.value)


async def test_postgresql_refusing_bad_sql_is_not_an_outage(postgres_url):
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        with pytest.raises(psycopg.Error) as caught:
            await conn.execute("SELECT * FROM no_such_table")

    assert not is_outage(caught.value)


async def test_redis_refusing_connections_is_an_outage():
    client = aioredis.Redis(port=closed_port(), retry=Retry(NoBackoff(), retries=0))

    with pytest.raises(Exception) as caught:
        await client.ping()

    assert is_outage(caught.value)
    await client.aclose()


async def test_redis_refusing_a_command_is_not_an_outage(redis_url):
    client = aioredis.from_url(redis_url)

    with pytest.raises(Exception) as caught:
        await client.execute_command("NO-SUCH-COMMAND")

    assert not is_outage(caught.value)
    await client.aclose()


def test_an_error_of_the_gateways_own_is_not_an_outage():
    assert not is_outage(ValueError("a bug"))
