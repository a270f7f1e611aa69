"""Log lines go out in batches while serving, at once for warnings, and none are lost."""

from __future__ import annotations

import asyncio
import io
import logging

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
