"""Running a flush a little later: once per burst of changes, off the request that made them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Later:
    """Runs `action` `delay_s` after the first `request()` since it last ran.

    Outside an event loop (a CLI, a worker thread) `request()` runs it at once. A timer left on
    a loop that has since finished would never fire, so a request from another loop starts a
    new one there.
    """

    def __init__(self, delay_s: float, action: Callable[[], None]) -> None:
        self.delay_s = delay_s
        self._action = action
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request(self) -> None:
        """Make sure `action` runs within `delay_s`."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._action()
            return
        if self._timer is None or self._loop is not loop:
            self._timer, self._loop = loop.call_later(self.delay_s, self._action), loop

    def cancel(self) -> None:
        """Forget the pending run: the action is running now, by other means."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
