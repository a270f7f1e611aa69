"""Probes, Prometheus metrics and the per-request log line."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest

from cascade_gateway.app import create_app
from cascade_gateway.config import parse_config
from cascade_gateway.fake_upstream import Fault, Reply, Rule
from cascade_gateway.observability.logs import JsonFormatter
from tests.api.conftest import gateway_config
from tests.deploy.contract import LIVENESS_PATH, METRICS_PATH, READINESS_PATH

QUESTION = [{"role": "user", "content": "What is the secret capital of France?"}]
GOOD = "The capital of France is Paris."
HEDGE = "I'm not sure, but it might possibly be Lyon, I think. I don't know."


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics_text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if found == wanted:
            return float(match.group(3))
    return 0.0


def test_probe_paths_in_the_k8s_manifests_are_served_by_the_app(http):
    for path in (LIVENESS_PATH, READINESS_PATH, METRICS_PATH):
        assert http.get(path).status_code == 200, path


def test_liveness_and_readiness_are_ok_on_a_healthy_gateway(http):
    assert http.get("/liveness").json() == {"status": "alive"}
    ready = http.get("/readiness")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"config": "ok", "storage": "ok", "upstreams": "ok"}


def test_health_reports_version_uptime_and_dependencies(http):
    health = http.get("/health").json()

    assert health["version"] == "0.1.0"
    assert health["uptime_s"] > 0
    assert health["checks"]["storage"] == "ok"
    assert "default" in health["routes"]


async def test_readiness_names_the_failed_check_when_storage_is_gone(upstream):
    app = create_app(parse_config(gateway_config(upstream.url)))
    async with app.router.lifespan_context(app):
        await app.state.services.db.aclose()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.get("/readiness")

    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert response.json()["checks"]["storage"].startswith("error:")


def test_metrics_count_requests_cost_tokens_and_scores(client, http, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=HEDGE, usage=(100, 20))))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD, usage=(100, 10))))
    before = http.get("/metrics").text

    client.chat.completions.create(model="default", messages=QUESTION)

    after = http.get("/metrics").text
    delta = lambda name, **labels: sample(after, name, **labels) - sample(before, name, **labels)  # noqa: E731
    assert delta("cascade_requests_total", cascade="default", outcome="escalated") == 1
    assert delta("cascade_cost_usd_total", model="small") == pytest.approx(27e-6)
    assert delta("cascade_cost_usd_total", model="large") == pytest.approx(350e-6)
    assert delta("cascade_tokens_total", model="large", direction="output") == 10
    assert delta("cascade_savings_usd_total", cascade="default") == pytest.approx(-27e-6)
    assert delta("cascade_validator_score_count", cascade="default") == 1
    assert delta("cascade_stage_duration_seconds_count", stage="escalate") == 1
    assert delta("cascade_request_duration_seconds_count", cascade="default") == 1


def test_upstream_errors_are_counted_by_provider_and_code(http, upstream):
    upstream.add(Rule(model="strong-model", fault=Fault(status=503)))
    before = http.get("/metrics").text

    http.post("/v1/chat/completions", json={"model": "large", "messages": QUESTION})

    after = http.get("/metrics").text
    key = {"provider": "local", "code": "upstream_503"}
    assert (
        sample(after, "cascade_upstream_errors_total", **key)
        - sample(before, "cascade_upstream_errors_total", **key)
        == 1
    )


def test_one_json_log_line_per_request_without_prompt_text(client, upstream, caplog):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, usage=(12, 7))))
    caplog.set_level(logging.INFO, logger="cascade_gateway.access")

    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=QUESTION, extra_headers={"x-request-id": "log-1"}
    )

    records = [r for r in caplog.records if getattr(r, "fields", {}).get("request_id") == "log-1"]
    assert len(records) == 1 and raw.status_code == 200
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["status"] == 200
    assert line["cascade"] == "default"
    assert line["models_tried"] == ["small"]
    assert line["outcome"] == "accepted"
    assert line["input_tokens"] == 12 and line["output_tokens"] == 7
    assert line["cost_usd"] > 0 and line["latency_ms"] > 0
    assert "secret capital" not in json.dumps(line)
    assert "Paris" not in json.dumps(line)
