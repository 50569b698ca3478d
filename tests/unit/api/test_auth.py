"""Keys: config validation (hashes, env references, the old fields), lookup, path classes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from sdm_router.api.edge.auth import AuthMiddleware, KeyRing, bearer_token, route_path
from sdm_router.api.edge.key_limits import reset_text
from sdm_router.config import AuthSettings, Settings
from sdm_router.core.errors import ConfigurationError
from sdm_router.core.routing import StreamMode
from sdm_router.pipeline.plan import RoutePlan
from tests.support.keys import key_entry, sha256_hex
from tests.support.plans import route_plan

BASE: dict[str, Any] = {
    "backends": {"good": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}},
    "verifier": {"artifact": "/nonexistent/a", "encoder_model": "/nonexistent"},
    "routes": {"auto": {"tiers": [{"backend": "good"}]}},
}


def settings(**changes: Any) -> Settings:
    return Settings(**{**BASE, **changes})


def test_a_key_is_given_as_its_sha256() -> None:
    auth = AuthSettings(keys=[key_entry("team-a", "sk-one")])
    assert auth.keys[0].digest == hashlib.sha256(b"sk-one").digest()
    upper = AuthSettings(keys=[{"name": "b", "sha256": sha256_hex("sk-two").upper()}])
    assert upper.keys[0].digest == hashlib.sha256(b"sk-two").digest()
    assert "sha256" not in repr(auth.keys[0])  # the hash stays out of reprs and logs


def test_a_key_or_its_hash_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_KEY", "sk-from-env\n")
    monkeypatch.setenv("TEAM_HASH", sha256_hex("sk-hashed"))
    auth = AuthSettings(
        keys=[
            {"name": "plain", "key": "os.environ/TEAM_KEY"},
            {"name": "hashed", "sha256": "os.environ/TEAM_HASH"},
        ]
    )
    assert auth.keys[0].digest == hashlib.sha256(b"sk-from-env").digest()
    assert auth.keys[1].digest == hashlib.sha256(b"sk-hashed").digest()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "a", "key": "sk-plain-in-the-file"}, "environment reference"),
        ({"name": "a", "key": "os.environ/NOT_SET_ANYWHERE"}, "is not set"),
        ({"name": "a", "sha256": "abc"}, "64 hex digits"),
        ({"name": "a"}, "exactly one of sha256"),
        ({"name": "a", "sha256": sha256_hex("x"), "key": "os.environ/X"}, "exactly one"),
        ({"name": "has space", "sha256": sha256_hex("x")}, "pattern"),
        ({"name": "a", "sha256": sha256_hex("x"), "limits": {"rpm": 0}}, "greater than"),
    ],
)
def test_bad_keys_are_refused_naming_the_problem(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AuthSettings(keys=[entry])


def test_names_and_keys_are_distinct_across_user_and_admin_keys() -> None:
    with pytest.raises(ValueError, match="already used"):
        AuthSettings(keys=[key_entry("a", "k1")], admin_keys=[key_entry("a", "k2")])
    with pytest.raises(ValueError, match="configured twice"):
        AuthSettings(keys=[key_entry("a", "k1")], admin_keys=[key_entry("b", "k1")])


def test_routes_and_models_must_exist() -> None:
    ok = settings(auth={"keys": [key_entry("a", "k", routes=["auto"], models=["good"])]})
    assert ok.auth.keys[0].routes == ["auto"]
    with pytest.raises(ValueError, match=r"auth\.keys\.0\.routes: unknown route 'nope'"):
        settings(auth={"keys": [key_entry("a", "k", routes=["nope"])]})
    with pytest.raises(ValueError, match=r"auth\.admin_keys\.0\.models: unknown model 'auto'"):
        settings(auth={"admin_keys": [key_entry("a", "k", models=["auto"])]})


@pytest.mark.parametrize("field", ["api_keys", "admin_api_keys"])
def test_the_old_server_key_lists_fail_with_a_pointer(field: str) -> None:
    with pytest.raises(ValueError, match=r"was replaced by auth\.(admin_)?keys.*docs/security"):
        settings(server={field: ["sk-old"]})


def test_the_old_fields_fail_at_load_with_the_field_path(tmp_path: Any) -> None:
    from sdm_router.config import load_settings

    config = tmp_path / "old.yaml"
    config.write_text(
        "backends: {good: {type: openai, base_url: 'http://x/v1', model: m}}\n"
        "verifier: {artifact: /a, encoder_model: /b}\n"
        "routes: {auto: {tiers: [{backend: good}]}}\n"
        "server: {api_keys: [sk-old]}\n"
    )
    with pytest.raises(ConfigurationError, match=r"server: .*auth\.keys"):
        load_settings(config)


def test_the_ring_finds_the_key_and_nothing_else() -> None:
    ring = KeyRing(
        AuthSettings(
            keys=[key_entry("a", "sk-a", routes=["auto"], limits={"rpm": 5})],
            admin_keys=[key_entry("ops", "sk-ops")],
        )
    )
    found = ring.find(b"sk-a")
    assert found is not None and (found.name, found.admin, found.rpm) == ("a", False, 5)
    admin = ring.find(b"sk-ops")
    assert admin is not None and admin.admin
    assert ring.find(b"sk-") is None and ring.find(b"") is None
    assert ring.enabled and ring.user_keys and ring.admin_keys
    assert not KeyRing(AuthSettings()).enabled


def _plan(name: str, direct: bool) -> RoutePlan:
    return route_plan(name, direct=direct, stream_mode=StreamMode.PASSTHROUGH)


def test_a_key_may_use_only_its_routes_and_models() -> None:
    ring = KeyRing(AuthSettings(keys=[key_entry("a", "k", routes=["auto"], models=[])]))
    principal = ring.find(b"k")
    assert principal is not None
    assert principal.may_use(_plan("auto", direct=False))
    assert not principal.may_use(_plan("other", direct=False))
    assert not principal.may_use(_plan("good", direct=True))  # models: [] allows none
    everything = KeyRing(AuthSettings(keys=[key_entry("b", "k")])).find(b"k")
    assert everything is not None and everything.may_use(_plan("good", direct=True))


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer sk-1", b"sk-1"),
        (b"bearer   sk-1 ", b"sk-1"),
        (b"Basic sk-1", None),
        (b"Bearer ", None),
        (b"sk-1", None),
    ],
)
def test_bearer_token(header: bytes, token: bytes | None) -> None:
    assert bearer_token({"headers": [(b"authorization", header)]}) == token
    assert bearer_token({"headers": []}) is None


async def _unused_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("kind() does not call the app")


def test_paths_are_public_only_exactly_and_admin_in_any_spelling() -> None:
    middleware = AuthMiddleware(
        app=_unused_app,
        ring=KeyRing(AuthSettings()),
        public_paths=frozenset({"/healthz", "/readyz"}),
    )
    assert middleware.kind("/healthz") == "public"
    for path in ("/healthz/", "/HEALTHZ", "//healthz", "/v1/models", "/nothing"):
        assert middleware.kind(path) == "user", path
    for path in (
        "/admin/verifier/reload",
        "//admin/verifier/reload",
        "/ADMIN/verifier/reload/",
        "/admin",
        "/metrics",
        "/Metrics/",
        "/docs",
        "/openapi.json",
        "/redoc",
        "/docs/oauth2-redirect",
    ):
        assert middleware.kind(path) == "admin", path
    docs_public = AuthMiddleware(
        app=_unused_app,
        ring=KeyRing(AuthSettings()),
        public_paths=frozenset({"/docs", "/metrics"}),
    )
    assert docs_public.kind("/docs/oauth2-redirect") == "public"
    assert docs_public.kind("/metrics") == "public"
    assert docs_public.kind("/metrics/") == "admin"


def test_route_path_strips_the_root_path_as_starlette_does() -> None:
    assert route_path({"path": "/api/admin/x", "root_path": "/api"}) == "/admin/x"
    assert route_path({"path": "/apix/admin", "root_path": "/api"}) == "/apix/admin"
    assert route_path({"path": "/admin/x"}) == "/admin/x"


def test_reset_durations_read_like_openai() -> None:
    assert [reset_text(s) for s in (0.25, 0.0001, 1.0, 16.2, 60.0, 65.0)] == [
        "250ms",
        "1ms",
        "1s",
        "17s",
        "1m0s",
        "1m5s",
    ]
