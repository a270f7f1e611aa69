"""Wiring: from a validated config to storage, providers, routes, budgets and the engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cascade_gateway.accounting.accountant import Accountant
from cascade_gateway.accounting.ledger import Ledger
from cascade_gateway.auth.keys import KeyStore
from cascade_gateway.budget.budgets import Budgets
from cascade_gateway.budget.counters import RedisCounters, SqlCounters
from cascade_gateway.cascade.engine import CascadeEngine, Route, Tier
from cascade_gateway.config import CascadeConfig, GatewayConfig, ResolvedModel, resolve_models
from cascade_gateway.providers.base import Provider
from cascade_gateway.providers.registry import build_provider
from cascade_gateway.ratelimit import RateLimiter, RedisWindows, SqlWindows
from cascade_gateway.resilience.registry import Resilience
from cascade_gateway.storage.database import Database, open_database
from cascade_gateway.storage.migrations import migrate
from cascade_gateway.validation import Validator, build_validator


@dataclass(slots=True)
class Services:
    """Everything a request needs, built once per process in the app's lifespan."""

    config: GatewayConfig
    models: dict[str, ResolvedModel]
    providers: dict[str, Provider]
    db: Database
    ledger: Ledger
    keys: KeyStore
    budgets: Budgets
    limiter: RateLimiter
    engine: CascadeEngine
    resilience: Resilience
    redis: Any = None
    _owns_providers: bool = field(default=True, repr=False)
    _tidying: asyncio.Task[None] | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        if self._owns_providers:
            for provider in self.providers.values():
                await provider.aclose()
        if self._tidying is not None:
            self._tidying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tidying
        await self.budgets.close()
        await self.ledger.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.aclose()


def build_providers(config: GatewayConfig) -> dict[str, Provider]:
    """One pooled client per configured provider."""
    return {
        name: build_provider(
            name,
            p.kind,
            base_url=p.base_url,
            api_key=p.api_key(),
            timeout_s=p.timeout_s,
            connect_timeout_s=p.connect_timeout_s,
            max_connections=p.max_connections,
            headers=p.headers,
            proxy_url=p.proxy_url,
        )
        for name, p in config.providers.items()
    }


def build_routes(
    config: GatewayConfig,
    models: Mapping[str, ResolvedModel],
    providers: Mapping[str, Provider],
    resilience: Resilience | None = None,
) -> dict[str, Route]:
    """A direct route per model alias and a cascade route per cascade. With `resilience`,
    every tier calls its provider through the model's timeouts, retries, breaker and queue;
    without it (an offline replay), calls go straight through."""

    def tier(
        alias: str, judge: Validator | None = None, cascade: CascadeConfig | None = None
    ) -> Tier:
        """The tier calling `alias`; `judge`: the validator of its answer, if it has one."""
        model = models[alias]
        provider = providers[model.provider]
        validated = judge is not None
        fetch_whole = validated
        if resilience is not None:
            guarded = resilience.guard(alias, provider, validated=validated, cascade=cascade)
            fetch_whole = validated and guarded.policy.first_token_s is None
            provider = guarded
        ask_logprobs = judge is not None and judge.needs_logprobs and model.logprobs
        return Tier(model, provider, fetch_whole=fetch_whole, ask_logprobs=ask_logprobs)

    routes = {
        alias: Route(
            name=alias,
            mode="direct",
            tiers=(tier(alias),),
            fallbacks=tuple(tier(other) for other in config.models[alias].fallbacks),
        )
        for alias in models
    }
    for name, cascade in config.cascades.items():
        last = len(cascade.tiers) - 1
        fallbacks = cascade.fallbacks
        if fallbacks is None:
            fallbacks = config.models[cascade.tiers[-1]].fallbacks
        validator = build_validator(cascade.threshold, cascade.signals)
        routes[name] = Route(
            name=name,
            mode="cascade",
            tiers=tuple(
                tier(alias, validator if i < last else None, cascade)
                for i, alias in enumerate(cascade.tiers)
            ),
            validator=validator,
            on_budget_pressure=cascade.on_budget_pressure,
            fallbacks=tuple(tier(other) for other in fallbacks),
        )
    return routes


def _open_redis(url: str, timeout_s: float) -> Any:
    """A Redis client that gives up within `timeout_s`, so a request is answered 503 promptly
    while Redis is down: redis-py's default retries a failed command ten times, with backoff,
    which kept a request waiting 3.7 s on a Redis that refused connections. One immediate
    retry is kept, for a pooled connection that Redis closed (a restart)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError

    once = Retry(NoBackoff(), retries=1, supported_errors=(ConnectionError,))
    return aioredis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=once
    )


async def open_services(
    config: GatewayConfig, providers: Mapping[str, Provider] | None = None
) -> Services:
    """Open storage (migrating it), build providers and the engine.

    `providers` replaces the configured upstreams (tests, replay); the caller then owns them.
    """
    storage = config.storage
    db = await open_database(storage.database_url, storage.timeout_s)
    await migrate(db)
    redis = None
    if storage.redis_url:
        redis = _open_redis(storage.redis_url, storage.timeout_s)
    models = resolve_models(config)
    live = dict(providers) if providers is not None else build_providers(config)
    ledger = Ledger(db, flush_interval_s=storage.ledger_flush_ms / 1000)
    budgets = Budgets(config.budgets, ledger)
    budgets.counters = RedisCounters(redis, budgets) if redis is not None else SqlCounters(db)
    limiter = RateLimiter(RedisWindows(redis) if redis is not None else SqlWindows(db))
    resilience = Resilience(config)
    routes = build_routes(config, models, live, resilience)
    engine = CascadeEngine(routes, sink=Accountant(ledger, limiter, budgets))
    return Services(
        config=config,
        models=models,
        providers=live,
        db=db,
        ledger=ledger,
        keys=KeyStore(db),
        budgets=budgets,
        limiter=limiter,
        engine=engine,
        resilience=resilience,
        redis=redis,
        _owns_providers=providers is None,
        _tidying=asyncio.get_running_loop().create_task(budgets.keep_tidy()),
    )
