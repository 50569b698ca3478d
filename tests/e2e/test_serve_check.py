"""``sdm-router serve --check``: every component starts as serving starts it, or the reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdm_router.config import load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "sdm-router"
    return subprocess.run(
        [str(script), "serve", "--check"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "SDM_ROUTER_STATE_DIR": str(tmp_path / "state"), **env},
    )  # fmt: skip


def test_the_embedded_default_checks_ready(tmp_path: Path) -> None:
    checked = _check(tmp_path)
    assert checked.returncode == 0, checked.stderr[-2000:]
    report = json.loads(checked.stdout)
    assert report["ready"] is True
    assert set(report["components"]) >= {"verifier", "backend:smollm2-135m", "decision_store"}


def test_a_corrupt_artifact_is_refused_with_its_reason(tmp_path: Path) -> None:
    shipped = load_settings(None).verifier.artifact
    assert shipped is not None
    corrupt = tmp_path / "corrupt.sdmkitmodel"
    shutil.copytree(shipped, corrupt)
    with (corrupt / "support.f32").open("r+b") as vectors:
        vectors.seek(64)
        vectors.write(b"\x7f\x7f\x7f\x7f")
    checked = _check(tmp_path, SDM_ROUTER_VERIFIER__ARTIFACT=str(corrupt))
    assert checked.returncode == 1
    assert "support.f32: checksum mismatch" in checked.stderr
    assert checked.stdout == ""
