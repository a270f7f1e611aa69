"""Log lines go out in batches while serving, at once for warnings, and none are lost."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from cascade_gateway.observability import logs
from cascade_gateway.observability.logs import BatchingStreamHandler, JsonFormatter


def a_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"test.batching.{id(handler)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


async def test_info_lines_wait_for_the_batch_then_go_out_in_one_write():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, flush_s=0.05)
    handler.setFormatter(JsonFormatter())
    log = a_logger(handler)

    log.info("one")
    log.info("two")
    assert stream.getvalue() == ""
    await asyncio.sleep(0.1)

    lines = stream.getvalue().splitlines()
    assert [line.split('"message":"')[1].split('"')[0] for line in lines] == ["one", "two"]


async def test_a_warning_goes_out_at_once_with_what_was_waiting():
    stream = io.StringIO()
    log = a_logger(BatchingStreamHandler(stream, flush_s=60))

    log.info("before")
    log.warning("trouble")

    assert stream.getvalue() == "before\ntrouble\n"


async def test_a_full_buffer_is_written_without_waiting():
    stream = io.StringIO()
    log = a_logger(BatchingStreamHandler(stream, flush_s=60, max_bytes=20))

    log.info("x" * 25)

    assert stream.getvalue() == "x" * 25 + "\n"


def test_outside_an_event_loop_every_line_is_written_at_once():
    stream = io.StringIO()
    log = a_logger(BatchingStreamHandler(stream, flush_s=60))

    log.info("starting")

    assert stream.getvalue() == "starting\n"


async def test_closing_writes_what_is_left():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, flush_s=60)
    log = a_logger(handler)

    log.info("last words")
    handler.close()

    assert stream.getvalue() == "last words\n"


@pytest.fixture
def production_logging(monkeypatch) -> Iterator[io.StringIO]:
    """`configure_logging` as the server sets it up (JSON, info), writing to a buffer; the
    test run's logging is put back afterwards."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure_logging("info", "json")
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    monkeypatch.setattr(logs, "_direct", None)


def a_request_line(stream: io.StringIO) -> dict:
    token = logs.open_request(request_id="r-1", path="/v1/chat/completions")
    logs.request_fields()["outcome"] = "accepted"
    logs.close_request(token, 200)
    logging.getLogger().handlers[0].flush()
    return json.loads(stream.getvalue().splitlines()[-1])


async def test_a_request_line_is_one_json_object_with_its_fields(production_logging):
    line = a_request_line(production_logging)

    assert line["logger"] == "cascade_gateway.access" and line["message"] == "request"
    assert line["level"] == "info" and line["ts"] > 0
    assert line["request_id"] == "r-1" and line["outcome"] == "accepted"
    assert line["status"] == 200 and line["latency_ms"] >= 0


async def test_a_request_line_reaches_a_handler_added_later_as_a_record(production_logging):
    records: list[logging.LogRecord] = []
    added = logging.Handler()
    added.emit = records.append
    logging.getLogger().addHandler(added)

    line = a_request_line(production_logging)

    assert [r.fields["request_id"] for r in records] == ["r-1"]
    assert line["request_id"] == "r-1"


async def test_no_request_line_above_info(production_logging):
    logging.getLogger().setLevel(logging.WARNING)
    token = logs.open_request(request_id="r-2")

    logs.close_request(token, 200)
    logging.getLogger().handlers[0].flush()

    assert production_logging.getvalue() == ""


def only_the_gateways_handler() -> None:
    """pytest adds its capturing handlers to the root logger around each test's body; without
    them, the request log takes its production path (the line queued unmade)."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if isinstance(h, BatchingStreamHandler)]


async def test_a_request_lines_figures_are_read_when_its_batch_is_written(production_logging):
    only_the_gateways_handler()
    reads: list[str] = []

    def figures() -> dict:
        reads.append("read")
        return {"outcome": "escalated", "cost_usd": 0.25}

    token = logs.open_request(request_id="r-3")
    logs.add_figures(figures)
    logs.close_request(token, 200)
    assert reads == [] and production_logging.getvalue() == ""

    logging.getLogger().handlers[0].flush()

    line = json.loads(production_logging.getvalue())
    assert reads == ["read"]
    assert line["request_id"] == "r-3" and line["status"] == 200
    assert line["outcome"] == "escalated" and line["cost_usd"] == 0.25


async def test_a_request_line_reaching_a_record_has_its_figures(production_logging):
    records: list[logging.LogRecord] = []
    added = logging.Handler()
    added.emit = records.append
    logging.getLogger().addHandler(added)
    token = logs.open_request(request_id="r-4")
    logs.add_figures(lambda: {"outcome": "accepted"})

    logs.close_request(token, 200)

    assert records[0].fields["outcome"] == "accepted"
    assert "_figures" not in records[0].fields


async def test_a_request_line_whose_figures_fail_is_written_with_the_error(production_logging):
    only_the_gateways_handler()
    token = logs.open_request(request_id="r-5")
    logs.add_figures(lambda: {"ratio": 1 / 0})
    logs.close_request(token, 502)

    logging.getLogger().handlers[0].flush()

    line = json.loads(production_logging.getvalue())
    assert line["request_id"] == "r-5" and line["status"] == 502
    assert line["figures_error"] == "ZeroDivisionError: division by zero"


async def test_a_line_that_cannot_be_made_leaves_an_error_line_and_the_batch_is_written():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, flush_s=60)

    def broken() -> str:
        raise ValueError("no line")

    handler.write_line("before")
    handler.write_later(broken)
    handler.write_later(lambda: "after")
    handler.flush()

    first, error, last = stream.getvalue().splitlines()
    assert (first, last) == ("before", "after")
    assert json.loads(error)["level"] == "error"
    assert json.loads(error)["message"] == "a log line could not be made: ValueError: no line"


async def test_unmade_lines_count_towards_a_full_buffer():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, flush_s=60, max_bytes=2 * logs.UNMADE_LINE_BYTES)

    handler.write_later(lambda: "one")
    assert stream.getvalue() == ""
    handler.write_later(lambda: "two")

    assert stream.getvalue() == "one\ntwo\n"
