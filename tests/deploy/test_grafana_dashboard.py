"""The Grafana dashboard plots only metrics the gateway exports, with their own labels."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.contract import K8S, METRICS, OUTCOMES, promql_names, series_of

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((K8S / "grafana-dashboard.json").read_text(encoding="utf-8"))


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a JSON document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [node["expr"] for node in walk(dashboard["panels"]) if "expr" in node]


def test_promql_reader() -> None:
    metrics, labels = promql_names(
        'histogram_quantile(0.9, sum by (le, cascade) (rate(x_bucket{outcome=~"a|b"}[5m]))) '
        "/ on (cascade) sum(y) * 3600"
    )
    assert metrics == {"x_bucket", "y"}
    assert labels == {"le", "cascade", "outcome"}


def test_every_expression_uses_contract_metrics_and_their_labels(
    dashboard: dict[str, Any],
) -> None:
    exprs = expressions(dashboard)
    assert len(exprs) >= 10
    for expr in exprs:
        metrics, labels = promql_names(expr)
        assert metrics, expr
        series = {series_of(m) for m in metrics}  # raises for a name the gateway lacks
        allowed = set(TARGET_LABELS).union(*(METRICS[s][1] for s in series))
        if any(m.endswith("_bucket") for m in metrics):
            allowed.add("le")
        assert labels <= allowed, f"{expr}: labels {labels - allowed} are not on {series}"


def test_every_contract_metric_is_plotted(dashboard: dict[str, Any]) -> None:
    plotted = {series_of(m) for e in expressions(dashboard) for m in promql_names(e)[0]}
    assert plotted == set(METRICS)


def test_quantiles_come_from_histogram_buckets(dashboard: dict[str, Any]) -> None:
    quantiles = [e for e in expressions(dashboard) if "histogram_quantile" in e]
    histograms = {name for name, (kind, _) in METRICS.items() if kind == "histogram"}
    assert {series_of(m) for e in quantiles for m in promql_names(e)[0]} == histograms
    for expr in quantiles:
        metrics, labels = promql_names(expr)
        assert all(m.endswith("_bucket") for m in metrics), expr
        assert "le" in labels, expr


def test_outcome_values_are_the_gateways(dashboard: dict[str, Any]) -> None:
    used = set()
    for expr in expressions(dashboard):
        for value in re.findall(r'outcome=~?"([^"]*)"', expr):
            used.update(value.split("|"))
    assert used and used <= OUTCOMES
    # The acceptance rate is accepted / (accepted + escalated).
    assert any('outcome=~"accepted|escalated"' in e for e in expressions(dashboard))


def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = [p for p in walk(dashboard["panels"]) if "gridPos" in p and p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panels_have_unique_ids(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
