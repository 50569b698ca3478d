"""Config of routing before generating: per-route switches, the environment override, errors."""

from __future__ import annotations

import pytest

from sdm_router.config import RouteSettings, load_settings
from sdm_router.core.errors import ConfigurationError
from sdm_router.core.routing import OnOod, OnOodPrompt


def test_route_defaults_route_before_generating() -> None:
    route = RouteSettings.model_validate({"tiers": [{"backend": "a"}]})
    assert route.prompt_routing is True
    assert route.skip_alpha == 0.95
    assert route.on_ood_prompt is OnOodPrompt.CASCADE
    assert route.on_ood is OnOod.RETRIEVE


def test_the_embedded_default_routes_with_the_shipped_router() -> None:
    settings = load_settings()
    assert settings.verifier.prompt_router is not None
    assert (settings.verifier.prompt_router / "router.json").is_file()
    # the shipped router's calibration reaches 0.90, not 0.95 (docs/prompt-routing.md)
    assert settings.routes["auto"].prompt_routing is True
    assert settings.routes["auto"].skip_alpha == 0.90


@pytest.mark.parametrize("value", ["off", "false", "0"])
def test_routing_off_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__PROMPT_ROUTING", value)
    assert load_settings().routes["auto"].prompt_routing is False


def test_route_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__SKIP_ALPHA", "0.99")
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__ON_OOD_PROMPT", "strongest")
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__ON_OOD", "abstain")
    route = load_settings().routes["auto"]
    assert (route.skip_alpha, route.on_ood_prompt, route.on_ood) == (
        0.99,
        OnOodPrompt.STRONGEST,
        OnOod.ABSTAIN,
    )


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("SKIP_ALPHA", "1.5", r"routes\.auto\.skip_alpha"),
        ("ON_OOD_PROMPT", "maybe", r"routes\.auto\.on_ood_prompt"),
        ("ON_OOD", "later", r"routes\.auto\.on_ood"),
        ("PROMPT_ROUTING", "sometimes", r"routes\.auto\.prompt_routing"),
    ],
)
def test_bad_values_name_the_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    monkeypatch.setenv(f"SDM_ROUTER_ROUTES__AUTO__{name}", value)
    with pytest.raises(ConfigurationError, match=field):
        load_settings()
