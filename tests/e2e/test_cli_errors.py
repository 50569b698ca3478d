"""Bad command-line input ends in one line naming the argument, exit status 2, nothing created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdm_router.cli", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_data_build_with_an_unknown_suite(tmp_path: Path) -> None:
    out = tmp_path / "rows"
    done = run("data", "build", "--suite", "bogus", "--out", str(out))
    assert_one_line_error(done, "--suite", "bogus", "known:")
    assert not out.exists()


def test_verifier_build_without_data_loads_nothing(tmp_path: Path) -> None:
    out = tmp_path / "v.sdmkitmodel"
    done = run("verifier", "build", "--data", str(tmp_path / "none"), "--out", str(out))
    assert_one_line_error(done, "--data", "rows.jsonl")
    assert not out.exists()


def test_verifier_build_with_a_missing_encoder(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text("")
    out = tmp_path / "v.sdmkitmodel"
    done = run(
        "verifier", "build", "--data", str(tmp_path), "--encoder", "/nope.gguf", "--out", str(out)
    )
    assert_one_line_error(done, "--encoder", "/nope.gguf")
    assert not out.exists()


def test_verifier_build_with_a_malformed_row_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"id": "a"}\n')
    done = run("verifier", "build", "--data", str(tmp_path), "--out", str(tmp_path / "v"))
    assert_one_line_error(done, "--data", "rows.jsonl:1")


def test_a_bad_environment_override_names_the_variable() -> None:
    done = run("serve", env={"SDM_ROUTER_SERVER__PORT": "abc"})
    assert done.returncode == 2
    assert "environment variable SDM_ROUTER_SERVER__PORT" in done.stderr
    assert "embedded.yaml" not in done.stderr
