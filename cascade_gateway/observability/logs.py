"""Structured logs: one JSON line per request, and JSON for everything else the process logs.

A request's line is built up while it runs (the middleware opens it, accounting adds the
trace's figures) and queued when the response is done; the figures are read and the JSON made
in the log's next batched write. Prompt and completion text appear only when
`log.include_content` is on; secrets never do.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import partial
from typing import Any

import orjson

from cascade_gateway.observability.later import Later

ACCESS = logging.getLogger("cascade_gateway.access")

_fields: ContextVar[dict[str, Any] | None] = ContextVar("cascade_request_fields", default=None)
# Where a request line keeps the callable that gives its figures (`add_figures`) until made.
_FIGURES = "_figures"
# What an unmade line counts for against a batch's `max_bytes`: about a request line's size.
UNMADE_LINE_BYTES = 512


def json_line(
    created: float, level: str, logger: str, message: str, fields: Mapping[str, Any] | None
) -> str:
    """`{"ts", "level", "logger", "message", ...fields}` on one line (no newline)."""
    line: dict[str, Any] = {
        "ts": round(created, 3),
        "level": level,
        "logger": logger,
        "message": message,
    }
    if fields:
        line.update(fields)
    return orjson.dumps(line, default=str).decode()


class JsonFormatter(logging.Formatter):
    """`json_line` for a log record; its `fields` extra, and a traceback, become keys."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if record.exc_info:
            fields = {**(fields or {}), "exception": self.formatException(record.exc_info)}
        level = record.levelname.lower()
        return json_line(record.created, level, record.name, record.getMessage(), fields)


class BatchingStreamHandler(logging.StreamHandler):
    """A stream handler that writes lines in batches: what piled up in the last `flush_s`, or
    `max_bytes` of it, in one write. Warnings and errors go out at once, with what is waiting.

    One write per request line was a system call per request (about a twentieth of a worker's
    time under load). A line may also be queued unmade (`write_later`) and made at the batch's
    write, in order with the rest. Outside an event loop (a CLI, start-up) every line is
    written at once; at exit `logging.shutdown` writes what is left.
    """

    def __init__(self, stream: Any, flush_s: float = 0.2, max_bytes: int = 64 * 1024) -> None:
        super().__init__(stream)
        self.max_bytes = max_bytes
        self._lines: list[str | Callable[[], str]] = []
        self._size = 0
        self._later = Later(flush_s, self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line, at_once=record.levelno >= logging.WARNING)

    def write_line(self, line: str, at_once: bool = False) -> None:
        """Queue one formatted line (`emit`)."""
        self._queue(line + self.terminator, len(line), at_once)

    def write_later(self, make: Callable[[], str]) -> None:
        """Queue a line that `make()` will make (without its newline) when the batch is
        written: the request log's lines, made off the path between a response and the
        connection's next request."""
        self._queue(make, UNMADE_LINE_BYTES, at_once=False)

    def _queue(self, line: str | Callable[[], str], size: int, at_once: bool) -> None:
        self._lines.append(line)
        self._size += size
        if at_once or self._size >= self.max_bytes:
            self.flush()
        else:
            self._later.request()

    def flush(self) -> None:
        self.acquire()
        try:
            self._later.cancel()
            if self._lines:
                lines, self._lines, self._size = self._lines, [], 0
                self.stream.write("".join(self._made(line) for line in lines))
            self.stream.flush()
        finally:
            self.release()

    def _made(self, line: str | Callable[[], str]) -> str:
        if isinstance(line, str):
            return line
        try:
            return line() + self.terminator
        except Exception as exc:
            # Said in the stream itself: logging it would come back to this batch's write.
            message = f"a log line could not be made: {type(exc).__name__}: {exc}"
            return json_line(time.time(), "error", __name__, message, None) + self.terminator

    def close(self) -> None:
        self.flush()
        super().close()


def configure_logging(level: str, fmt: str) -> None:
    """Send every log record to stderr, as JSON lines or plain text."""
    global _direct
    handler = BatchingStreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Whether uvicorn's access log reaches the root handler is uvicorn's `access_log` setting
    # (off by default: the request line says more); only its own handlers go.
    logging.getLogger("uvicorn.access").handlers[:] = []
    # The SDKs' clients log every upstream call at INFO; the request line already says it all.
    for name in ("httpx", "httpx2", "openai", "anthropic", "LiteLLM"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _direct = handler if fmt == "json" else None


# The handler `configure_logging` made for JSON lines, which the request log may write to
# directly (`_request_sink`).
_direct: BatchingStreamHandler | None = None


def _request_sink() -> BatchingStreamHandler | None:
    """Where the request line can go without a log record: the handler `configure_logging`
    made for JSON, while it is still the only handler and nothing filters: the line is queued
    unmade and made in the batched write. A record is made, handled, locked and formatted
    when the request ends, with its figures. Any other setup (a handler added, as pytest's
    `caplog` does) gets the record."""
    handler = _direct
    if (
        handler is None
        or logging.root.handlers != [handler]
        or handler.level > logging.INFO
        or handler.filters
        or logging.root.filters
        or ACCESS.handlers
        or ACCESS.filters
        or not ACCESS.propagate
    ):
        return None
    return handler


def open_request(**fields: Any) -> Any:
    """Start the current request's log line; returns a token for `close_request`."""
    return _fields.set({"started": time.perf_counter(), **fields})


def request_fields() -> dict[str, Any] | None:
    """The current request's log line, to add fields to (None outside a request)."""
    return _fields.get()


def add_figures(figures: Callable[[], Mapping[str, Any]]) -> None:
    """Add the fields `figures()` gives to the current request's line when the line is made:
    in the log's batched write, when nothing filters it (else when the request ends)."""
    fields = _fields.get()
    if fields is not None:
        fields[_FIGURES] = figures


def close_request(token: Any, status: int, ended: float | None = None) -> None:
    """Write the current request's line; its latency runs to `ended` (a `time.perf_counter()`
    reading, such as when the response's last byte went out), else to now."""
    fields = _fields.get()
    _fields.reset(token)
    if fields is None:
        return
    started = fields.pop("started")
    fields["status"] = status
    end = time.perf_counter() if ended is None else ended
    fields["latency_ms"] = round((end - started) * 1000, 3)
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    sink = _request_sink()
    if sink is not None:
        sink.write_later(partial(_request_line, time.time(), fields))
        return
    # Made directly: `Logger.info` would also walk the stack for a caller nobody reads.
    _add_figures(fields)
    record = ACCESS.makeRecord(
        ACCESS.name, logging.INFO, __file__, 0, "request", (), None, extra={"fields": fields}
    )
    ACCESS.handle(record)


def _request_line(created: float, fields: dict[str, Any]) -> str:
    _add_figures(fields)
    return json_line(created, "info", ACCESS.name, "request", fields)


def _add_figures(fields: dict[str, Any]) -> None:
    figures = fields.pop(_FIGURES, None)
    if figures is None:
        return
    try:
        fields.update(figures())
    except Exception as exc:
        fields["figures_error"] = f"{type(exc).__name__}: {exc}"
