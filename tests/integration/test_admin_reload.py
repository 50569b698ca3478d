"""``POST /admin/verifier/reload`` over the fake verifier: the swap, the refusal, the admin key."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes import FakeVerifier
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.keys import key_entry
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is six times seven?"}]


@pytest.fixture
def open_gateway(upstream: tuple[str, FakeUpstream]) -> Iterator[tuple[str, FakeVerifier]]:
    verifier = FakeVerifier()
    with serve_in_thread(fake_app(upstream[0], verifier=verifier)) as url:
        yield url, verifier


def artifact_of(url: str) -> str:
    readiness = httpx.get(f"{url}/readyz", timeout=10).json()
    return str(readiness["components"]["verifier"]["artifact_id"])


def test_a_reload_swaps_the_artifact_everywhere(open_gateway: tuple[str, FakeVerifier]) -> None:
    url, _ = open_gateway
    reply = httpx.post(
        f"{url}/admin/verifier/reload", json={"artifact": "/models/v2.sdmkitmodel"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["artifact_id"] == "v2"
    assert artifact_of(url) == "v2"
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'sdm_router_verifier_info{artifact_id="v2",device="cpu"} 1.0' in metrics
    chat = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "auto", "messages": QUESTION}, timeout=10
    )
    record = httpx.get(f"{url}/v1/decisions/{chat.headers['x-request-id']}", timeout=10).json()
    assert record["artifact_id"] == "v2"
    again = httpx.post(f"{url}/admin/verifier/reload", timeout=10)  # no body: the configured one
    assert again.status_code == 200 and again.json()["artifact_id"] == "fake-artifact"


def test_a_refused_artifact_keeps_the_old_one(open_gateway: tuple[str, FakeVerifier]) -> None:
    url, _ = open_gateway
    reply = httpx.post(
        f"{url}/admin/verifier/reload", json={"artifact": "/models/corrupt.sdmkitmodel"}, timeout=10
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "artifact_refused" and "checksum mismatch" in error["message"]
    assert artifact_of(url) == "fake-artifact"
    bad = httpx.post(f"{url}/admin/verifier/reload", json={"artifact": 3}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "artifact"


def test_with_keys_configured_only_an_admin_key_opens_admin(
    upstream: tuple[str, FakeUpstream],
) -> None:
    auth = {
        "keys": [key_entry("user", "user-key")],
        "admin_keys": [key_entry("ops", "admin-key")],
    }
    with serve_in_thread(fake_app(upstream[0], auth=auth)) as url:

        def reload(key: str | None) -> int:
            headers = {"authorization": f"Bearer {key}"} if key else {}
            return httpx.post(
                f"{url}/admin/verifier/reload", headers=headers, timeout=10
            ).status_code

        # no key, a wrong key: 401; a valid key that is not an admin key: 403
        assert [reload(None), reload("nope"), reload("user-key"), reload("admin-key")] == [
            401,
            401,
            403,
            200,
        ]
    user_only = {"keys": [key_entry("user", "user-key")]}
    with serve_in_thread(fake_app(upstream[0], auth=user_only)) as url:
        status = httpx.post(
            f"{url}/admin/verifier/reload",
            headers={"authorization": "Bearer user-key"},
            timeout=10,
        ).status_code
        assert status == 403  # keys but no admin key: admin stays shut


def test_only_artifacts_inside_the_roots_can_be_named(
    open_gateway: tuple[str, FakeVerifier],
) -> None:
    """``verifier.artifact_roots`` is ``/models`` here: every other path gets one answer, so an
    admin key learns nothing of the filesystem; none is ever a 500."""
    url, _ = open_gateway
    answers = set()
    for path in (
        "/etc",
        "/etc/shadow",
        "/nonexistent",
        "/models/../etc",
        "models/v2",
        "/" + "a" * 100_000,
    ):
        reply = httpx.post(f"{url}/admin/verifier/reload", json={"artifact": path}, timeout=10)
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["code"] == "artifact_refused" and error["param"] == "artifact"
        answers.add(error["message"] if len(path) < 4096 else "long")
    assert len(answers) == 2  # one for every path outside the roots, one for the long one
    assert artifact_of(url) == "fake-artifact"
