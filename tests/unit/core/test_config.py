"""Config loading: YAML, env overrides, validation messages that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdm_router.config import EMBEDDED_CONFIG, OpenAIBackendSettings, load_settings
from sdm_router.core.errors import ConfigurationError

VLLM_CONFIG = EMBEDDED_CONFIG.parent / "vllm.yaml"


def test_shipped_configs_load() -> None:
    embedded = load_settings()
    assert embedded.routes["auto"].tiers[1].n == 4
    assert embedded.verifier.artifact is not None and embedded.verifier.artifact.is_absolute()
    vllm = load_settings(VLLM_CONFIG)
    assert [tier.backend for tier in vllm.routes["auto"].tiers] == ["small", "large"]


def test_environment_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDM_ROUTER_SERVER__PORT", "9123")
    monkeypatch.setenv("SDM_ROUTER_BACKENDS__SMALL__BASE_URL", "http://10.0.0.1:8000/v1")
    settings = load_settings(VLLM_CONFIG)
    assert settings.server.port == 9123
    small = settings.backends["small"]
    assert isinstance(small, OpenAIBackendSettings)
    assert small.base_url == "http://10.0.0.1:8000/v1"
    assert small.model == "Qwen/Qwen2.5-1.5B-Instruct"


@pytest.mark.parametrize("alpha", ["0.5", "1.0", "1.5", "0.2"])
def test_alpha_outside_the_open_interval_is_refused(
    alpha: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__ACCEPT_ALPHA", alpha)
    with pytest.raises(ConfigurationError, match=r"routes\.auto\.accept_alpha"):
        load_settings()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_unknown_backend_reference_names_the_tier(tmp_path: Path) -> None:
    text = VLLM_CONFIG.read_text().replace("backend: large", "backend: huge")
    with pytest.raises(ConfigurationError, match=r"routes\.auto\.tiers\.1\.backend.*'huge'"):
        load_settings(_write(tmp_path, text))


def test_unknown_keys_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    text = VLLM_CONFIG.read_text().replace("server:\n", "server:\n  colour: red\n")
    with pytest.raises(ConfigurationError, match=r"server\.colour"):
        load_settings(_write(tmp_path, text))
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_settings(_write(tmp_path, "routes: [unclosed"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_relative_artifact_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    text = EMBEDDED_CONFIG.read_text().replace(
        "../artifacts/smollm2-135m.sdmkitmodel", "models/v.sdmkitmodel"
    )
    settings = load_settings(_write(tmp_path, text))
    assert settings.verifier.artifact == (tmp_path / "models" / "v.sdmkitmodel").resolve()
