"""docs/configuration.md is what scripts/config_reference.py generates from sdm_router/config.py."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"docs/configuration.md is stale: run `python scripts/config_reference.py`\n{done.stderr}"
    )


def test_every_settings_field_is_on_the_page() -> None:
    from sdm_router.config import Settings

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"| `{name}` |" in page
    assert "`SDM_ROUTER_STORAGE__URL`" in page and "`verifier.shadow`" in page
