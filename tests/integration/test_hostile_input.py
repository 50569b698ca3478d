"""Hostile bodies against every endpoint of the gateway, keys on: no input may cause a 5xx,
every string that reaches a backend is valid Unicode, every error is the OpenAI envelope with a
string ``code``, and the gateway serves normally afterwards.

The endpoints come from the app's own OpenAPI document, so an endpoint added later is probed
too: a POST body starts from a valid seed (written here for the known endpoints, built from
the schema's required fields for any other) and has one string replaced, or one key added,
with text of any code points, lone surrogates included, sent as JSON escapes or as the raw
(CESU) UTF-8 bytes Python's parser also accepts.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdm_router.api.edge.text import invalid_text_field
from sdm_router.config import ServerSettings
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.keys import bearer, key_entry
from tests.support.servers import serve_gateway_in_thread

pytestmark = pytest.mark.integration

ADMIN, USER, ROUTE_ONLY = "sk-hostile-admin", "sk-hostile-user", "sk-hostile-route"
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is six times seven?"}]}
SEEDS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {**CHAT, "max_tokens": 8, "stop": ["x"], "user": "u",
                             "tools": [{"type": "function", "function": {
                                 "name": "f", "description": "d", "parameters": {
                                     "type": "object", "properties": {"a": {"type": "string"}}}}}]},
    "/v1/completions": {"model": "auto", "prompt": "What is six times seven?", "max_tokens": 8},
    "/v1/verify": {"model": "auto", "prompt": "What is 6 x 7?", "response": "42"},
    "/v1/embeddings": {"model": "embed", "input": ["one", "two"]},
    "/v1/feedback": {"request_id": "req-none", "label": "correct", "note": "n"},
    "/admin/verifier/reload": {"artifact": "/models/v2.sdmkitmodel"},
}  # fmt: skip
SURROGATES = st.characters(categories=["Cs"])  # U+D800..U+DFFF, alone
ANY_CHARACTER = st.one_of(SURROGATES, st.characters(exclude_categories=()))
# (st.text drops surrogates whatever its alphabet: joined characters keep them)
TEXT = st.lists(ANY_CHARACTER, max_size=24).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def gateway(upstream: tuple[str, FakeUpstream]) -> Iterator[tuple[str, FakeUpstream]]:
    """The gateway with keys and an embedding model, served as ``sdm-router serve`` does."""
    url, fake = upstream
    auth = {
        "keys": [
            key_entry("user", USER, limits={"rpm": 100_000}),
            key_entry("route-only", ROUTE_ONLY, routes=["auto"], models=["embed"]),
        ],
        "admin_keys": [key_entry("ops", ADMIN)],
    }
    app = fake_app(url, auth=auth, embeddings={"embed": {"backend": "good"}})
    with serve_gateway_in_thread(app, ServerSettings()) as served:
        yield served, fake


def encoded(body: Any, raw: bool) -> bytes:
    """``body`` as JSON: lone surrogates as ``\\udXXX`` escapes, or (``raw``) as the UTF-8
    bytes of a surrogate, which Python's parser decodes too."""
    if raw:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(body).encode()


def check(reply: httpx.Response) -> None:
    """No 5xx; an error is the envelope with a string code."""
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400 and reply.headers.get("content-type", "").startswith(
        "application/json"
    ):
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["code"], str), error


