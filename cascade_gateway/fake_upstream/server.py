"""Running the fake: in a background thread (tests), in the current event loop, or in the
foreground (the CLI)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from cascade_gateway.fake_upstream.app import build_app, quiet_deliberate_cuts
from cascade_gateway.fake_upstream.script import (
    HISTORY_LIMIT,
    ReceivedRequest,
    Rule,
    Script,
    load_script,
)
from cascade_gateway.tokens import count_text

# Hung requests end when their client hangs up; this bounds shutdown if one never does.
_GRACEFUL_SHUTDOWN_S = 1


def _warm_up() -> None:
    # The tokenizer loads on first use (~0.5 s); pay that at startup, not in the first request
    # a benchmark times.
    count_text("warm up")
    # What start-up made lives as long as the process: out of the collector's sight, a full
    # collection no longer walks it (it stalled every request in flight for 13-18 ms, every
    # few seconds under load, as the gateway's own start-up found; see `app.py`).
    gc.collect()
    gc.freeze()


class FakeUpstream:
    """A scripted OpenAI + Anthropic upstream on a real socket at 127.0.0.1.

    Example:
        with FakeUpstream.running() as up:
            up.add(Rule(model="draft", reply=Reply(text="Paris.")))
            client = openai.OpenAI(base_url=up.url + "/v1", api_key="k")
            anthropic_client = anthropic.Anthropic(base_url=up.url, api_key="k")
            ...
            assert up.requests[-1].model == "draft"
    """

    def __init__(
        self, rules: Iterable[Rule] = (), *, api_key: str | None = None, latency_s: float = 0.0
    ) -> None:
        self.script = Script(rules)
        self.app: Starlette = build_app(self.script, api_key=api_key, latency_s=latency_s)
        self.url = ""  # set once listening

    def add(self, *rules: Rule) -> None:
        """Add rules; the most recently added matching rule wins."""
        self.script.add(*rules)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Requests received so far, oldest first."""
        return self.script.requests

    def clear(self) -> None:
        """Forget rules and history."""
        self.script.reset_rules()
        self.script.clear_requests()

    def _server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            access_log=False,
            log_config=None,  # leave the host process's logging alone
            log_level="warning",
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        )
        quiet_deliberate_cuts()
        _warm_up()
        return uvicorn.Server(config)

    def _listening(self, server: uvicorn.Server) -> None:
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    @contextmanager
    def running(
        cls, rules: Iterable[Rule] = (), *, api_key: str | None = None, latency_s: float = 0.0
    ) -> Iterator[FakeUpstream]:
        """Serve on a free port from a background thread until the block exits."""
        up = cls(rules, api_key=api_key, latency_s=latency_s)
        server = up._server()
        thread = threading.Thread(target=server.run, name="fake-upstream", daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the fake upstream failed to start")
            time.sleep(0.001)
        up._listening(server)
        try:
            yield up
        finally:
            server.should_exit = True
            thread.join()

    @classmethod
    @asynccontextmanager
    async def serving(
        cls, rules: Iterable[Rule] = (), *, api_key: str | None = None, latency_s: float = 0.0
    ) -> AsyncIterator[FakeUpstream]:
        """Serve on a free port from the current event loop until the block exits.

        Only async clients may call it from that loop: a sync call would block the server too.
        """
        up = cls(rules, api_key=api_key, latency_s=latency_s)
        server = up._server()
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("the fake upstream failed to start")
            await asyncio.sleep(0.001)
        up._listening(server)
        try:
            yield up
        finally:
            server.should_exit = True
            await task


def serve(
    host: str = "127.0.0.1",
    port: int = 9100,
    script_path: str | Path | None = None,
    latency_s: float = 0.0,
    api_key: str | None = None,
    history: int = HISTORY_LIMIT,
) -> None:
    """Run the fake in the foreground until interrupted (`cascade-gateway fake-upstream`);
    it remembers the last `history` requests it received (`GET /_fake/requests`)."""
    rules = load_script(script_path) if script_path is not None else []
    app = build_app(Script(rules, history=history), api_key=api_key, latency_s=latency_s)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    quiet_deliberate_cuts()
    _warm_up()
    uvicorn.Server(config).run()
