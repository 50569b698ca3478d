"""API keys and per-key limits over real HTTP: no route without a key, 403 outside a key's
routes and models, requests / tokens per minute and requests in flight (429 with the
``x-ratelimit-*`` headers OpenAI clients read), counted in process or in one shared Redis."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import openai
import pytest
from fastapi.routing import APIRoute
from openai.types.chat import ChatCompletionMessageParam
from starlette.routing import Mount, Route

from sdm_router.api.openai.fast_route import JSONBodyRoute
from tests.support.fake_upstream import FakeUpstream, completion_body
from tests.support.gateway import fake_app
from tests.support.keys import bearer, key_entry
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is six times seven?"}
]
USER, ADMIN = "sk-user-0123456789", "sk-admin-0123456789"
REDIS_URL = os.environ.get("SDM_ROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def fresh_minute(needed: float = 8.0) -> None:
    """Limits count in clock-aligned minutes: start a sequence with ``needed`` s left in one."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.05)


def rate_limited(gateway: str, reason: str) -> float:
    """``sdm_router_rate_limited_total{reason}`` read from ``/metrics`` with the admin key."""
    text = httpx.get(f"{gateway}/metrics", headers=bearer(ADMIN), timeout=10).text
    prefix = f'sdm_router_rate_limited_total{{reason="{reason}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"no {prefix.strip()} in /metrics")


def sdk(gateway: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20)


def chat(gateway: str, key: str, model: str = "good", **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"model": model, "messages": QUESTION, **extra},
        headers=bearer(key),
        timeout=20,
    )


KEYS = [
    key_entry("user", USER),
    key_entry("auto-only", "sk-auto-only", routes=["auto"], models=[]),
    key_entry("rpm", "sk-rpm", limits={"rpm": 3}),
    key_entry("tpm", "sk-tpm", limits={"tpm": 1}),
    key_entry("tpm-live", "sk-tpm-live", limits={"tpm": 1}),
    key_entry("tpm-replay", "sk-tpm-replay", limits={"tpm": 1}),
    key_entry("flight", "sk-flight", limits={"in_flight": 1}),
    key_entry("verify-rpm", "sk-verify-rpm", limits={"rpm": 1}),
]


@pytest.fixture(scope="module")
def keyed(upstream: tuple[str, FakeUpstream]) -> Iterator[tuple[str, Any]]:
    """A gateway with user keys (some limited) and an admin key; the app for its routes."""
    app = fake_app(
        upstream[0],
        auth={"keys": KEYS, "admin_keys": [key_entry("ops", ADMIN)]},
        server={"max_concurrency": 3},
    )
    with serve_in_thread(app) as url:
        yield url, app


# ------------------------------------------------------------------ keys


def _spellings(path: str) -> list[str]:
    """``path`` and spellings a router or proxy might fold onto it."""
    inner = path[1:]
    last = path.rfind("/")
    spellings = [
        path,
        path + "/",
        "/" + path,
        "//" + inner,
        path.upper(),
        path.swapcase(),
        path.replace("/", "//"),
        path + "?x=1",
        path + "%20",
        path + ";x",
        f"/{inner.replace('/', '/./', 1)}" if "/" in inner else path + "/.",
        path[:1] + "%" + format(ord(path[1]), "02X") + path[2:],  # /%76... ("v" encoded)
        "".join("%" + format(ord(c), "02x") if c.isalnum() else c for c in path),
    ]
    if last > 0:
        spellings.append(path[:last] + "%2F" + path[last + 1 :])  # /v1/chat%2Fcompletions
        spellings.append(path[:last] + "%2f" + path[last + 1 :])
    return spellings


