"""litellm as a client (``litellm.completion`` with ``api_base`` at the gateway) over real HTTP,
against the fake upstream that records every body it receives (the ``tools_gateway`` of
test_openai_tools)."""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before the import: no network fetch

from typing import Any

import litellm
import pytest

from tests.integration import test_openai_tools as tools
from tests.support.fake_upstream import CONFIDENT, FakeUpstream

pytestmark = pytest.mark.integration
tools_gateway, sent = tools.tools_gateway, tools.sent  # its gateway and helper

QUESTION = [{"role": "user", "content": "What is six times seven?"}]


def complete(gateway: str, **options: Any) -> Any:
    return litellm.completion(
        model="openai/auto",  # litellm's OpenAI-compatible provider; "auto" is the route
        api_base=f"{gateway}/v1",
        api_key="unused",
        messages=QUESTION,
        max_retries=0,
        **options,
    )


def assert_nothing_injected(body: dict[str, Any]) -> None:
    for key in ("max_tokens", "max_completion_tokens", "temperature", "top_p"):
        assert key not in body


def test_litellm_completion(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    response = complete(tools_gateway)
    assert response.choices[0].message.content == CONFIDENT
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.total_tokens > 0
    body = sent(upstream)
    assert body["messages"] == QUESTION
    assert_nothing_injected(body)


def test_litellm_completion_stream(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    chunks = list(complete(tools_gateway, stream=True))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == CONFIDENT
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    body = sent(upstream)
    assert body["messages"] == QUESTION
    assert_nothing_injected(body)


def test_litellm_completion_sampling_parameters(
    tools_gateway: str, upstream: tuple[str, FakeUpstream]
) -> None:
    response = complete(tools_gateway, max_tokens=17, temperature=0.3)
    assert response.choices[0].message.content == CONFIDENT
    body = sent(upstream)
    assert (body["max_tokens"], body["temperature"]) == (17, 0.3)
    assert "top_p" not in body


def test_litellm_responses(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    response = litellm.responses(
        model="openai/auto",
        input="What is six times seven?",
        api_base=f"{tools_gateway}/v1",
        api_key="unused",
        max_retries=0,
    )
    assert response.output[0].content[0].text == CONFIDENT
    body = sent(upstream)
    assert body["messages"] == QUESTION
    assert_nothing_injected(body)
