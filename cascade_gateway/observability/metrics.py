"""Prometheus metrics, correct with several uvicorn workers.

With `PROMETHEUS_MULTIPROC_DIR` set (the CLI sets it whenever it starts more than one worker),
prometheus-client keeps each worker's values in files there and `/metrics` sums them; without
it, the process's own registry is served. Labels are bounded: cascades, model aliases and
providers come from the config, key names from the admin API.

The per-request counters, histograms and the in-flight gauge are summed in memory and written
out at most `FLUSH_S` after they change (and before every scrape this process answers): in
multi-worker mode each write is a locked update of a memory-mapped file, and one request made
a couple of dozen of them. A histogram's pending observations are written as one count per
bucket and one sum. A finished request's trace is only kept until then (up to
`MAX_UNCOUNTED` of them): counted in a batch, its figures cost less than one by one just
after its response, when the connection's next request may be waiting.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from collections import defaultdict

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from cascade_gateway.cascade.trace import Trace
from cascade_gateway.observability.later import Later

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "cascade_requests_total", "Requests by cascade (or model) and outcome.", ["cascade", "outcome"]
)
COST = Counter("cascade_cost_usd_total", "Dollars spent upstream, per model.", ["model"])
BASELINE = Counter(
    "cascade_baseline_cost_usd_total",
    "What the same requests would have cost on the cascade's strongest model.",
    ["cascade"],
)
# A gauge, not a counter: an escalated request costs more than strong-only, so net savings
# can go down. Summed over every worker that ever ran.
SAVINGS = Gauge(
    "cascade_savings_usd_total",
    "Net dollars saved against always using the strongest model.",
    ["cascade"],
    multiprocess_mode="sum",
)
TOKENS = Counter("cascade_tokens_total", "Tokens billed, per model.", ["model", "direction"])
DURATION = Histogram(
    "cascade_request_duration_seconds", "Whole request time.", ["cascade"], buckets=_LATENCY
)
STAGE = Histogram(
    "cascade_stage_duration_seconds", "Time per cascade stage.", ["stage"], buckets=_LATENCY
)
TTFT = Histogram(
    "cascade_time_to_first_token_seconds",
    "Time to the first token the client keeps (streams).",
    ["cascade"],
    buckets=_LATENCY,
)
SCORE = Histogram(
    "cascade_validator_score",
    "Combined validator score of drafts.",
    ["cascade"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
UPSTREAM_ERRORS = Counter(
    "cascade_upstream_errors_total", "Failed upstream calls.", ["provider", "code"]
)
UPSTREAM_RETRIES = Counter(
    "cascade_upstream_retries_total", "Upstream calls retried after a failure.", ["model"]
)
BREAKER_STATE = Gauge(
    "cascade_circuit_state",
    "Circuit breaker per model: 0 closed, 1 half-open, 2 open (the worst over workers).",
    ["model"],
    multiprocess_mode="livemax",
)
IN_FLIGHT = Gauge(
    "cascade_in_flight_requests", "Requests being served now.", multiprocess_mode="livesum"
)
BUDGET_REMAINING = Gauge(
    "cascade_budget_remaining_usd",
    "Budget left in the current period, per key.",
    ["key_name"],
    multiprocess_mode="mostrecent",
)

log = logging.getLogger(__name__)

_OUTCOMES = {"degraded": "accepted", "cancelled": "error"}
FLUSH_S = 0.5
MAX_UNCOUNTED = 256


class _Pending:
    """Finished traces not yet counted, counter increments, histogram observations and the
    in-flight count not yet written, and when they will be."""

    def __init__(self) -> None:
        self.traces: list[Trace] = []
        self.amounts: defaultdict[tuple[Counter | Gauge, tuple[str, ...]], float] = defaultdict(
            float
        )
        self.observed: defaultdict[tuple[Histogram, tuple[str, ...]], list[float]] = defaultdict(
            list
        )
        self.in_flight = 0
        self.later = Later(FLUSH_S, self.write)

    def count(self) -> None:
        """Fold the kept traces into the pending values; one that cannot be counted (wholly)
        is logged, and costs neither the others' counts nor a scrape."""
        traces, self.traces = self.traces, []
        for trace in traces:
            try:
                _count(trace)
            except Exception:
                fields = {"request_id": trace.request_id}
                log.exception("request not counted in metrics", extra={"fields": fields})

    def write(self) -> None:
        self.later.cancel()
        self.count()
        amounts = list(self.amounts.items())
        self.amounts.clear()
        for (metric, labels), amount in amounts:
            metric.labels(*labels).inc(amount)
        observed = list(self.observed.items())
        self.observed.clear()
        for (histogram, labels), values in observed:
            _observe_all(histogram.labels(*labels), values)
        IN_FLIGHT.set(self.in_flight)


