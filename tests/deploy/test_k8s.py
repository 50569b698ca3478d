"""Kubernetes manifests: they parse and carry the probes, resources and labels they claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy/k8s"
SELECTOR = {"app.kubernetes.io/name": "sdm-router", "app.kubernetes.io/component": "gateway"}


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Every object in deploy/k8s, by kind."""
    found: dict[str, dict[str, Any]] = {}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            assert document["apiVersion"] and document["metadata"]["name"], name
            assert document["kind"] not in found, f"duplicate {document['kind']}"
            found[document["kind"]] = document
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "every manifest is applied by kustomization.yaml"
    return found


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = manifests["Deployment"]["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    gateway: dict[str, Any] = spec["containers"][0]
    return gateway


def test_kinds(manifests: dict[str, dict[str, Any]]) -> None:
    assert set(manifests) == {
        "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "ServiceMonitor",
    }  # fmt: skip


def test_labels_and_selectors_agree(manifests: dict[str, dict[str, Any]]) -> None:
    for kind, document in manifests.items():
        assert SELECTOR.items() <= document["metadata"]["labels"].items(), kind
    deployment = manifests["Deployment"]["spec"]
    assert deployment["selector"]["matchLabels"] == SELECTOR
    assert SELECTOR.items() <= deployment["template"]["metadata"]["labels"].items()
    assert manifests["Service"]["spec"]["selector"] == SELECTOR
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == SELECTOR
    assert manifests["ServiceMonitor"]["spec"]["selector"]["matchLabels"] == SELECTOR


def test_probes(manifests: dict[str, dict[str, Any]]) -> None:
    gateway = container(manifests)
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in gateway["ports"]


def test_graceful_termination_fits_in_the_grace_period(
    manifests: dict[str, dict[str, Any]],
) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    gateway = container(manifests)
    env = {item["name"]: item["value"] for item in gateway["env"]}
    drain = float(env["SDM_ROUTER_SERVER__GRACEFUL_SHUTDOWN_SECONDS"])
    pre_stop = int(gateway["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pre_stop + drain < pod["terminationGracePeriodSeconds"]
    assert manifests["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_resources_and_security(manifests: dict[str, dict[str, Any]]) -> None:
    gateway = container(manifests)
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(gateway["resources"][bound])
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert gateway["securityContext"]["allowPrivilegeEscalation"] is False
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in gateway["volumeMounts"] if not m.get("readOnly")}
    assert "/tmp" in writable


def test_config_map_is_the_vllm_route_config(manifests: dict[str, dict[str, Any]]) -> None:
    gateway = container(manifests)
    assert gateway["args"][-2:] == ["--config", "/etc/sdm-router/config.yaml"]
    mount = next(m for m in gateway["volumeMounts"] if m["mountPath"] == "/etc/sdm-router")
    volume = next(
        v for v in manifests["Deployment"]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == mount["name"]
    )  # fmt: skip
    assert volume["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    embedded = yaml.safe_load(manifests["ConfigMap"]["data"]["config.yaml"])
    assert embedded == yaml.safe_load((REPO_ROOT / "configs/vllm.yaml").read_text())


def test_config_map_loads_as_settings(manifests: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    config = pytest.importorskip("service.config")
    path = tmp_path / "config.yaml"
    path.write_text(manifests["ConfigMap"]["data"]["config.yaml"])
    settings = config.load_settings(path)
    assert "auto" in settings.routes


def test_scraping_and_autoscaling(manifests: dict[str, dict[str, Any]]) -> None:
    annotations = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"
    endpoint = manifests["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["port"] == manifests["Service"]["spec"]["ports"][0]["name"]
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == manifests["Deployment"]["metadata"]["name"]
    assert hpa["minReplicas"] >= 2
    assert hpa["maxReplicas"] > hpa["minReplicas"]
