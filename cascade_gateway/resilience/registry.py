"""One breaker and one admission queue per model, shared by every route that calls it."""

from __future__ import annotations

from cascade_gateway.config import CascadeConfig, GatewayConfig
from cascade_gateway.observability import metrics
from cascade_gateway.providers.base import Provider
from cascade_gateway.resilience.breaker import BreakerSettings, CircuitBreaker, State
from cascade_gateway.resilience.guard import Admission, CallPolicy, GuardedProvider

_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class Resilience:
    """Builds the guarded provider for each (route, tier) from the config."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self.breakers: dict[str, CircuitBreaker] = {}
        self.admissions: dict[str, Admission] = {}
        for alias, model in config.models.items():
            b = model.breaker
            self.breakers[alias] = CircuitBreaker(
                alias,
                BreakerSettings(
                    failure_threshold=b.failure_threshold,
                    error_rate=b.error_rate,
                    window_s=b.window_s,
                    min_calls=b.min_calls,
                    open_s=b.open_s,
                    probes=b.probes,
                ),
                on_change=_publish,
            )
            c = model.concurrency
            self.admissions[alias] = Admission(alias, c.max_in_flight, c.queue, c.queue_wait_s)

    def guard(
        self,
        alias: str,
        provider: Provider,
        *,
        validated: bool,
        cascade: CascadeConfig | None,
    ) -> GuardedProvider:
        """`provider` calling `alias` under the model's policy, or a cascade's draft policy."""
        model = self._config.models[alias]
        first_token_s, total_s = model.timeouts.first_token_s, model.timeouts.total_s
        attempts = model.retries.max_attempts
        if validated and cascade is not None:
            first_token_s = cascade.draft_timeouts.first_token_s or first_token_s
            total_s = cascade.draft_timeouts.total_s or total_s
            attempts = cascade.draft_max_attempts
        policy = CallPolicy(
            first_token_s=first_token_s,
            total_s=total_s,
            max_attempts=attempts,
            backoff_s=model.retries.backoff_s,
            max_backoff_s=model.retries.max_backoff_s,
            budget_s=model.retries.budget_s,
        )
        return GuardedProvider(
            provider, alias, policy, self.breakers[alias], self.admissions[alias]
        )

    def states(self) -> dict[str, State]:
        return {alias: breaker.state for alias, breaker in self.breakers.items()}


def _publish(model: str, state: State) -> None:
    metrics.BREAKER_STATE.labels(model).set(_STATE_VALUE[state])
