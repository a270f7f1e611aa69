"""A replica killed in the middle of a call leaves its reservation behind; another replica
releases it once its lease lapses, instead of holding the key's budget for the rest of its
period. A replica alive keeps renewing the lease of a call however long the call runs."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cascade_gateway.fake_upstream import FakeUpstream, Reply, Rule
from tests.configs import config_dict
from tests.integration.conftest import MASTER_KEY
from tests.processes import gateway_process

LEASE_S = 1.0
QUESTION = [{"role": "user", "content": "Hi?"}]


@pytest.fixture
def doomed_and_survivor(
    upstream: FakeUpstream, postgres_url: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple]:
    """Two replicas sharing PostgreSQL and Redis, with one-second leases: (doomed, survivor),
    each as (base URL, process)."""
    raw = config_dict(base_url=f"{upstream.url}/v1")
    raw["storage"] = {"database_url": postgres_url, "redis_url": redis_url}
    raw["budgets"] = {"reservation_lease_s": LEASE_S}
    env = {"CASCADE_MASTER_KEY": MASTER_KEY}
    with (
        gateway_process(raw, tmp_path, env=env) as doomed,
        gateway_process(raw, tmp_path, env=env) as survivor,
    ):
        yield doomed, survivor


def reserved_usd(url: str, key_id: str) -> float:
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    key = httpx.get(f"{url}/admin/keys/{key_id}", headers=headers).json()
    return key["budget"]["reserved_usd"]


def make_key(url: str, name: str) -> dict:
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    return httpx.post(
        f"{url}/admin/keys", json={"name": name, "budget_usd": 1.0}, headers=headers
    ).json()


def spend_usd(url: str, key_id: str) -> float:
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    key = httpx.get(f"{url}/admin/keys/{key_id}", headers=headers).json()
    return key["budget"]["spend_usd"]


def test_a_call_outlasting_its_lease_keeps_its_reservation_on_every_replica(
    doomed_and_survivor, upstream
):
    (holder, _), (other, _) = doomed_and_survivor
    upstream.add(Rule(model="strong-model", reply=Reply(text="slow but sure", latency_s=3)))
    key = make_key(other, "patient")
    seen: list[float] = []

    def watch() -> None:  # from the other replica, which releases what lapses
        time.sleep(1.5)  # past the first lease
        until = time.monotonic() + 1.0  # and well before the call ends
        while time.monotonic() < until:
            seen.append(reserved_usd(other, key["id"]))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    body = {"model": "large", "messages": QUESTION, "max_tokens": 100}
    auth = {"authorization": f"Bearer {key['key']}"}
    answer = httpx.post(f"{holder}/v1/chat/completions", json=body, headers=auth, timeout=10)
    watcher.join()

    assert answer.status_code == 200
    assert len(seen) > 5 and min(seen) > 0  # held throughout, past one second's lease
    assert reserved_usd(other, key["id"]) == 0
    assert spend_usd(other, key["id"]) > 0


def test_a_killed_replicas_reservation_is_released_by_another_once_its_lease_lapses(
    doomed_and_survivor, upstream
):
    (doomed, doomed_proc), (survivor, _) = doomed_and_survivor
    upstream.add(Rule(model="strong-model", reply=Reply(text="late", latency_s=5)))
    key = make_key(survivor, "orphan")
    asked = len(upstream.requests)

    def call() -> None:
        body = {"model": "large", "messages": QUESTION, "max_tokens": 100}
        auth = {"authorization": f"Bearer {key['key']}"}
        with contextlib.suppress(httpx.TransportError):  # its gateway is killed under it
            httpx.post(f"{doomed}/v1/chat/completions", json=body, headers=auth, timeout=10)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while len(upstream.requests) == asked and time.monotonic() < deadline:
        time.sleep(0.01)
    held = reserved_usd(survivor, key["id"])
    os.killpg(doomed_proc.pid, signal.SIGKILL)
    caller.join()
    deadline = time.monotonic() + 10
    while reserved_usd(survivor, key["id"]) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)

    assert held > 0  # the call was in flight, under a reservation
    assert reserved_usd(survivor, key["id"]) == 0