def schema_seed(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A minimal value of ``schema``: its required properties, each the simplest of its type."""
    if "$ref" in schema:
        return schema_seed(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return schema_seed(schema[key][0], components)
    simple = {"string": "x", "integer": 1, "number": 1.0, "boolean": True, "array": []}
    if schema.get("type") in simple:
        return schema.get("enum", [simple[schema["type"]]])[0]
    properties = schema.get("properties", {})
    return {name: schema_seed(properties[name], components) for name in schema.get("required", ())}


def operations(url: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """The POST paths with their seed bodies and the GET paths, from the OpenAPI document."""
    document = httpx.get(f"{url}/openapi.json", headers=bearer(ADMIN), timeout=10).json()
    components = document.get("components", {}).get("schemas", {})
    posts, gets = [], []
    for path, methods in document["paths"].items():
        if "post" in methods:
            content = methods["post"].get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            posts.append((path, SEEDS.get(path) or schema_seed(schema, components)))
        if "get" in methods:
            gets.append(path)
    return posts, gets


def string_places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where ``value`` holds a string or an object (a key can be added there)."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [path] + [p for k, v in value.items() for p in string_places(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in string_places(v, (*path, i))]
    return []


def mutated(seed: Any, place: tuple[Any, ...], text: str, extra: Any) -> Any:
    """``seed`` with the string at ``place`` replaced by ``text`` (or, an object there,
    ``text`` added as a key holding ``extra``)."""
    body = copy.deepcopy(seed)
    if not place:
        return {**body, text: extra} if isinstance(body, dict) else text
    parent = body
    for step in place[:-1]:
        parent = parent[step]
    target = parent[place[-1]]
    parent[place[-1]] = {**target, text: extra} if isinstance(target, dict) else text
    return body


def test_no_body_on_any_endpoint_causes_a_server_error(
    gateway: tuple[str, FakeUpstream],
) -> None:
    url, fake = gateway
    posts, gets = operations(url)
    assert {"/v1/chat/completions", "/v1/verify", "/admin/verifier/reload"} <= {p for p, _ in posts}
    with httpx.Client(base_url=url, headers=bearer(ADMIN), timeout=30) as client:

        @given(data=st.data())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        def mutate_seeds(data: st.DataObject) -> None:
            path, seed = data.draw(st.sampled_from(posts))
            place = data.draw(st.sampled_from(string_places(seed) or [()]))
            body = mutated(seed, place, data.draw(TEXT), data.draw(JSON))
            content = encoded(body, raw=data.draw(st.booleans()))
            check(client.post(path, content=content, headers={"content-type": "application/json"}))

        @given(data=st.data())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def arbitrary_documents(data: st.DataObject) -> None:
            path, _ = data.draw(st.sampled_from(posts))
            content = encoded(data.draw(JSON), raw=data.draw(st.booleans()))
            check(client.post(path, content=content, headers={"content-type": "application/json"}))
            get = data.draw(st.sampled_from(gets))
            segment, query = (quote(t.encode("utf-8", "surrogatepass"), safe="") for t in
                              (data.draw(TEXT), data.draw(TEXT)))  # fmt: skip
            path = re.sub(r"\{[^}]*\}", segment or "x", get)  # every path parameter
            check(client.get(f"{path}?route={query}"))

        mutate_seeds()
        arbitrary_documents()
    assert all(invalid_text_field(request) is None for request in fake.log.requests)
    served = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=bearer(USER), timeout=10)
    assert served.status_code == 200, served.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "hi \ud800"}]},
         "messages[0].content"),
        ("/v1/chat/completions", {**CHAT, "stream": True, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
         "messages[0].content[0].text"),
        ("/v1/completions", {"model": "auto", "prompt": ["a\udc80"]}, "prompt[0]"),
        ("/v1/verify", {"model": "auto", "prompt": "q", "response": "\ud800"}, "response"),
        ("/v1/embeddings", {"model": "embed", "input": "\ud800"}, "input"),
        ("/v1/feedback", {"request_id": "r", "label": "correct", "\ud800": 1}, "\\ud800"),
        ("/admin/verifier/reload", {"artifact": "/models/\ud800"}, "artifact"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("raw", [False, True], ids=["escape", "utf8-bytes"])
def test_a_lone_surrogate_is_a_400_naming_its_field(
    gateway: tuple[str, FakeUpstream], path: str, body: dict[str, Any], field: str, raw: bool
) -> None:
    url, _ = gateway
    reply = httpx.post(
        f"{url}{path}",
        content=encoded(body, raw),
        headers={"content-type": "application/json", **bearer(ADMIN)},
        timeout=10,
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_value" and f"'{field}'" in error["message"]
    assert "surrogate" in error["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=utf-16"])
def test_other_spellings_of_a_surrogate_body_are_refused_too(
    gateway: tuple[str, FakeUpstream], content_type: str | None
) -> None:
    url, _ = gateway
    body = {**CHAT, "messages": [{"role": "user", "content": "\ud800"}]}
    for data in (json.dumps(body).encode(), json.dumps(body).encode("utf-16")):
        headers = {**bearer(ADMIN), **({"content-type": content_type} if content_type else {})}
        reply = httpx.post(f"{url}/v1/chat/completions", content=data, headers=headers, timeout=10)
        assert reply.status_code == 400, reply.text
        check(reply)


def test_valid_unicode_of_every_plane_is_served(gateway: tuple[str, FakeUpstream]) -> None:
    url, fake = gateway
    text = "nul \x00, noncharacter \uffff, last \U0010ffff, emoji \U0001f600, pair \ud83d\ude00"
    text = text.encode("utf-16", "surrogatepass").decode("utf-16")  # the pair, as one character
    body = {**CHAT, "messages": [{"role": "user", "content": text}]}
    for raw in (False, True):
        reply = httpx.post(
            f"{url}/v1/chat/completions", content=encoded(body, raw),
            headers={"content-type": "application/json", **bearer(USER)}, timeout=10,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
    assert fake.log.requests[-1]["messages"][-1]["content"] == text


def test_unreadable_bodies_get_string_codes(gateway: tuple[str, FakeUpstream]) -> None:
    url, _ = gateway
    headers = {"content-type": "application/json", **bearer(USER)}
    for path in ("/v1/chat/completions", "/v1/verify"):
        for body in (b'{"model": "auto", "messages": [', b"[" * 100_000 + b"]" * 100_000, b"\xff"):
            reply = httpx.post(f"{url}{path}", content=body, headers=headers, timeout=10)
            assert reply.status_code == 400, reply.text
            check(reply)


def test_a_route_only_key_is_told_only_its_own_models(gateway: tuple[str, FakeUpstream]) -> None:
    url, _ = gateway
    reply = httpx.post(
        f"{url}/v1/chat/completions",
        json={**CHAT, "model": "no-such-model"},
        headers=bearer(ROUTE_ONLY),
        timeout=10,
    )
    assert reply.status_code == 404
    assert (
        reply.json()["error"]["message"]
        == "The model 'no-such-model' does not exist. Available: auto"
    )
    everything = httpx.post(
        f"{url}/v1/chat/completions",
        json={**CHAT, "model": "nope"},
        headers=bearer(USER),
        timeout=10,
    )
    assert "failover" in everything.json()["error"]["message"]  # a key with every route


def test_readiness_states_only_unless_an_admin_key_asks(gateway: tuple[str, FakeUpstream]) -> None:
    url, _ = gateway
    for headers in ({}, bearer(USER), bearer("sk-wrong")):
        reply = httpx.get(f"{url}/readyz", headers=headers, timeout=10)
        assert reply.status_code == 200 and reply.json() == {"status": "ready"}
    detailed = httpx.get(f"{url}/readyz", headers=bearer(ADMIN), timeout=10).json()
    assert detailed["status"] == "ready" and "verifier" in detailed["components"]


def test_an_unexpected_error_is_one_500_logged_once_with_its_request_id(
    upstream: tuple[str, FakeUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    app = fake_app(upstream[0])

    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/boom", boom)
    with serve_gateway_in_thread(app, ServerSettings()) as url, caplog.at_level(logging.INFO):
        reply = httpx.get(f"{url}/boom", timeout=10)
    assert reply.status_code == 500
    request_id = reply.headers["x-request-id"]
    assert reply.json()["error"]["code"] == "internal_error" and request_id in reply.text
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1, [record.getMessage() for record in tracebacks]
    assert getattr(tracebacks[0], "request_id", None) == request_id
