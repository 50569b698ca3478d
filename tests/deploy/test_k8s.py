"""Kubernetes manifests: they parse and carry the probes, resources and labels they claim."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy/k8s"
SELECTOR = {"app.kubernetes.io/name": "sdm-router", "app.kubernetes.io/component": "gateway"}


def _components() -> dict[str, dict[str, dict[str, Any]]]:
    """Every object in deploy/k8s, by component (gateway, redis), then kind."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            assert document["apiVersion"] and document["metadata"]["name"], name
            component = document["metadata"]["labels"]["app.kubernetes.io/component"]
            kinds = found.setdefault(component, {})
            assert document["kind"] not in kinds, f"duplicate {component} {document['kind']}"
            kinds[document["kind"]] = document
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "every manifest is applied by kustomization.yaml"
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """The gateway's objects in deploy/k8s, by kind."""
    return _components()["gateway"]


@pytest.fixture(scope="module")
def redis() -> dict[str, dict[str, Any]]:
    """Redis's objects (the per-key limit counters), by kind."""
    return _components()["redis"]


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = manifests["Deployment"]["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    gateway: dict[str, Any] = spec["containers"][0]
    return gateway


def test_kinds(manifests: dict[str, dict[str, Any]]) -> None:
    assert set(manifests) == {
        "ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service",
        "NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
    }  # fmt: skip
    assert set(_components()) == {"gateway", "redis"}


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
    env = {item["name"]: item.get("value") for item in gateway["env"]}
    grace = float(env["SDM_ROUTER_SERVER__GRACEFUL_SHUTDOWN_SECONDS"])
    delay = float(env["SDM_ROUTER_SERVER__DRAIN_DELAY_SECONDS"])
    pre_stop = int(gateway["lifecycle"]["preStop"]["exec"]["command"][1])
    # preStop, then SIGTERM: the drain delay, the in-flight bound, the store's flush (< 10 s)
    assert pre_stop + delay + grace + 10 <= pod["terminationGracePeriodSeconds"]
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
    config = pytest.importorskip("sdm_router.config")
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


def test_autoscaling_follows_in_flight_requests_not_cpu(
    manifests: dict[str, dict[str, Any]],
) -> None:
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "sdm_router_inflight_requests"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    # the gauge the gateway exports under that name, and the adapter rule that serves it
    metrics = (REPO_ROOT / "sdm_router/observability/metrics.py").read_text()
    assert '"sdm_router_inflight_requests"' in metrics
    adapter = yaml.safe_load((REPO_ROOT / "deploy/prometheus-adapter.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == "sdm_router_inflight_requests"
    assert rule["seriesQuery"].startswith("sdm_router_inflight_requests{")
    target = float(metric["pods"]["target"]["averageValue"])
    config = yaml.safe_load(manifests["ConfigMap"]["data"]["config.yaml"])
    assert 0 < target < config["server"]["max_concurrency"]  # scale out before 429s


def test_keys_come_from_the_secret_not_the_config_map(
    manifests: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_map = manifests["ConfigMap"]["data"]["config.yaml"]
    assert "sha256" not in config_map and "api_key" not in config_map.lower()
    secret = manifests["Secret"]
    gateway = container(manifests)
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in gateway["envFrom"]
    data = secret["stringData"]
    assert all(name.startswith("SDM_ROUTER_") or name == "REDIS_PASSWORD" for name in data)
    # placeholders fail closed: a gateway started with them refuses its configuration
    assert all("REPLACE_" in data[name] for name in ("SDM_ROUTER_AUTH__KEYS", "REDIS_PASSWORD"))
    config = pytest.importorskip("sdm_router.config")
    path = tmp_path / "config.yaml"
    path.write_text(config_map)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigurationError, match="sha256"):
        config.load_settings(path)
    # with real digests the same entries configure keys, limits, public paths and the store
    for digest, name in (("ab", "SDM_ROUTER_AUTH__KEYS"), ("cd", "SDM_ROUTER_AUTH__ADMIN_KEYS")):
        monkeypatch.setenv(name, re.sub(r"REPLACE_\w+", digest * 32, data[name]))
    env = {item["name"]: item for item in gateway["env"]}
    redis_url = env["SDM_ROUTER_LIMITS__REDIS_URL"]["value"].replace("$(REDIS_PASSWORD)", "pw")
    monkeypatch.setenv("SDM_ROUTER_LIMITS__REDIS_URL", redis_url)
    settings = config.load_settings(path)
    assert [key.name for key in settings.auth.keys] == ["app"]
    assert [key.name for key in settings.auth.admin_keys] == ["ops"]
    assert "/metrics" in settings.auth.public_paths
    assert settings.limits.redis_url is not None
    assert settings.storage.url is not None
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


def test_redis_is_private_to_the_gateways(
    manifests: dict[str, dict[str, Any]], redis: dict[str, dict[str, Any]]
) -> None:
    assert set(redis) == {"Deployment", "Service", "NetworkPolicy"}
    gateway = container(manifests)
    env = {item["name"]: item for item in gateway["env"]}
    service = redis["Service"]
    assert (
        f"@{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/"
        in (env["SDM_ROUTER_LIMITS__REDIS_URL"]["value"])
    )
    pod = redis["Deployment"]["spec"]["template"]["spec"]
    assert service["spec"]["selector"] == redis["Deployment"]["spec"]["selector"]["matchLabels"]
    (server,) = pod["containers"]
    assert "--requirepass" in server["args"] and "$(REDIS_PASSWORD)" in server["args"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    policy = redis["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == service["spec"]["selector"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": SELECTOR}}]
    assert policy["egress"] == []


def test_the_gateway_network_policy(manifests: dict[str, dict[str, Any]]) -> None:
    policy = manifests["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == SELECTOR
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert [port["port"] for rule in policy["ingress"] for port in rule["ports"]] == ["http"]
    egress_ports = {port["port"] for rule in policy["egress"] for port in rule["ports"]}
    assert egress_ports == {53, 8000, 6379, 5432}  # DNS, vLLM, Redis, PostgreSQL


def test_the_models_volume_is_a_claim_mounted_read_only(
    manifests: dict[str, dict[str, Any]],
) -> None:
    claim = manifests["PersistentVolumeClaim"]
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mount = next(m for m in container(manifests)["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == "/models" and mount["readOnly"] is True
    config = yaml.safe_load(manifests["ConfigMap"]["data"]["config.yaml"])
    assert config["verifier"]["artifact"].startswith("/models/")
    assert config["verifier"]["encoder_model"].startswith("/models/")
    assert claim["spec"]["resources"]["requests"]["storage"]
