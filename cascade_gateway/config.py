"""The gateway's configuration: a YAML file, overridable from the environment.

Every key may be overridden by an environment variable `CASCADE_<KEY>`, nested keys joined by
`__` (e.g. `CASCADE_SERVER__MAX_BODY_BYTES=1048576`). `load_config` reports *every* problem
with the offending key path, so `check-config` and `serve` print the same list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cascade_gateway import pricing
from cascade_gateway.budget.periods import Period
from cascade_gateway.providers.proxies import Proxy

ProviderKind = Literal["openai", "anthropic", "litellm"]
# Set by `cascade-gateway serve` so each uvicorn worker re-reads the same file.
CONFIG_ENV = "CASCADE_CONFIG_FILE"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderConfig(_Section):
    """An upstream account: its protocol, address and where its key comes from."""

    kind: ProviderKind
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    # An HTTP proxy to reach the upstream through; None: the environment's (HTTPS_PROXY, ...).
    proxy_url: str | None = None

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url(cls, url: str | None) -> str | None:
        if url is not None:
            Proxy.parse(url)
        return url

    def api_key(self) -> str | None:
        """The key, read from the environment at start-up (never stored in the file)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class TimeoutConfig(_Section):
    """Deadlines for one upstream call (None: only the provider's `timeout_s`)."""

    first_token_s: float | None = Field(default=None, gt=0)
    total_s: float | None = Field(default=None, gt=0)


class RetryConfig(_Section):
    """Retries of connection errors, 429s (after their Retry-After) and 5xx, before any output."""

    max_attempts: int = Field(default=2, ge=1, le=10)
    backoff_s: float = Field(default=0.25, ge=0)
    max_backoff_s: float = Field(default=4.0, ge=0)
    budget_s: float = Field(default=15.0, gt=0)


