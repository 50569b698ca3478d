"""Config of the OpenAI surface: route options for tool calls and parameters, embeddings."""

from __future__ import annotations

import pytest

from sdm_router.config import EMBEDDED_CONFIG, load_settings
from sdm_router.core.errors import ConfigurationError
from sdm_router.core.routing import OnUnverified

VLLM_CONFIG = EMBEDDED_CONFIG.parent / "vllm.yaml"


def test_route_defaults_verify_tool_calls_and_refuse_parameters() -> None:
    route = load_settings().routes["auto"]
    assert route.verify_tool_calls is True
    assert route.on_unverified is OnUnverified.ABSTAIN
    assert route.drop_params is False
    assert load_settings().embeddings == {}


def test_route_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__VERIFY_TOOL_CALLS", "false")
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__ON_UNVERIFIED", "pass")
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__DROP_PARAMS", "true")
    route = load_settings().routes["auto"]
    assert (route.verify_tool_calls, route.on_unverified, route.drop_params) == (
        False,
        OnUnverified.PASS,
        True,
    )


def test_on_unverified_is_a_closed_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__ON_UNVERIFIED", "maybe")
    with pytest.raises(ConfigurationError, match=r"routes\.auto\.on_unverified"):
        load_settings()


def test_embeddings_name_an_openai_backend() -> None:
    settings = load_settings(VLLM_CONFIG, embeddings={"e": {"backend": "small", "model": "bge"}})
    assert settings.embeddings["e"].model == "bge"
    with pytest.raises(ConfigurationError, match=r"embeddings\.e\.backend: 'nope'"):
        load_settings(VLLM_CONFIG, embeddings={"e": {"backend": "nope"}})
    with pytest.raises(ConfigurationError, match=r"embeddings\.e\.backend: .* not an openai"):
        load_settings(embeddings={"e": {"backend": "smollm2-135m"}})
