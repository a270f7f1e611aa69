"""The ASGI application: wiring only. Routes live in `cascade_gateway.api`."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from cascade_gateway import __version__, tokens
from cascade_gateway.api import admin, native, openai, probes
from cascade_gateway.api.errors import install_error_handlers
from cascade_gateway.api.middleware import RequestContextMiddleware
from cascade_gateway.config import CONFIG_ENV, GatewayConfig, load_config
from cascade_gateway.lifecycle import Lifecycle
from cascade_gateway.observability import metrics
from cascade_gateway.providers.base import Provider
from cascade_gateway.services import open_services

GC_YOUNG_THRESHOLD = 20_000


class GatewayApp(FastAPI):
    """The FastAPI app, with one short cut: `/v1/chat/completions`, nearly all of the traffic,
    goes from the request envelope straight to its bare ASGI endpoint.

    Starlette's error middleware, exception middleware and router cost about a tenth of a
    worker's time under load and add nothing that endpoint needs: it renders its own errors,
    and the envelope (`RequestContextMiddleware`) is the same one every other route gets.
    """

    def __init__(self, hot_path: ASGIApp, **settings: Any) -> None:
        """`hot_path`: the chat completions endpoint in its envelope (the app's router has no
        route for it); `settings` are FastAPI's."""
        super().__init__(**settings)
        self.hot_path = hot_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == openai.PATH:
            scope["app"] = self
            await self.hot_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(config: GatewayConfig, providers: Mapping[str, Provider] | None = None) -> FastAPI:
    """The gateway for a validated config; `providers` replaces the configured upstreams."""
    lifecycle = Lifecycle(drain_seconds=config.server.drain_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await open_services(config, providers)
        await asyncio.to_thread(tokens.warm_up)
        # What start-up built lives as long as the process; moving it out of the collector's
        # view keeps full collections (which paused a worker for ~0.1 s) short.
        gc.collect()
        gc.freeze()
        # A request allocates a few hundred objects, nearly all freed by reference counting;
        # at the default threshold (700) the young generation was scanned every few requests.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        app.state.services = services
        lifecycle.install_signal_handler()
        try:
            yield
        finally:
            await services.aclose()
            metrics.flush()

    app = GatewayApp(
        RequestContextMiddleware(openai.chat_completions, lifecycle=lifecycle),
        title="cascade-gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.lifecycle = lifecycle
    app.add_middleware(RequestContextMiddleware, lifecycle=lifecycle)
    install_error_handlers(app)
    app.include_router(openai.router)
    app.include_router(native.router)
    app.include_router(admin.router)
    app.include_router(probes.router)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn workers: the config file named by `CASCADE_CONFIG_FILE`."""
    config = load_config(os.environ[CONFIG_ENV])
    from cascade_gateway.observability.logs import configure_logging

    configure_logging(config.log.level, config.log.format)
    return create_app(config)
