"""Start-up, readiness and graceful drain.

On SIGTERM the gateway turns unready at once, refuses new requests with a clean 503, lets the
requests and streams in flight finish (for at most `server.drain_seconds`), and only then hands
the signal to uvicorn, which closes its sockets and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cascade_gateway.lifecycle")


class Lifecycle:
    """Counts requests in flight and runs the drain."""

    def __init__(self, drain_seconds: float) -> None:
        self.drain_seconds = drain_seconds
        self.started_at = time.time()
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def install_signal_handler(self) -> None:
        """Take SIGTERM from uvicorn, to drain before its shutdown (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        loop = asyncio.get_running_loop()

        def on_sigterm(sig: int, frame: Any) -> None:
            if self.draining:
                previous(sig, frame)  # a second SIGTERM: stop waiting
                return
            self.draining = True
            loop.call_soon_threadsafe(lambda: loop.create_task(self._drain(previous, sig)))

        signal.signal(signal.SIGTERM, on_sigterm)

    async def _drain(self, shutdown: Callable[[int, Any], Any], sig: int) -> None:
        log.info("draining", extra={"fields": {"in_flight": self.in_flight}})
        if self.in_flight > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.drain_seconds)
        log.info(
            "drained",
            extra={"fields": {"in_flight": self.in_flight, "timed_out": self.in_flight > 0}},
        )
        shutdown(sig, None)
