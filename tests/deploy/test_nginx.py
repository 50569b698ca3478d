"""deploy/nginx: the edge limits nginx applies in front of replicas are the gateway's own
defaults, and nginx accepts the files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from loadtests.replicas import nginx_binary
from sdm_router.config import ServerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
NGINX = REPO_ROOT / "deploy/nginx"


def directives() -> dict[str, str]:
    """``name -> value`` of every directive in limits.conf (comments left out)."""
    found = {}
    for line in (NGINX / "limits.conf").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, value = text.rstrip(";").partition(" ")
            found[name] = value.strip()
    return found


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match.group(1))


def test_the_nginx_limits_are_the_gateways_defaults() -> None:
    limits, server = directives(), ServerSettings()
    count, size = limits["large_client_header_buffers"].split()
    assert int(count) * int(size.removesuffix("k")) * 1024 == server.max_header_bytes
    assert seconds(limits["client_header_timeout"]) == server.header_timeout_seconds
    assert seconds(limits["client_body_timeout"]) == server.body_timeout_seconds
    assert seconds(limits["keepalive_timeout"]) == server.keep_alive_seconds
    assert int(limits["client_max_body_size"]) == server.max_body_bytes


def test_nginx_accepts_the_example_configuration(tmp_path: Path) -> None:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    config = (NGINX / "nginx.conf").read_text()
    config = config.replace("/etc/nginx/sdm-router/limits.conf", str(NGINX / "limits.conf"))
    config = re.sub(r"gateway-\d:8000", "127.0.0.1:9", config)  # resolvable upstreams
    config = config.replace("listen 80;", "listen 127.0.0.1:8;")
    config = f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n{config}"
    (tmp_path / "nginx.conf").write_text(config)
    checked = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
         "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