def _raw(url: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send ``path`` exactly as written (no client normalization)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    try:
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        connection.request(method, path, body=body, headers={**headers, "connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _routes(app: Any) -> list[tuple[str, set[str]]]:
    """Every (path, methods) of the app, included routers and mounts flattened."""
    walked: list[tuple[str, set[str]]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, APIRoute | Route | JSONBodyRoute):  # the last: the fast path
                path = re.sub(r"\{[^}]+\}", "x", prefix + route.path)
                walked.append((path, set(route.methods or ())))
            elif hasattr(route, "original_router"):  # FastAPI's included router
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            else:
                raise AssertionError(f"a route the walk does not know: {route!r}")

    walk(app.routes, "")
    assert walked
    return walked


PUBLIC = {"/healthz", "/readyz"}


def test_no_route_is_reachable_without_a_key(keyed: tuple[str, Any]) -> None:
    url, app = keyed
    routes = _routes(app)
    paths = {path for path, _ in routes}
    for expected in ("/v1/chat/completions", "/admin/verifier/reload", "/metrics", "/docs"):
        assert expected in paths
    tried = 0
    for path, methods in routes:
        for method in sorted(methods | {"GET", "HEAD", "POST", "OPTIONS", "DELETE"}):
            for spelling in _spellings(path):
                if unquote(spelling.split("?")[0]) in PUBLIC:
                    continue  # the probes are public on purpose (the server decodes %68)
                if path.startswith("/console"):
                    continue  # its own sign-in (test_console.py walks its routes likewise)
                wrong = (bearer("sk-wrong"), {"authorization": USER}, {"x-api-key": USER})
                for headers in ({}, *(wrong if spelling == path else ())):
                    status, body = _raw(url, method, spelling, headers)
                    tried += 1
                    assert status == 401 or (status == 400 and b"Invalid HTTP" in body), (
                        f"{method} {spelling} {headers}: {status} {body[:200]!r}"
                    )
                    if status == 401 and method != "HEAD":
                        assert b'"authentication_error"' in body
    assert tried > 500


def test_the_probes_are_public_and_nothing_else(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    assert _raw(url, "GET", "/healthz", {})[0] == 200
    assert _raw(url, "GET", "/readyz", {})[0] == 200
    assert _raw(url, "GET", "/healthz/", {})[0] == 401


def test_a_user_key_opens_v1_but_not_the_operator_endpoints(keyed: tuple[str, Any]) -> None:
    url, app = keyed
    for path, methods in _routes(app):
        if path.startswith("/console"):
            continue  # a session, not a bearer key (test_console.py)
        method = "GET" if "GET" in methods else sorted(methods)[0]
        user, _ = _raw(url, method, path, bearer(USER))
        admin, _ = _raw(url, method, path, bearer(ADMIN))
        operator = path.startswith("/admin") or path in {
            "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
        }  # fmt: skip
        if operator:
            assert user == 403, f"{method} {path}: a user key got {user}"
        else:
            assert user not in (401, 403), f"{method} {path}: {user}"
        assert admin not in (401, 403), f"{method} {path}: the admin key got {admin}"


def test_a_route_or_model_outside_the_key_is_403(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    with sdk(url, "sk-auto-only") as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="good", messages=QUESTION)
        assert caught.value.status_code == 403
        assert caught.value.code == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="failover", messages=QUESTION)
        answer = client.chat.completions.create(model="auto", messages=QUESTION)
        assert answer.choices[0].message.content
        assert [model.id for model in client.models.list()] == ["auto"]
        assert client.models.retrieve("auto").id == "auto"
        with pytest.raises(openai.NotFoundError):  # a hidden model is not revealed, not a 403
            client.models.retrieve("good")
    verify = httpx.post(
        f"{url}/v1/verify",
        json={"model": "good", "messages": QUESTION, "response": "42"},
        headers=bearer("sk-auto-only"),
    )
    assert verify.status_code == 403
    assert verify.json()["error"]["type"] == "permission_error"


def test_the_key_name_is_recorded_never_the_key(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    response = chat(url, USER)
    assert response.status_code == 200
    record = httpx.get(
        f"{url}/v1/decisions/{response.headers['x-request-id']}", headers=bearer(USER), timeout=10
    ).json()
    assert record["key_name"] == "user"
    assert USER not in str(record)


def test_a_user_key_sees_and_labels_only_its_own_decisions(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    mine = chat(url, USER).headers["x-request-id"]
    theirs = chat(url, "sk-auto-only", model="auto").headers["x-request-id"]
    own = httpx.get(f"{url}/v1/decisions/{mine}", headers=bearer(USER), timeout=10)
    assert own.status_code == 200
    other = httpx.get(f"{url}/v1/decisions/{theirs}", headers=bearer(USER), timeout=10)
    assert other.status_code == 404  # alike an unknown id: nothing leaks
    assert other.json()["error"]["code"] == own_404_code(url)
    listed = httpx.get(f"{url}/v1/decisions", params={"limit": 200}, headers=bearer(USER))
    assert {record["key_name"] for record in listed.json()["data"]} == {"user"}
    label = {"request_id": theirs, "label": "incorrect"}
    refused = httpx.post(f"{url}/v1/feedback", json=label, headers=bearer(USER), timeout=10)
    assert refused.status_code == 404
    # an admin key sees and labels everything
    admin = httpx.get(f"{url}/v1/decisions/{theirs}", headers=bearer(ADMIN), timeout=10)
    assert admin.status_code == 200 and admin.json()["key_name"] == "auto-only"
    labelled = httpx.post(f"{url}/v1/feedback", json=label, headers=bearer(ADMIN), timeout=10)
    assert labelled.status_code == 200
    everyone = httpx.get(f"{url}/v1/decisions", params={"limit": 200}, headers=bearer(ADMIN))
    assert {"user", "auto-only"} <= {record["key_name"] for record in everyone.json()["data"]}


def own_404_code(url: str) -> str:
    unknown = httpx.get(f"{url}/v1/decisions/no-such-request", headers=bearer(USER), timeout=10)
    assert unknown.status_code == 404
    return str(unknown.json()["error"]["code"])


def test_keys_are_never_logged_names_are(
    keyed: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = keyed
    with caplog.at_level(logging.DEBUG):
        assert chat(url, USER).status_code == 200
        assert chat(url, "sk-wrong-key-abc").status_code == 401
        assert chat(url, "sk-auto-only").status_code == 403
        # the log line is written when the response has ended: wait for the three lines
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_key_names(caplog)) < 2:
            time.sleep(0.02)
    dumped = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    for secret in (USER, "sk-wrong-key-abc", "sk-auto-only"):
        assert secret not in dumped
    assert {"user", "auto-only"} <= _key_names(caplog)


def _key_names(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {name for r in caplog.records if (name := getattr(r, "key_name", None)) is not None}


def test_with_only_admin_keys_v1_stays_open(upstream: tuple[str, FakeUpstream]) -> None:
    app = fake_app(upstream[0], auth={"admin_keys": [key_entry("ops", ADMIN)]})
    with serve_in_thread(app) as url:
        assert chat(url, "unused").status_code == 200  # as without keys: /v1 is open
        assert httpx.get(f"{url}/v1/models").status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metrics", headers=bearer(ADMIN)).status_code == 200
        assert httpx.post(f"{url}/admin/verifier/reload").status_code == 401
    public = fake_app(
        upstream[0],
        auth={
            "admin_keys": [key_entry("ops", ADMIN)],
            "public_paths": ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"],
        },
    )
    with serve_in_thread(public) as url:
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert httpx.get(f"{url}{path}").status_code == 200, path
        assert httpx.get(f"{url}/redoc").status_code == 401


# ------------------------------------------------------------------ limits in process


def test_requests_per_minute(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    before = rate_limited(url, "rpm")
    fresh_minute()
    with sdk(url, "sk-rpm") as client:
        remaining = []
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model="good",
                messages=QUESTION,
            )
            assert raw.http_response.headers["x-ratelimit-limit-requests"] == "3"
            assert raw.http_response.headers["x-ratelimit-reset-requests"].endswith("s")
            remaining.append(raw.http_response.headers["x-ratelimit-remaining-requests"])
        assert remaining == ["2", "1", "0"]
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="good", messages=QUESTION)
    error = caught.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    headers = error.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert int(headers["retry-after-ms"]) <= 60_000
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in headers  # this key has no token limit
    assert rate_limited(url, "rpm") == before + 1
    assert chat(url, USER).status_code == 200  # other keys are not affected


def test_tokens_per_minute_are_counted_after_the_response(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    before = rate_limited(url, "tpm")
    fresh_minute()
    first = chat(url, "sk-tpm")
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "1"
    assert first.headers["x-ratelimit-remaining-tokens"] == "1"  # nothing spent before it
    used = first.json()["usage"]["total_tokens"]
    assert used > 1  # one answer may overdraw the minute...
    second = chat(url, "sk-tpm")  # ...and the next request is refused
    assert second.status_code == 429
    error = second.json()["error"]
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert f"used {used}" in error["message"]
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"
    assert rate_limited(url, "tpm") == before + 1


@pytest.mark.parametrize(
    ("key", "model"), [("sk-tpm-live", "passthrough"), ("sk-tpm-replay", "auto")]
)
def test_streamed_tokens_count_too(keyed: tuple[str, Any], key: str, model: str) -> None:
    url, _ = keyed
    fresh_minute()
    with sdk(url, key) as client:
        stream = client.chat.completions.create(
            model=model,
            messages=QUESTION,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 1
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=model, messages=QUESTION)
    assert caught.value.type == "tokens"


LEFT_TPM = 1000
LEFT_ROUTES = {
    "auto": {"tiers": [{"backend": "good"}]},
    "unsure-error": {"tiers": [{"backend": "unsure"}], "on_abstain": "error"},
    # the fake upstream's "hang" streams one token, then stalls; "stream-error" fails after two
    "live-hang": {"tiers": [{"backend": "hang"}], "stream_mode": "passthrough"},
    "live-error": {"tiers": [{"backend": "stream-error"}], "stream_mode": "passthrough"},
}


@pytest.fixture(scope="module")
def counted(upstream: tuple[str, FakeUpstream]) -> Iterator[str]:
    """A gateway whose routes fail after their backend calls, with one tpm key per test."""
    keys = [
        key_entry(name, f"sk-{name}", limits={"tpm": LEFT_TPM})
        for name in ("failed", "left", "broken")
    ]
    app = fake_app(upstream[0], auth={"keys": keys}, routes=LEFT_ROUTES)
    with serve_in_thread(app) as url:
        yield url


def _tokens_left(url: str, key: str, expected: int) -> int:
    """The key's tokens left before its requests here, as ``x-ratelimit-remaining-tokens``
    of requests to ``auto`` tells, waiting (a stream's tokens are counted once the gateway has
    seen it close) until it is ``expected``; each of these requests spends its own tokens."""
    deadline, spent = time.monotonic() + 5, 0
    while True:
        response = chat(url, key, model="auto")
        left = int(response.headers["x-ratelimit-remaining-tokens"]) + spent
        if left <= expected or time.monotonic() > deadline:
            return left
        spent += response.json()["usage"]["total_tokens"]
        time.sleep(0.05)


def test_tokens_of_a_request_that_failed_after_its_backend_call_count(counted: str) -> None:
    fresh_minute()
    failed = chat(counted, "sk-failed", model="unsure-error")
    assert failed.status_code == 422 and failed.json()["error"]["type"] == "abstained"
    used = completion_body("unsure", {"messages": QUESTION})["usage"]["total_tokens"]
    assert _tokens_left(counted, "sk-failed", LEFT_TPM - used) == LEFT_TPM - used


def test_tokens_of_a_stream_the_client_left_midway_count(counted: str) -> None:
    fresh_minute()
    body = {"model": "live-hang", "messages": QUESTION, "stream": True}
    with httpx.stream(
        "POST", f"{counted}/v1/chat/completions", json=body, headers=bearer("sk-left"), timeout=20
    ) as stream:
        for line in stream.iter_lines():
            chunk = json.loads(line.removeprefix("data: ")) if line.startswith("data: {") else {}
            if any(choice["delta"].get("content") for choice in chunk.get("choices", [])):
                break  # one token came: leave (the backend never reported its usage)
    assert _tokens_left(counted, "sk-left", LEFT_TPM - 1) == LEFT_TPM - 1


def test_tokens_of_a_stream_that_failed_midway_count(counted: str) -> None:
    fresh_minute()
    body = {"model": "live-error", "messages": QUESTION, "stream": True}
    response = httpx.post(
        f"{counted}/v1/chat/completions", json=body, headers=bearer("sk-broken"), timeout=20
    )
    assert response.status_code == 200 and b"scripted mid-stream failure" in response.content
    assert _tokens_left(counted, "sk-broken", LEFT_TPM - 2) == LEFT_TPM - 2  # two streamed


def _hold(url: str, key: str, model: str = "hang") -> threading.Thread:
    """A request that occupies its slots until the hanging backend times out (about 2 s)."""

    def run() -> None:
        with contextlib.suppress(httpx.HTTPError):
            chat(url, key, model=model)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=bearer(ADMIN), timeout=10).text
    for line in text.splitlines():
        if line.startswith("sdm_router_inflight_requests "):
            return float(line.split()[1])
    return 0.0


def _wait_for(predicate: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_requests_in_flight_per_key_and_for_the_gateway(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    key_before = rate_limited(url, "in_flight_key")
    global_before = rate_limited(url, "in_flight_global")
    first = _hold(url, "sk-flight")
    _wait_for(lambda: _in_flight(url) >= 1)
    with sdk(url, "sk-flight") as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="good", messages=QUESTION)
    assert caught.value.code == "too_many_requests_in_flight"
    assert caught.value.response.headers["retry-after"] == "1"
    assert rate_limited(url, "in_flight_key") == key_before + 1
    # the gateway admits 3 at once: two more hanging requests fill it, the next is refused
    others = [_hold(url, USER), _hold(url, USER)]
    _wait_for(lambda: _in_flight(url) >= 3)
    refused = chat(url, USER)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "overloaded"
    assert rate_limited(url, "in_flight_global") == global_before + 1
    for thread in (first, *others):
        thread.join()
    assert chat(url, "sk-flight").status_code == 200  # the slot came back


def test_verify_counts_requests_too(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    fresh_minute()

    def verify() -> httpx.Response:
        return httpx.post(
            f"{url}/v1/verify",
            json={"messages": QUESTION, "response": "It is 42."},
            headers=bearer("sk-verify-rpm"),
            timeout=10,
        )

    ok = verify()
    assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining-requests"] == "0"
    assert verify().status_code == 429


def test_no_limit_headers_for_unlimited_keys(keyed: tuple[str, Any]) -> None:
    response = chat(keyed[0], USER)
    assert response.status_code == 200
    assert not any(name in response.headers for name in LIMIT_HEADERS)


# ------------------------------------------------------------------ limits in Redis


def _redis_up() -> bool:
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 6379), timeout=1):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(
    not _redis_up(), reason=f"no Redis at {REDIS_URL} (set SDM_ROUTER_TEST_REDIS_URL)"
)


@contextlib.contextmanager
def replicas(
    upstream: str, count: int, limits: dict[str, Any], keys: list[dict[str, Any]]
) -> Iterator[list[str]]:
    """``count`` gateways (separate apps, loops and limit stores) with the same config."""
    with contextlib.ExitStack() as stack:
        urls = []
        for _ in range(count):
            app = fake_app(
                upstream,
                auth={"keys": keys, "admin_keys": [key_entry("ops", ADMIN)]},
                limits=limits,
            )
            urls.append(stack.enter_context(serve_in_thread(app)))
        yield urls


@needs_redis
def test_two_replicas_share_their_limits_in_redis(upstream: tuple[str, FakeUpstream]) -> None:
    limits = {"redis_url": REDIS_URL, "key_prefix": f"test-{uuid.uuid4().hex[:12]}"}
    keys = [key_entry("shared", "sk-shared", limits={"rpm": 4, "tpm": 1})]
    with replicas(upstream[0], 2, limits, keys) as (a, b):
        fresh_minute()
        first = chat(a, "sk-shared")
        assert first.status_code == 200
        assert first.headers["x-ratelimit-remaining-requests"] == "3"
        # replica b sees a's request and a's tokens: the minute's tokens are spent
        second = chat(b, "sk-shared")
        assert second.status_code == 429
        assert second.json()["error"]["type"] == "tokens"
        assert second.headers["x-ratelimit-remaining-requests"] == "2"
        statuses = [chat(url, "sk-shared").status_code for url in (a, b)]
        assert statuses == [429, 429]
        refused = chat(a, "sk-shared")
        assert refused.json()["error"]["type"] == "requests"  # 5 > 4 requests in this minute
        assert rate_limited(a, "rpm") + rate_limited(b, "rpm") == 1
        assert rate_limited(a, "tpm") + rate_limited(b, "tpm") == 3


@needs_redis
def test_rpm_alone_is_shared_across_replicas(upstream: tuple[str, FakeUpstream]) -> None:
    limits = {"redis_url": REDIS_URL, "key_prefix": f"test-{uuid.uuid4().hex[:12]}"}
    keys = [key_entry("shared", "sk-shared", limits={"rpm": 3})]
    with replicas(upstream[0], 2, limits, keys) as (a, b):
        fresh_minute()
        statuses = [chat(url, "sk-shared").status_code for url in (a, b, a, b)]
        assert statuses == [200, 200, 200, 429]


def test_redis_down_fails_open_to_counting_in_process(upstream: tuple[str, FakeUpstream]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket closes
    limits = {"redis_url": f"redis://127.0.0.1:{port}/0", "redis_timeout_seconds": 0.2}
    keys = [key_entry("k", "sk-k", limits={"rpm": 2})]
    with replicas(upstream[0], 1, limits, keys) as (url,):
        fresh_minute()
        statuses = [chat(url, "sk-k").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # counted in process while Redis is down
        text = httpx.get(f"{url}/metrics", headers=bearer(ADMIN), timeout=10).text
        errors = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("sdm_router_rate_limit_store_errors_total ")
        ]
        assert errors and errors[0] >= 1


def test_a_limited_key_retrieves_only_the_models_it_may_use(keyed: tuple[str, Any]) -> None:
    url, _ = keyed
    limited = sdk(url, "sk-auto-only")
    assert limited.models.retrieve("auto").id == "auto"
    assert [model.id for model in limited.models.list()] == ["auto"]
    with pytest.raises(openai.NotFoundError) as caught:
        limited.models.retrieve("good")  # exists, but hidden from this key: as unknown
    assert caught.value.code == "model_not_found"
    assert sdk(url, USER).models.retrieve("good").id == "good"
