"""Work deferred to after a request's response runs once, in order, and is never left behind."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cascade_gateway import after_response


def test_deferred_work_waits_for_the_request_to_run_it():
    done: list[str] = []
    token = after_response.open_request()

    assert after_response.defer(lambda: done.append("accounted"))
    assert done == []

    assert after_response.run_deferred(token) is None
    assert done == ["accounted"]


def test_outside_a_request_nothing_is_deferred():
    assert not after_response.defer(lambda: None)


async def test_work_deferred_after_the_run_is_refused_so_the_caller_does_it():
    token = after_response.open_request()
    late: list[bool] = []

    async def child_task() -> None:  # a task started during the request keeps its context
        late.append(after_response.defer(lambda: None))

    task = asyncio.get_running_loop().create_task(child_task())
    assert after_response.run_deferred(token) is None
    await task

    assert late == [False]


def test_work_that_raises_is_logged_and_the_rest_still_runs(caplog):
    done: list[str] = []
    token = after_response.open_request()
    after_response.defer(lambda: 1 / 0)  # type: ignore[arg-type, func-returns-value]
    after_response.defer(lambda: done.append("second"))

    with caplog.at_level(logging.ERROR):
        assert after_response.run_deferred(token) is None

    assert done == ["second"]
    assert "deferred to after the response failed" in caplog.text


async def test_work_that_waits_leaves_the_rest_to_the_awaitable_returned():
    done: list[str] = []

    async def write() -> None:
        await asyncio.sleep(0)
        done.append("written")

    token = after_response.open_request()
    after_response.defer(write)
    after_response.defer(lambda: done.append("after"))

    waiting = after_response.run_deferred(token)
    assert waiting is not None and done == []

    await waiting
    assert done == ["written", "after"]


async def test_a_cancellation_while_waiting_lets_the_rest_run_then_is_raised():
    done: list[str] = []
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(0.05)

    async def request() -> None:
        token = after_response.open_request()
        after_response.defer(slow)
        after_response.defer(lambda: done.append("after"))
        waiting = after_response.run_deferred(token)
        assert waiting is not None
        await waiting

    task = asyncio.get_running_loop().create_task(request())
    await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["after"]