class BreakerConfig(_Section):
    """When to stop calling a failing model, and when to try it again."""

    failure_threshold: int = Field(default=5, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    window_s: float = Field(default=30.0, gt=0)
    min_calls: int = Field(default=20, ge=1)
    open_s: float = Field(default=30.0, gt=0)
    probes: int = Field(default=1, ge=1)


class ConcurrencyConfig(_Section):
    """Back-pressure: calls in flight to a model, and how many may wait (and how long)."""

    max_in_flight: int = Field(default=512, ge=1)
    queue: int = Field(default=512, ge=0)
    queue_wait_s: float = Field(default=2.0, ge=0)


class ModelConfig(_Section):
    """A model alias: which provider serves it, the upstream's name for it, and its price."""

    provider: str
    model: str
    input_per_mtok: float | None = Field(default=None, ge=0)
    output_per_mtok: float | None = Field(default=None, ge=0)
    max_output_tokens: int | None = Field(default=None, ge=1)
    context_window: int | None = Field(default=None, ge=1)
    # Ask for token logprobs when this model drafts (feeds the validator's `logprob` signal).
    # Default: on for OpenAI-compatible providers, which support it.
    logprobs: bool | None = None
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    concurrency: ConcurrencyConfig = Field(default_factory=ConcurrencyConfig)
    # Models tried in order when this one fails, when it is called directly.
    fallbacks: list[str] = Field(default_factory=list)


Pressure = Literal["degrade", "reject"]


class CascadeConfig(_Section):
    """Tiers tried cheapest first; each non-final answer is validated against `threshold`."""

    tiers: list[str] = Field(min_length=1)
    threshold: float = Field(default=0.7, ge=0, le=1)
    signals: dict[str, dict[str, Any]] = Field(default_factory=dict)
    description: str | None = None
    # When the budget cannot pay for escalating: serve the lower tier's answer, or refuse (402).
    on_budget_pressure: Pressure | None = None
    # Deadlines for the validated (non-final) tiers: a draft that misses them is abandoned and
    # the request escalates. Unset fields fall back to the model's own.
    draft_timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    # A failing draft escalates rather than being retried (1 = no retry).
    draft_max_attempts: int = Field(default=1, ge=1, le=10)
    # Models tried in order when the final tier fails (default: the final model's fallbacks).
    fallbacks: list[str] | None = None


class StorageConfig(_Section):
    """Where keys, budgets and the ledger live; Redis (optional) holds the hot counters."""

    database_url: str = "sqlite:///cascade-gateway.db"
    redis_url: str | None = None
    # Ledger rows are written in batches this long after a request ends (0: before its
    # response). Budgets never wait on it; a crash loses at most this window of ledger rows.
    ledger_flush_ms: float = Field(default=50, ge=0, le=60_000)
    # How long a request waits on the database or Redis (to connect, for a pooled connection,
    # for SQLite's lock, for Redis's answer) before it is refused with a 503 to retry.
    timeout_s: float = Field(default=5, gt=0, le=600)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("use sqlite:///FILE or postgresql://USER@HOST/DB")
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://")):
            raise ValueError("use redis://HOST:PORT/DB")
        return url


class BudgetConfig(_Section):
    """Gateway-wide budget settings (per-key budgets are set on the keys)."""

    timezone: str = "UTC"
    global_usd: float | None = Field(default=None, ge=0)
    global_period: Period = "month"
    default_max_output_tokens: int = Field(default=4096, ge=1)
    on_budget_pressure: Pressure = "reject"
    # How long a reservation's lease lasts unless renewed: its holder renews it while the call
    # runs, so this is how soon a replica killed mid-call stops holding budget.
    reservation_lease_s: float = Field(default=60.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r} (use an IANA name like UTC)") from None
        return name


class ServerConfig(_Section):
    """HTTP-level limits and shutdown."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # On SIGTERM, how long requests and streams in flight may take to finish.
    drain_seconds: float = Field(default=20.0, ge=0)
    # Idle keep-alive connections are kept this long. Longer than clients' and load balancers'
    # idle timeouts, so the server never closes a connection a client is just reusing.
    keep_alive_s: float = Field(default=75.0, gt=0)


class LogConfig(_Section):
    """Log level and format; prompt and completion text only when asked for."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    include_content: bool = False


class GatewayConfig(BaseSettings):
    """The whole configuration, as read from YAML and then the environment."""

    model_config = SettingsConfigDict(
        env_prefix="CASCADE_", env_nested_delimiter="__", extra="forbid"
    )

    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    cascades: dict[str, CascadeConfig] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    budgets: BudgetConfig = Field(default_factory=BudgetConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    # Guards the admin API; when set, every /v1 and /api request needs a key. From the
    # environment (CASCADE_MASTER_KEY), never from a file that might be committed.
    master_key: SecretStr | None = None

    @field_validator("master_key")
    @classmethod
    def _strong_master_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (generate one: openssl rand -hex 32)")
        return key

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's content arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model alias with everything needed to call and bill it."""

    alias: str
    provider: str
    provider_kind: ProviderKind
    upstream_model: str
    price: pricing.Price
    logprobs: bool


class ConfigError(Exception):
    """The configuration is unusable; `problems` lists each as `key.path: message`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def load_config(path: str | Path) -> GatewayConfig:
    """Read, validate and cross-check a config file; raise ConfigError listing every problem."""
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, [f"cannot read file: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must be a mapping with providers, models, cascades"])
    if "master_key" in raw:
        raise ConfigError(source, ["master_key: set it in the environment as CASCADE_MASTER_KEY"])
    return parse_config(raw, source)


def parse_config(raw: dict[str, Any], source: str = "<config>") -> GatewayConfig:
    """Validate an already-loaded mapping (see `load_config`)."""
    try:
        config = GatewayConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(source, [_format_error(e) for e in exc.errors()]) from exc
    problems = cross_check(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def _format_error(error: Any) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{path}: {error['msg']}"


def cross_check(config: GatewayConfig) -> list[str]:
    """Problems pydantic cannot see: dangling references, unpriced models, bad signal settings."""
    from cascade_gateway.validation import build_validator

    problems: list[str] = []
    for alias, model in config.models.items():
        if model.provider not in config.providers:
            problems.append(f"models.{alias}.provider: unknown provider {model.provider!r}")
        elif _price(config, alias) is None:
            problems.append(
                f"models.{alias}: no price for {model.model!r} in litellm's cost map; "
                "set input_per_mtok and output_per_mtok"
            )
    for alias, model in config.models.items():
        for i, other in enumerate(model.fallbacks):
            if other not in config.models:
                problems.append(f"models.{alias}.fallbacks.{i}: unknown model {other!r}")
    for name, cascade in config.cascades.items():
        for i, other in enumerate(cascade.fallbacks or ()):
            if other not in config.models:
                problems.append(f"cascades.{name}.fallbacks.{i}: unknown model {other!r}")
        if name in config.models:
            problems.append(f"cascades.{name}: name is also a model alias; pick another")
        for i, tier in enumerate(cascade.tiers):
            if tier not in config.models:
                problems.append(f"cascades.{name}.tiers.{i}: unknown model {tier!r}")
        try:
            build_validator(cascade.threshold, cascade.signals)
        except ValueError as exc:
            problems.append(f"cascades.{name}.signals: {exc}")
    return problems


def warnings(config: GatewayConfig) -> list[str]:
    """Things that work but are probably not what was meant."""
    return [
        f"providers.{name}.api_key_env: environment variable {p.api_key_env} is not set"
        for name, p in config.providers.items()
        if p.api_key_env and p.api_key_env not in os.environ
    ]


def _price(config: GatewayConfig, alias: str) -> pricing.Price | None:
    model = config.models[alias]
    kind = config.providers[model.provider].kind
    known = pricing.lookup(model.model, kind)
    if model.input_per_mtok is not None and model.output_per_mtok is not None:
        return pricing.Price(
            input_per_mtok=model.input_per_mtok,
            output_per_mtok=model.output_per_mtok,
            max_output_tokens=model.max_output_tokens
            or (known.max_output_tokens if known else None),
            context_window=model.context_window or (known.context_window if known else None),
        )
    if known is None:
        return None
    return pricing.Price(
        input_per_mtok=model.input_per_mtok
        if model.input_per_mtok is not None
        else known.input_per_mtok,
        output_per_mtok=model.output_per_mtok
        if model.output_per_mtok is not None
        else known.output_per_mtok,
        max_output_tokens=model.max_output_tokens or known.max_output_tokens,
        context_window=model.context_window or known.context_window,
    )


def resolve_models(config: GatewayConfig) -> dict[str, ResolvedModel]:
    """Every alias with its provider and final price (the config must have passed cross_check)."""
    resolved = {}
    for alias, model in config.models.items():
        kind = config.providers[model.provider].kind
        price = _price(config, alias)
        assert price is not None, "resolve_models needs a cross-checked config"
        resolved[alias] = ResolvedModel(
            alias=alias,
            provider=model.provider,
            provider_kind=kind,
            upstream_model=model.model,
            price=price,
            logprobs=model.logprobs if model.logprobs is not None else kind == "openai",
        )
    return resolved
