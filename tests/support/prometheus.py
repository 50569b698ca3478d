"""A real Prometheus server for tests: free local port, own TSDB dir, 1 s scrapes.

``require_prometheus()`` finds the binary, running ``scripts/ensure-prometheus`` once to
install the Debian package when it is missing, and skips the test with the reason when it
still cannot be had. ``run_prometheus()`` starts a server scraping the given targets, waits
until it is ready and stops it cleanly afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = REPO_ROOT / "scripts" / "ensure-prometheus"

_install_attempted: dict[str, str] = {}


def _find(binary: str) -> str | None:
    return shutil.which(binary) or (
        f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None
    )


def ensure_installed() -> str | None:
    """Run ``scripts/ensure-prometheus`` once per session; return its explanation."""
    if "output" not in _install_attempted:
        if not ENSURE_SCRIPT.exists():
            _install_attempted["output"] = f"{ENSURE_SCRIPT} is missing"
        else:
            done = subprocess.run(
                [str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
            )
            _install_attempted["output"] = (done.stdout + done.stderr).strip()
    return _install_attempted["output"]


def require_binary(binary: str) -> str:
    """Path of ``prometheus`` or ``promtool``; installs once, else skips with the reason."""
    found = _find(binary)
    if found is None:
        why = ensure_installed()
        found = _find(binary)
        if found is None:
            pytest.skip(
                f"{binary} is not installed and could not be installed "
                f"(Debian package 'prometheus'): {why}"
            )
    return found


def require_prometheus() -> str:
    """Path of the ``prometheus`` binary, or skip the test with the reason."""
    return require_binary("prometheus")


class PromQLError(AssertionError):
    """Prometheus rejected a query (bad syntax, unknown function...)."""


@dataclass
class PrometheusServer:
    """A running Prometheus with a small HTTP API client."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # 4xx carries a JSON error body
            body = json.loads(error.read() or b"{}")
            raise PromQLError(
                f"{path} {params}: HTTP {error.code} {body.get('errorType')}: {body.get('error')}"
            ) from error

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate an instant query now; the result vector (raises PromQLError if invalid)."""
        body = self._get("/api/v1/query", {"query": expr})
        if body.get("status") != "success":
            raise PromQLError(f"{expr}: {body}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health."""
        active: list[dict[str, Any]] = self._get("/api/v1/targets")["data"]["activeTargets"]
        return active

    def wait_for_targets_up(self, timeout: float = 30.0) -> None:
        """Block until every target has been scraped successfully."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = self.targets()
            if targets and all(t["health"] == "up" for t in targets):
                return
            time.sleep(0.25)
        raise AssertionError(f"targets not up after {timeout}s: {targets}")

    def wait_for_series(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until ``expr`` returns a non-empty result; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.25)
        raise AssertionError(f"no data for {expr!r} after {timeout}s")

    def log(self) -> str:
        """Prometheus' own log so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace")


def scrape_config(
    targets: Mapping[str, Sequence[str]], scrape_interval: str = "1s"
) -> dict[str, Any]:
    """A prometheus.yml with one job per entry of ``targets`` (job name -> host:port list)."""
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in targets.items()
        ],
    }


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {process.returncode}: {log_path.read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"prometheus not ready after 30s: {log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def run_prometheus(
    targets: Mapping[str, Sequence[str]],
    workdir: Path,
    scrape_interval: str = "1s",
) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``targets`` (job -> ["host:port", ...]); stop it on exit."""
    binary = require_prometheus()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config(targets, scrape_interval)))
    last_error: Exception | None = None
    for attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        log_path = workdir / f"prometheus-{attempt}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / f'tsdb-{attempt}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base_url, process, log_path)
        except RuntimeError as error:
            last_error = error
            _stop(process)
            continue
        try:
            yield PrometheusServer(base_url=base_url, process=process, log_path=log_path)
        finally:
            _stop(process)
        return
    raise RuntimeError(f"could not start prometheus: {last_error}")
