"""Shielded work runs to its end whichever way its caller is cancelled, then the caller sees
the cancellation."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from cascade_gateway.shielding import shielded


async def slow_work(done: list[str]) -> str:
    await asyncio.sleep(0.05)
    done.append("done")
    return "result"


async def test_a_native_cancel_waits_for_the_work_then_is_raised():
    done: list[str] = []
    task = asyncio.create_task(shielded(slow_work(done)))
    await asyncio.sleep(0.01)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert done == ["done"]


async def test_an_anyio_scope_cancelled_meanwhile_waits_for_the_work():
    done: list[str] = []
    with anyio.move_on_after(0.01) as scope:
        await shielded(slow_work(done))

    assert scope.cancel_called  # its deadline passed while the work ran
    assert done == ["done"]


async def test_uncancelled_work_gives_its_result():
    assert await shielded(slow_work([])) == "result"
