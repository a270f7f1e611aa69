"""The Kubernetes manifests: valid against the API schemas, and wired as the contract says."""

from __future__ import annotations

import copy
import os
import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from cascade_gateway import __version__
from cascade_gateway.config import parse_config, warnings
from tests.deploy.contract import (
    CONFIG_PATH,
    DOCKERFILE,
    DRAIN_ENV,
    DRAIN_SECONDS_DEFAULT,
    K8S,
    LIVENESS_PATH,
    METRICS_PATH,
    PORT,
    PORT_NAME,
    PROMETHEUS_MULTIPROC_DIR,
    READINESS_PATH,
    SECRET_ENV,
    SECRET_EXAMPLE,
    USER_ID,
    dockerfile_stages,
    exec_form,
    flag_value,
    load_documents,
    manifest_files,
    objects,
)

# The oldest Kubernetes minor we claim to support, and the newest the schemas know.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    return objects()


@pytest.fixture(scope="module")
def pod(k8s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return k8s["Deployment"]["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["spec"]["containers"]
    return only


@pytest.fixture(scope="module")
def secret_example() -> dict[str, Any]:
    (secret,) = load_documents(K8S / SECRET_EXAMPLE)
    return secret


def image_cmd() -> list[str]:
    return exec_form(dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1].last("CMD"))


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path, version: str) -> None:
    documents = load_documents(path)
    assert documents, f"{path.name} holds no object"
    for document in documents:
        # strict: unknown (misspelt) fields are errors too. Offline: the schemas ship in the wheel.
        kubernetes_validate.validate(document, version, strict=True)
        assert "namespace" not in document["metadata"], "namespace-agnostic: set it at apply time"


def test_the_schema_check_is_not_vacuous(k8s: dict[str, dict[str, Any]]) -> None:
    broken = copy.deepcopy(k8s["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    expected = {p.name for p in manifest_files()} - {SECRET_EXAMPLE}
    assert set(resources) == expected
    # `kustomize edit set image cascade-gateway=registry/cascade-gateway:tag` retargets it.
    (override,) = kustomization["images"]
    image = objects()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{override['name']}:{override['newTag']}"
    assert override["newTag"] == __version__


def test_container_serves_the_image_cmd_on_the_named_port(container: dict[str, Any]) -> None:
    assert "command" not in container and "args" not in container, "the image's CMD runs"
    (port,) = container["ports"]
    assert port == {"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}
    assert int(flag_value(image_cmd(), "--port")) == port["containerPort"]


def test_probes_use_the_contract_routes(container: dict[str, Any]) -> None:
    routes = {
        "startupProbe": LIVENESS_PATH,
        "livenessProbe": LIVENESS_PATH,
        "readinessProbe": READINESS_PATH,
    }
    for probe, path in routes.items():
        assert container[probe]["httpGet"] == {"path": path, "port": PORT_NAME}, probe
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    # Readiness reacts fast (a draining pod leaves the Service); liveness is patient.
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 15
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def prestop_sleep_seconds(container: dict[str, Any]) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[:2] == ["python", "-c"], command
    match = re.fullmatch(r"import time; time\.sleep\((\d+)\)", command[2])
    assert match, command
    return int(match.group(1))


def test_grace_period_covers_prestop_and_drain(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    sleep = prestop_sleep_seconds(container)
    drain = int(env_of(container).get(DRAIN_ENV, DRAIN_SECONDS_DEFAULT))
    assert sleep >= 5, "long enough for endpoints to be removed before the drain starts"
    # The grace period counts from the start of preStop; leave room for the exit itself.
    assert pod["spec"]["terminationGracePeriodSeconds"] > sleep + drain + 5


def test_runs_locked_down_as_the_image_user(pod: dict[str, Any], container: dict[str, Any]) -> None:
    for context in (pod["spec"]["securityContext"], container["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == USER_ID
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_writable_dirs_are_empty_dirs(pod: dict[str, Any], container: dict[str, Any]) -> None:
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert env_of(container)["PROMETHEUS_MULTIPROC_DIR"] == PROMETHEUS_MULTIPROC_DIR
    for path in ("/tmp", PROMETHEUS_MULTIPROC_DIR):
        assert "emptyDir" in mounts[path], path


def test_config_map_is_mounted_where_the_cmd_reads_it(
    k8s: dict[str, dict[str, Any]], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    config_path = flag_value(image_cmd(), "--config")
    assert config_path == CONFIG_PATH
    directory, key = posixpath.split(config_path)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True and "subPath" not in mount
    assert volumes[mount["name"]]["configMap"]["name"] == k8s["ConfigMap"]["metadata"]["name"]
    assert key in k8s["ConfigMap"]["data"]


def test_secret_template_names_every_key_the_app_reads(
    k8s: dict[str, dict[str, Any]], container: dict[str, Any], secret_example: dict[str, Any]
) -> None:
    (source,) = container["envFrom"]
    assert source["secretRef"]["name"] == secret_example["metadata"]["name"]
    config = yaml.safe_load(k8s["ConfigMap"]["data"]["config.yaml"])
    provider_keys = {p["api_key_env"] for p in config["providers"].values()}
    assert set(secret_example["stringData"]) == SECRET_ENV | provider_keys
    assert all(
        "REPLACE-ME" in value
        for name, value in secret_example["stringData"].items()
        if name != "CASCADE_STORAGE__REDIS_URL"
    ), "placeholders only: no value in the template is usable as is"


def test_config_map_config_passes_the_gateway_check(
    k8s: dict[str, dict[str, Any]],
    secret_example: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("CASCADE_")]:
        monkeypatch.delenv(name)
    # The template's values, placeholders filled in: its URLs must be ones the gateway accepts.
    for name, value in secret_example["stringData"].items():
        monkeypatch.setenv(name, value.replace("REPLACE-ME", "0123456789abcdef" * 2))
    raw = yaml.safe_load(k8s["ConfigMap"]["data"]["config.yaml"])
    config = parse_config(raw, "k8s/configmap.yaml")  # raises ConfigError listing problems
    assert warnings(config) == []
    # Several replicas must share their state: not each its own SQLite file.
    assert config.storage.database_url.startswith("postgresql://")
    assert config.storage.redis_url is not None
    assert "default" in config.cascades
    assert {p.kind for p in config.providers.values()} == {"openai", "anthropic"}


def test_scrape_annotations_point_at_metrics(pod: dict[str, Any]) -> None:
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == METRICS_PATH


def test_rollout_and_spread(k8s: dict[str, dict[str, Any]], pod: dict[str, Any]) -> None:
    spec = k8s["Deployment"]["spec"]
    labels = pod["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    constraints = pod["spec"]["topologySpreadConstraints"]
    assert "kubernetes.io/hostname" in {c["topologyKey"] for c in constraints}
    for constraint in constraints:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()


def test_resources_are_bounded(container: dict[str, Any]) -> None:
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_service_routes_port_80_to_the_named_port(
    k8s: dict[str, dict[str, Any]], pod: dict[str, Any]
) -> None:
    spec = k8s["Service"]["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = spec["ports"]
    assert (port["port"], port["targetPort"]) == (80, PORT_NAME)


def test_autoscaling_and_disruption_budget_fit_the_deployment(
    k8s: dict[str, dict[str, Any]], pod: dict[str, Any]
) -> None:
    deployment, hpa = k8s["Deployment"], k8s["HorizontalPodAutoscaler"]
    pdb = k8s["PodDisruptionBudget"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"] == 3
    assert hpa["spec"]["maxReplicas"] == 10
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["averageUtilization"] == 70
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    # A budget that allowed no disruption would block every node drain.
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] >= 1
    else:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
