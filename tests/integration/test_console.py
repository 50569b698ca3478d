"""The operator console over a real keyed gateway (fake upstream and verifier, a seeded SQLite
store): no page without a session, a user key sees only its own decisions, CSRF is refused,
script in a conversation or answer renders inert, the cookies' flags; and labelling through
the console reaches the API and ``data import --from-store``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from sdm_router.api.console.pages import router as console_router
from sdm_router.config import StorageSettings
from sdm_router.storage.registry import ArtifactRegistry
from sdm_router.training.importing import labelled_decisions
from tests.support.console import (
    ALICE,
    BOB,
    OPS,
    SCRIPT,
    console_gateway,
    csrf_of,
    signed_in,
)
from tests.support.databases import sqlite_url
from tests.support.fake_upstream import FakeUpstream
from tests.support.keys import bearer

pytestmark = pytest.mark.integration
PAGES = ("/console", "/console/decisions", "/console/decisions/alice-1", "/console/review",
         "/console/artifacts")  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console")


@pytest.fixture(scope="module")
def base(upstream: tuple[str, FakeUpstream], folder: Path) -> Iterator[str]:
    with console_gateway(upstream[0], folder) as url:
        yield url


def test_no_page_without_a_session(base: str) -> None:
    for path in PAGES:
        reply = httpx.get(base + path, timeout=10)
        assert reply.status_code == 303, path
        assert reply.headers["location"] == "/console/sign-in"
    # a bearer key is not a session either, nor a forged cookie
    forged = {"sdm_console_session": "eyJuIjoib3BzIiwiYSI6dHJ1ZSwiZSI6OTk5OTk5OTk5OX0=.00"}
    assert httpx.get(f"{base}/console", headers=bearer(OPS), timeout=10).status_code == 303
    assert httpx.get(f"{base}/console", cookies=forged, timeout=10).status_code == 303
    label = httpx.post(f"{base}/console/decisions/alice-1/label", data={"label": "correct"})
    assert label.status_code == 403
    assert label.json()["error"]["code"] == "session_required"


def test_every_console_route_refuses_a_caller_without_a_session(base: str) -> None:
    open_ones = {("GET", "/console/sign-in"), ("GET", "/console/static/{name}")}
    walked = 0
    for route in console_router.routes:
        assert isinstance(route, APIRoute)
        path = route.path.replace("{identifier}", "alice-1").replace("{name}", "console.css")
        for method in sorted(route.methods or ()):
            reply = httpx.request(method, base + path, timeout=10)
            walked += 1
            if (method, route.path) in open_ones:
                assert reply.status_code == 200
            else:
                assert reply.status_code in (303, 403), f"{method} {path}: {reply.status_code}"
                assert "alice" not in reply.text
    assert walked >= 10


def test_sign_in_sets_strict_http_only_cookies_and_keeps_the_key_out_of_urls_and_logs(
    base: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = httpx.Client(base_url=base, timeout=10)
    form = client.get("/console/sign-in")
    assert form.status_code == 200
    assert "default-src 'none'" in form.headers["content-security-policy"]
    wrong = client.post("/console/sign-in", data={"key": "sk-nope", "csrf": csrf_of(form.text)})
    assert wrong.status_code == 401
    assert "not accepted" in wrong.text and "sk-nope" not in wrong.text
    reply = client.post("/console/sign-in", data={"key": OPS, "csrf": csrf_of(form.text)})
    assert reply.status_code == 303 and reply.headers["location"] == "/console"
    cookie = next(
        value
        for name, value in reply.headers.multi_items()
        if name == "set-cookie" and value.startswith("sdm_console_session=")
    )
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= flags
    assert "samesite=strict" in cookie.lower()
    assert OPS not in cookie and OPS not in reply.headers["location"]
    assert client.get("/console").status_code == 200
    assert "/console/sign-in" in caplog.text  # the request log saw the sign-in...
    assert OPS not in caplog.text  # ...and never the key
    # signing out ends the session
    out = client.post("/console/sign-out", data={"csrf": csrf_of(client.get("/console").text)})
    assert out.status_code == 303
    assert client.get("/console").status_code == 303


def test_forms_without_the_csrf_token_or_from_another_origin_are_refused(base: str) -> None:
    fresh = httpx.Client(base_url=base, timeout=10)
    fresh.get("/console/sign-in")
    refused = fresh.post("/console/sign-in", data={"key": OPS, "csrf": "guessed"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert refused.json()["error"]["param"] == "csrf"
    client = signed_in(base, OPS)
    token = csrf_of(client.get("/console/decisions/alice-1").text)
    path = "/console/decisions/alice-1/label"
    assert client.post(path, data={"label": "correct"}).status_code == 403
    assert client.post(path, data={"label": "correct", "csrf": token[::-1]}).status_code == 403
    other = client.post(path, data={"label": "correct", "csrf": token},
                        headers={"origin": "https://evil.example"})  # fmt: skip
    assert other.status_code == 403
    record = httpx.get(f"{base}/v1/decisions/alice-1", headers=bearer(OPS), timeout=10).json()
    assert record["feedback"] == []  # none of the refused forms labelled anything


def test_a_user_key_sees_only_its_own_decisions(base: str) -> None:
    alice = signed_in(base, ALICE)
    assert alice.get("/console/decisions/bob-1").status_code == 404
    listing = alice.get("/console/decisions").text
    assert "alice-1" in listing and "bob-1" not in listing
    token = csrf_of(alice.get("/console/decisions/alice-1").text)
    refused = alice.post("/console/decisions/bob-1/label", data={"label": "correct", "csrf": token})
    assert refused.status_code == 404
    assert alice.get("/console/artifacts").status_code == 403
    assert "bob-1" not in alice.get("/console/review").text
    assert "bob-1" in signed_in(base, BOB).get("/console/decisions").text


def test_script_in_a_conversation_or_answer_renders_as_text(base: str) -> None:
    page = signed_in(base, OPS).get("/console/decisions/support-0")
    assert page.status_code == 200
    assert SCRIPT not in page.text and "<b>forty-two</b>" not in page.text
    assert "&lt;script&gt;document.title=" in page.text
    assert "&lt;b&gt;forty-two&lt;/b&gt;" in page.text


def test_a_decision_shows_its_attempts_and_exemplars_linked_back_to_decisions(base: str) -> None:
    page = signed_in(base, OPS).get("/console/decisions/alice-1").text
    for shown in ("fake-artifact-1", "verified", "0.97", "0.96", "12.5", "good"):
        assert shown in page
    # the fake verifier's nearest exemplars: support-0 is a decision (linked, its text shown)
    assert 'href="/console/decisions/support-0"' in page
    assert "<code>support-1</code>" in page
    assert "Q: What is six times seven?\nA: 42" in page  # the artifact's own exemplar text
    assert "<code>support-2</code>" in page
    # a user key sees its linked decisions' text, never the artifact's (training data)
    mine = signed_in(base, ALICE).get("/console/decisions/alice-1").text
    assert 'href="/console/decisions/support-0"' in mine
    assert "Q: What is six times seven?" not in mine


def test_pages_render_with_filters_and_the_review_queue(base: str) -> None:
    ops = signed_in(base, OPS)
    overview = ops.get("/console", params={"window": "1h"})
    assert (
        overview.status_code == 200
        and "<svg" in overview.text
        and "Route <code>auto" in overview.text
    )
    bad = ops.get("/console", params={"window": "1y"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "window"
    abstained = ops.get("/console/decisions", params={"decision": "abstain"}).text
    assert "bob-1" in abstained and "alice-1" not in abstained
    found = ops.get("/console/decisions", params={"q": "six times"}).text
    assert "alice-1" in found and "bob-1" not in found
    wrong = ops.get("/console/decisions", params={"source": "robot"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "source"
    assert "No autopilot" in ops.get("/console/artifacts").text
    assert "bob-1" in ops.get("/console/review").text


def test_a_console_label_reaches_the_api_and_the_store_export(base: str, folder: Path) -> None:
    client = signed_in(base, OPS)
    token = csrf_of(client.get("/console/decisions/alice-1").text)
    form = {"label": "incorrect", "note": "checked by hand", "csrf": token,
            "next": "https://evil.example/"}  # fmt: skip
    reply = client.post("/console/decisions/alice-1/label", data=form)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/console/decisions/alice-1?saved=1"  # not elsewhere
    record = httpx.get(f"{base}/v1/decisions/alice-1", headers=bearer(OPS), timeout=10).json()
    assert record["label"] == {"label": "incorrect", "source": "human"}
    assert record["feedback"][-1]["note"] == "checked by hand"
    exported = {row.id: row for row in labelled_decisions(StorageSettings(url=sqlite_url(folder)))}
    assert exported["alice-1"].label == 0
    labelled = client.get("/console/decisions", params={"label": "incorrect", "source": "human"})
    assert "alice-1" in labelled.text
    assert "alice-1" not in client.get("/console/review").text


def test_without_keys_the_console_needs_no_sign_in(
    upstream: tuple[str, FakeUpstream], tmp_path: Path
) -> None:
    with console_gateway(upstream[0], tmp_path, keyed=False) as url:
        client = httpx.Client(base_url=url, timeout=10)
        assert client.get("/console/sign-in").status_code == 303
        page = client.get("/console/decisions/bob-1")
        assert page.status_code == 200 and "Sign out" not in page.text
        token = csrf_of(page.text)
        reply = client.post(
            "/console/decisions/bob-1/label", data={"label": "correct", "csrf": token}
        )
        assert reply.status_code == 303
        assert httpx.get(f"{url}/v1/decisions/bob-1").json()["label"]["label"] == "correct"


def test_the_artifacts_page_shows_the_registry_and_the_autopilots_steps(
    upstream: tuple[str, FakeUpstream], tmp_path: Path
) -> None:
    registry = ArtifactRegistry.connect(sqlite_url(tmp_path))
    registry.register("cand-1", "/nowhere/cand-1.sdmkitmodel", parent_id="fake-artifact",
                      routes=("auto",), figures={"accepted": 12})  # fmt: skip
    registry.record_step("gate", "refused", "too few accepted <answers>", route="auto",
                         artifact_id="cand-1", figures={"accepted": 12})  # fmt: skip
    registry.close()
    with console_gateway(upstream[0], tmp_path, keyed=False, autopilot=True) as url:
        page = httpx.get(f"{url}/console/artifacts", timeout=10).text
    assert "No autopilot" not in page
    assert "cand-1" in page and "candidate" in page and "fake-artifact" in page
    assert "too few accepted &lt;answers&gt;" in page and "refused" in page
