"""Awaiting work to its end even when the caller is cancelled meanwhile: a budget settled, a
request accounted for, a ledger batch inserted must never be left half done.

anyio's shielded cancel scope holds off only anyio's own cancellation; asyncio's `task.cancel()`
(how a stream stops when its client leaves, and how a server shuts down) still lands inside it.
`shielded` runs the work as a task of its own and waits for it through both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def shielded(work: Awaitable[T]) -> T:
    """`work`'s result, awaited to its end even if the caller is cancelled meanwhile (natively
    or by an anyio scope); the cancellation is raised once the work has ended. If the work
    itself is cancelled (its event loop shutting down), that is an error.

    Example:
        await shielded(meter.settle(hold, cost_usd))
    """
    future = asyncio.ensure_future(work)
    cancelled = False
    with anyio.CancelScope(shield=True):
        while True:
            try:
                result = await asyncio.shield(future)
                break
            except asyncio.CancelledError:
                if future.cancelled():
                    raise RuntimeError("shielded work was cancelled before it ended") from None
                cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
