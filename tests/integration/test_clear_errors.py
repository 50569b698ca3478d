"""The request errors a drop-in client hits first, each a 400 in the OpenAI envelope that names
the field and says what is allowed (real HTTP against the fake-upstream gateway)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration import test_openai_tools as tools

pytestmark = pytest.mark.integration
tools_gateway = tools.tools_gateway
ASK = [{"role": "user", "content": "Hi"}]


def error_of(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 400, reply.text
    error: dict[str, Any] = reply.json()["error"]
    return error


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0].type",
            "text",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
            "name",
        ),
    ],
)
def test_a_bad_field_is_named_with_what_is_allowed(
    tools_gateway: str, fields: dict[str, Any], param: str, says: str
) -> None:
    body = {"model": "good", "messages": ASK, **fields}
    error = error_of(httpx.post(f"{tools_gateway}/v1/chat/completions", json=body, timeout=20))
    assert error["param"] == param
    assert says in error["message"]


def test_a_json_body_without_content_type_is_read_as_json(tools_gateway: str) -> None:
    reply = httpx.post(
        f"{tools_gateway}/v1/chat/completions",
        content=b'{"model": "good", "messages": [{"role": "user", "content": "Hi"}]}',
        headers={"content-type": "application/x-www-form-urlencoded"},  # what curl -d sends
        timeout=20,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["object"] == "chat.completion"


def test_a_trailing_slash_is_a_404_in_the_envelope(tools_gateway: str) -> None:
    reply = httpx.post(f"{tools_gateway}/v1/chat/completions/", json={}, timeout=20)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"