def _observe_all(histogram: Histogram, values: list[float]) -> None:
    """`histogram.observe(v)` for every value, as one write per bucket that gained any.

    prometheus-client has no call for that, so this updates the child's bucket and sum values
    as its `observe` does (`tests/test_metrics.py` checks the exposition is the same).
    """
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bucket with value <= bound
    histogram._sum.inc(sum(values))
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


_pending = _Pending()


def _add(metric: Counter | Gauge, labels: tuple[str, ...], amount: float = 1.0) -> None:
    """Add to a counter, in memory; the caller then calls `_pending.later.request()` once."""
    _pending.amounts[metric, labels] += amount


def _observe(histogram: Histogram, labels: tuple[str, ...], value: float) -> None:
    """Observe a value, in memory; the caller then calls `_pending.later.request()` once."""
    _pending.observed[histogram, labels].append(value)


def flush() -> None:
    """Write what is pending to the metrics (the multi-worker files)."""
    _pending.write()


def request_started() -> None:
    """One more request in flight."""
    _pending.in_flight += 1
    _pending.later.request()


def request_ended() -> None:
    """One request fewer in flight."""
    _pending.in_flight -= 1
    _pending.later.request()


def observe(trace: Trace) -> None:
    """Count one finished request (when the pending values are written)."""
    _pending.traces.append(trace)
    if len(_pending.traces) >= MAX_UNCOUNTED:
        _pending.count()
    _pending.later.request()


def _count(trace: Trace) -> None:
    cascade = trace.route
    outcome = _OUTCOMES.get(trace.outcome or "error", trace.outcome or "error")
    _add(REQUESTS, (cascade, outcome))
    _observe(DURATION, (cascade,), trace.total_ms / 1000)
    if trace.ttft_ms is not None:
        _observe(TTFT, (cascade,), trace.ttft_ms / 1000)
    for attempt in trace.attempts:
        _add(COST, (attempt.model,), attempt.cost_usd)
        _add(TOKENS, (attempt.model, "input"), attempt.input_tokens)
        _add(TOKENS, (attempt.model, "output"), attempt.output_tokens)
        if attempt.decision == "failed":
            _add(UPSTREAM_ERRORS, (attempt.provider, attempt.error_code or "unknown"))
    if trace.mode == "cascade":
        _add(BASELINE, (cascade,), trace.baseline_cost_usd)
        _add(SAVINGS, (cascade,), trace.savings_usd)
        for stage, ms in trace.stage_ms().items():
            if stage in ("draft", "validate", "escalate") and ms > 0:
                _observe(STAGE, (stage,), ms / 1000)
        if trace.quality_score is not None:
            _observe(SCORE, (cascade,), trace.quality_score)


def count_refusal(route: str) -> None:
    """A request refused before it reached the cascade (rate limited)."""
    _add(REQUESTS, (route, "rejected"))
    _pending.later.request()


def render() -> tuple[bytes, str]:
    """The exposition text and its content type, summed across workers when there are many.

    Other workers' counts can be up to `FLUSH_S` old; this process's are current.
    """
    flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
