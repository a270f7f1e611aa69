"""Wiring: from a validated config to providers, routes, validators, ledger and engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cascade_gateway.accounting.ledger import MemoryLedger
from cascade_gateway.cascade.engine import CascadeEngine, Route, Tier
from cascade_gateway.config import GatewayConfig, ResolvedModel, resolve_models
from cascade_gateway.providers.base import Provider
from cascade_gateway.providers.registry import build_provider
from cascade_gateway.validation import build_validator


@dataclass(slots=True)
class Services:
    """Everything a request needs, built once per process in the app's lifespan."""

    config: GatewayConfig
    models: dict[str, ResolvedModel]
    providers: dict[str, Provider]
    ledger: MemoryLedger
    engine: CascadeEngine

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()


def build_providers(config: GatewayConfig) -> dict[str, Provider]:
    """One pooled client per configured provider."""
    return {
        name: build_provider(
            name,
            p.kind,
            base_url=p.base_url,
            api_key=p.api_key(),
            timeout_s=p.timeout_s,
            max_connections=p.max_connections,
            headers=p.headers,
        )
        for name, p in config.providers.items()
    }


def build_routes(
    config: GatewayConfig, models: Mapping[str, ResolvedModel], providers: Mapping[str, Provider]
) -> dict[str, Route]:
    """A direct route per model alias and a cascade route per cascade."""

    def tier(alias: str) -> Tier:
        model = models[alias]
        return Tier(model=model, provider=providers[model.provider])

    routes = {alias: Route(name=alias, mode="direct", tiers=(tier(alias),)) for alias in models}
    for name, cascade in config.cascades.items():
        routes[name] = Route(
            name=name,
            mode="cascade",
            tiers=tuple(tier(alias) for alias in cascade.tiers),
            validator=build_validator(cascade.threshold, cascade.signals),
        )
    return routes


def build_services(
    config: GatewayConfig, providers: Mapping[str, Provider] | None = None
) -> Services:
    """Build the service graph; `providers` may be given to swap upstreams (tests, replay)."""
    models = resolve_models(config)
    live = dict(providers) if providers is not None else build_providers(config)
    ledger = MemoryLedger(capacity=config.server.trace_history)
    engine = CascadeEngine(build_routes(config, models, live), sink=ledger)
    return Services(config=config, models=models, providers=live, ledger=ledger, engine=engine)
