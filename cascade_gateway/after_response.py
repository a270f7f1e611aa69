"""Work a request leaves for after its response: accounting its client need not wait for.

The HTTP layer opens a list per request (`open_request`) and, once the response's last byte has
been handed to the socket, runs what was deferred to it (`run_deferred`) in the same task,
before the request's log line is written. Nothing else of that worker runs in between unless
the deferred work waits on storage, so a request's ledger row is queued before any request that
follows its response is read. Outside an opened request (the replay CLI, a test driving the
engine) and after its list has run, `defer` refuses and the caller does the work at once, so
nothing deferred is ever left behind.

Work is called synchronously and returns None, or an awaitable when it has to wait (on
storage): as with the validator's signals, the common case never touches the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[None] | None]


class _Deferred:
    __slots__ = ("open", "work")

    def __init__(self) -> None:
        self.work: list[Work] = []
        self.open = True

    def run(self) -> Awaitable[None] | None:
        waiting = self._run_until_waiting()
        if waiting is None:
            self.open = False
            return None
        return self._run_waiting(waiting)

    def _run_until_waiting(self) -> Awaitable[None] | None:
        """Call work in order until one has to wait; what it returned, or None when none did."""
        while self.work:
            waiting = _call(self.work.pop(0))
            if waiting is not None:
                return waiting
        return None

    async def _run_waiting(self, waiting: Awaitable[None]) -> None:
        interrupted: BaseException | None = None
        pending: Awaitable[None] | None = waiting
        while pending is not None:
            try:
                await pending
            except Exception:
                log.exception("work deferred to after the response failed")
            except BaseException as exc:
                interrupted = exc  # raised once the rest has run
            pending = self._run_until_waiting()
        self.open = False
        if interrupted is not None:
            raise interrupted


def _call(work: Work) -> Awaitable[None] | None:
    try:
        return work()
    except Exception:
        log.exception("work deferred to after the response failed")
        return None


_current: ContextVar[_Deferred | None] = ContextVar("cascade_after_response", default=None)


def open_request() -> Token[_Deferred | None]:
    """Start collecting the current request's deferred work; the token is for `run_deferred`."""
    return _current.set(_Deferred())


def defer(work: Work) -> bool:
    """Run `work` after the current request's response; False (not taken) outside a request or
    once its deferred work has run."""
    deferred = _current.get()
    if deferred is None or not deferred.open:
        return False
    deferred.work.append(work)
    return True


def run_deferred(token: Token[_Deferred | None]) -> Awaitable[None] | None:
    """Run the request's deferred work in order; one that raises is logged and the rest still
    run. Returns None when all of it is done, else an awaitable the caller must await for the
    rest (a cancellation meanwhile is raised once all of it has run)."""
    deferred = _current.get()
    _current.reset(token)
    return None if deferred is None else deferred.run()
