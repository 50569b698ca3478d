"""langchain-openai's ``ChatOpenAI`` through the gateway, over real HTTP, against the fake
upstream that records every body it receives (the ``tools_gateway`` of test_openai_tools)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.integration import test_openai_tools as tools
from tests.support.fake_upstream import CONFIDENT, TOOL_CALL_ID, FakeUpstream

pytestmark = pytest.mark.integration
tools_gateway, sent = tools.tools_gateway, tools.sent  # its gateway and helper

QUESTION = "What is six times seven?"


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    temperature: int


def get_weather(location: str) -> str:
    """Get the current weather in a given location."""
    return f"14 degrees in {location}"


def chat(gateway: str, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="auto", base_url=f"{gateway}/v1", api_key="unused", max_retries=0, **options
    )


def assert_nothing_injected(body: dict[str, Any]) -> None:
    for key in ("max_tokens", "max_completion_tokens", "temperature", "top_p"):
        assert key not in body


def test_langchain_invoke(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    reply = chat(tools_gateway).invoke(QUESTION)
    assert isinstance(reply, AIMessage)
    assert reply.content == CONFIDENT
    body = sent(upstream)
    assert body["messages"] == [{"role": "user", "content": QUESTION}]
    assert body["model"] == "good"  # the route's last tier answered
    assert_nothing_injected(body)


def test_langchain_stream(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    chunks = list(chat(tools_gateway).stream(QUESTION))
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert "".join(str(chunk.content) for chunk in chunks) == CONFIDENT
    body = sent(upstream)
    assert body["messages"] == [{"role": "user", "content": QUESTION}]
    assert_nothing_injected(body)


def test_langchain_with_structured_output(
    tools_gateway: str, upstream: tuple[str, FakeUpstream]
) -> None:
    structured = chat(tools_gateway).with_structured_output(Weather)
    answer = structured.invoke("What's the weather like in Paris today?")
    assert answer == Weather(city="Paris", temperature=42)
    forwarded = sent(upstream)["response_format"]
    assert forwarded["type"] == "json_schema"
    assert forwarded["json_schema"]["name"] == "Weather"
    assert forwarded["json_schema"]["schema"]["required"] == ["city", "temperature"]


def test_langchain_bind_tools(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    reply = chat(tools_gateway).bind_tools([get_weather]).invoke("Weather in Paris?")
    assert isinstance(reply, AIMessage)
    (call,) = reply.tool_calls
    assert (call["name"], call["args"], call["id"]) == (
        "get_weather",
        {"location": "Paris"},
        TOOL_CALL_ID,
    )
    body = sent(upstream)
    (tool,) = body["tools"]
    assert tool["type"] == "function" and tool["function"]["name"] == "get_weather"
    assert_nothing_injected(body)


def test_langchain_responses_api_invoke(
    tools_gateway: str, upstream: tuple[str, FakeUpstream]
) -> None:
    reply = chat(tools_gateway, use_responses_api=True).invoke(QUESTION)
    assert isinstance(reply, AIMessage)
    assert reply.text == CONFIDENT
    assert reply.response_metadata["id"].startswith("resp_")
    body = sent(upstream)
    assert body["messages"] == [{"role": "user", "content": QUESTION}]
    assert_nothing_injected(body)
