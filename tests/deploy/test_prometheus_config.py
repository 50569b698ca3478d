"""deploy/prometheus.yml and the alert rules pass promtool; scrape targets match compose."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.prometheus import require_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"


def promtool(*args: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(
        [require_binary("promtool"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_promtool_check_config() -> None:
    output = promtool("check", "config", "deploy/prometheus.yml")
    assert "SUCCESS" in output
    assert "1 rule files found" in output


def test_promtool_check_and_test_alert_rules() -> None:
    assert "SUCCESS" in promtool("check", "rules", "deploy/alerts/sdm-router.rules.yml")
    assert "SUCCESS" in promtool(
        "test", "rules", "sdm-router.rules.test.yml", cwd=DEPLOY / "alerts"
    )


def test_scrape_jobs_point_at_the_compose_services() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["sdm-router"]["static_configs"][0]["targets"] == ["gateway:8000"]
    assert jobs["sdm-router"]["metrics_path"] == "/metrics"
    vllm = jobs["vllm"]["dns_sd_configs"][0]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    assert set(vllm["names"]) <= set(compose)
    for name in vllm["names"]:
        assert f"--port={vllm['port']}" in compose[name]["command"]
    # The Grafana datasource's timeInterval must match the scrape interval ($__rate_interval).
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]
    assert datasource["url"] == "http://prometheus:9090"


def test_an_alert_fires_on_a_breached_guarantee() -> None:
    """The rule the live guarantee needs (its firing is tested in sdm-router.rules.test.yml)."""
    groups = yaml.safe_load((DEPLOY / "alerts/sdm-router.rules.yml").read_text())["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    breached = rules["SdmRouterGuaranteeBreached"]
    assert 'sdm_router_guarantee_status{status="breached"}' in breached["expr"]
    assert "by (route)" in breached["expr"]
    assert breached["labels"]["severity"] == "critical"
