"""Per-request counters and histograms are summed in memory and written within FLUSH_S, or at
a scrape."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from cascade_gateway.cascade.trace import Attempt, Trace
from cascade_gateway.observability import metrics


def a_trace(route: str) -> Trace:
    attempt = Attempt(tier=0, model=f"{route}-model", provider="p", upstream_model="m")
    attempt.input_tokens, attempt.cost_usd = 12, 0.5
    return Trace(
        request_id="r",
        route=route,
        mode="direct",
        created_at=time.time(),
        streamed=False,
        baseline_model="m",
        attempts=[attempt],
        outcome="direct",
    )


def requests(route: str) -> float:
    value = REGISTRY.get_sample_value(
        "cascade_requests_total", {"cascade": route, "outcome": "direct"}
    )
    return value or 0.0


async def test_counts_are_written_within_the_flush_interval():
    metrics.observe(a_trace("flush-later"))
    metrics.observe(a_trace("flush-later"))
    assert requests("flush-later") == 0

    await asyncio.sleep(metrics.FLUSH_S + 0.1)

    assert requests("flush-later") == 2
    tokens = {"model": "flush-later-model", "direction": "input"}
    assert REGISTRY.get_sample_value("cascade_tokens_total", tokens) == 24


async def test_a_scrape_sees_every_count_at_once():
    metrics.observe(a_trace("scraped"))

    body, _ = metrics.render()

    assert b'cascade_requests_total{cascade="scraped",outcome="direct"} 1.0' in body


async def test_in_flight_is_written_as_the_current_count():
    metrics.request_started()
    metrics.request_started()
    metrics.request_ended()
    metrics.flush()
    assert REGISTRY.get_sample_value("cascade_in_flight_requests") == 1
    metrics.request_ended()
    metrics.flush()
    assert REGISTRY.get_sample_value("cascade_in_flight_requests") == 0


def test_pending_observations_are_written_as_the_library_would_observe_them():
    values = [0.001, 0.005, 0.0051, 0.3, 0.3, 7.0, 500.0, -1.0]
    registry = CollectorRegistry()
    batched = Histogram("batched", "h", buckets=metrics._LATENCY, registry=registry)
    reference = Histogram("reference", "h", buckets=metrics._LATENCY, registry=registry)

    metrics._observe_all(batched, values)
    for value in values:
        reference.observe(value)

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        (family,) = [f for f in registry.collect() if f.name == name]
        return [
            (s.name.removeprefix(name), s.labels, s.value)
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert samples("batched") == samples("reference")


async def test_histograms_are_written_within_the_flush_interval():
    trace = a_trace("timed")
    trace.total_ms = 30.0
    labels = {"cascade": "timed", "le": "0.05"}
    metrics.observe(trace)
    metrics.observe(trace)
    assert REGISTRY.get_sample_value("cascade_request_duration_seconds_bucket", labels) is None

    await asyncio.sleep(metrics.FLUSH_S + 0.1)

    assert REGISTRY.get_sample_value("cascade_request_duration_seconds_bucket", labels) == 2
    count = REGISTRY.get_sample_value(
        "cascade_request_duration_seconds_count", {"cascade": "timed"}
    )
    assert count == 2


async def test_finished_traces_wait_uncounted_only_up_to_a_bound():
    for _ in range(metrics.MAX_UNCOUNTED + 5):
        metrics.observe(a_trace("many"))

    assert len(metrics._pending.traces) < metrics.MAX_UNCOUNTED
    metrics.flush()
    assert requests("many") == metrics.MAX_UNCOUNTED + 5


async def test_a_trace_that_cannot_be_counted_is_logged_and_the_others_still_are(caplog):
    broken = a_trace("uncountable")
    broken.total_ms = None  # type: ignore[assignment]  # no duration to observe
    metrics.observe(a_trace("countable"))
    metrics.observe(broken)

    with caplog.at_level(logging.ERROR, logger="cascade_gateway.observability.metrics"):
        body, _ = metrics.render()

    assert b'cascade_requests_total{cascade="countable",outcome="direct"} 1.0' in body
    failed = [r for r in caplog.records if r.getMessage() == "request not counted in metrics"]
    assert [r.fields["request_id"] for r in failed] == ["r"]
