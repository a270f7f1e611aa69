"""The deployment contract between the app and its artefacts, and readers for those artefacts.

The constants are what the Dockerfile, the manifests and the dashboard are checked against;
a test that the app's routes and metrics match them belongs next to the app's tests.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "k8s"
SECRET_EXAMPLE = "secret.example.yaml"

PORT = 8000
PORT_NAME = "http"
USER_ID = 10001
LIVENESS_PATH = "/liveness"
READINESS_PATH = "/readiness"
METRICS_PATH = "/metrics"
CONFIG_PATH = "/etc/cascade-gateway/config.yaml"
DRAIN_ENV = "CASCADE_SERVER__DRAIN_SECONDS"
DRAIN_SECONDS_DEFAULT = 20
PROMETHEUS_MULTIPROC_DIR = "/tmp/prometheus"

# Environment the app reads from the Secret (provider keys come from the config's api_key_env).
SECRET_ENV = {
    "CASCADE_MASTER_KEY",
    "CASCADE_STORAGE__DATABASE_URL",
    "CASCADE_STORAGE__REDIS_URL",
}

# Metric name -> type and labels, as the app exports them.
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "cascade_requests_total": ("counter", frozenset({"cascade", "outcome"})),
    "cascade_cost_usd_total": ("counter", frozenset({"model"})),
    "cascade_savings_usd_total": ("counter", frozenset({"cascade"})),
    "cascade_tokens_total": ("counter", frozenset({"model", "direction"})),
    "cascade_request_duration_seconds": ("histogram", frozenset({"cascade"})),
    "cascade_stage_duration_seconds": ("histogram", frozenset({"stage"})),
    "cascade_time_to_first_token_seconds": ("histogram", frozenset({"cascade"})),
    "cascade_validator_score": ("histogram", frozenset({"cascade"})),
    "cascade_upstream_errors_total": ("counter", frozenset({"provider", "code"})),
    "cascade_in_flight_requests": ("gauge", frozenset()),
    "cascade_budget_remaining_usd": ("gauge", frozenset({"key_name"})),
}
OUTCOMES = {"accepted", "escalated", "direct", "rejected", "error"}


@dataclass
class Stage:
    """One `FROM` of a Dockerfile and its instructions, as (KEYWORD, arguments) pairs."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages(text: str) -> list[Stage]:
    """Split a Dockerfile into stages; continuation lines are joined, comments dropped."""
    stages: list[Stage] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        logical = ""
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif keyword != "ARG" or stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) instruction argument; shell form is refused."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def flag_value(argv: list[str], flag: str) -> str:
    """The value after `flag` (or of `flag=value`) in an argument list."""
    for i, arg in enumerate(argv):
        if arg == flag:
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {argv}")


def shell_words(command: str) -> list[str]:
    return shlex.split(command)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_files() -> list[Path]:
    """Every Kubernetes object file under k8s/ (not the kustomization itself)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def objects() -> dict[str, dict[str, Any]]:
    """Kind -> object, over the kustomization's resources (one object of each kind here)."""
    found: dict[str, dict[str, Any]] = {}
    for path in manifest_files():
        if path.name == SECRET_EXAMPLE:
            continue
        for doc in load_documents(path):
            assert doc["kind"] not in found, f"two {doc['kind']} objects"
            found[doc["kind"]] = doc
    return found


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) used in a PromQL expression; enough for dashboard queries."""
    labels: set[str] = set()
    no_strings = _STRINGS.sub('""', expr)
    for matcher in _MATCHERS.findall(no_strings):
        labels.update(_MATCHER_LABEL.findall(matcher))
    text = _RANGES.sub("", _MATCHERS.sub("", no_strings))
    for grouping in _GROUPING.findall(text):
        labels.update(name.strip() for name in grouping.split(",") if name.strip())
    text = _GROUPING.sub("", text)
    metrics = set()
    for match in _IDENT.finditer(text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group().lower() in _KEYWORDS:
            continue  # a function or aggregation, or an operator keyword
        metrics.add(match.group())
    return metrics, labels


def series_of(metric: str) -> str:
    """The contract metric a sample name belongs to (`x_bucket` -> `x` for histograms)."""
    if metric in METRICS:
        return metric
    for suffix in ("_bucket", "_sum", "_count"):
        base = metric.removesuffix(suffix)
        if base != metric and METRICS.get(base, ("",))[0] == "histogram":
            return base
    raise AssertionError(f"{metric} is not a metric the gateway exports")
