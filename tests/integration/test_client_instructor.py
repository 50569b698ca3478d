"""instructor (``instructor.from_openai`` over the official client) with a pydantic
``response_model`` through the gateway, over real HTTP, against the fake upstream that records
every body it receives (the ``tools_gateway`` of test_openai_tools)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import instructor
import openai
import pytest
from instructor.core import InstructorRetryException
from pydantic import BaseModel

from sdm_router.config import DEFAULT_ABSTAIN_MESSAGE
from tests.integration import test_openai_tools as tools
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration
tools_gateway, sdk, sent = tools.tools_gateway, tools.sdk, tools.sent  # its gateway and helpers

ASK: list[Any] = [{"role": "user", "content": "What's the weather like in Paris today?"}]


class Weather(BaseModel):
    city: str
    temperature: int


@pytest.fixture
def patched(sdk: openai.OpenAI) -> Iterator[instructor.Instructor]:
    yield instructor.from_openai(sdk)


def assert_nothing_injected(body: dict[str, Any]) -> None:
    for key in ("max_tokens", "max_completion_tokens", "temperature", "top_p"):
        assert key not in body


def test_instructor_response_model_tools_mode(
    patched: instructor.Instructor, upstream: tuple[str, FakeUpstream]
) -> None:
    weather = patched.chat.completions.create(
        model="auto", messages=ASK, response_model=Weather, max_retries=0
    )
    assert isinstance(weather, Weather)
    assert weather.model_dump() == {"city": "Paris", "temperature": 42}
    body = sent(upstream)
    (tool,) = body["tools"]
    assert tool["function"]["name"] == "Weather"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "Weather"}}
    assert_nothing_injected(body)


def test_instructor_response_model_json_schema_mode(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    patched = instructor.from_openai(sdk, mode=instructor.Mode.JSON_SCHEMA)
    weather = patched.chat.completions.create(
        model="auto", messages=ASK, response_model=Weather, max_retries=0
    )
    assert isinstance(weather, Weather)
    assert weather.model_dump() == {"city": "Paris", "temperature": 42}
    body = sent(upstream)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["city", "temperature"]
    assert "tools" not in body
    assert_nothing_injected(body)


def test_instructor_abstention_in_tools_mode_raises_the_refusal(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    """An unverified tool call abstains as ``refusal`` with ``content: null``; instructor raises
    with the refusal text instead of parsing prose into the model."""
    patched = instructor.from_openai(sdk)
    with pytest.raises(InstructorRetryException) as caught:
        patched.chat.completions.create(
            model="unverified-abstain", messages=ASK, response_model=Weather, max_retries=0
        )
    assert DEFAULT_ABSTAIN_MESSAGE in str(caught.value)
    assert sent(upstream)["tools"][0]["function"]["name"] == "Weather"


def test_instructor_abstention_in_json_schema_mode_is_an_error(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    """instructor's JSON_SCHEMA mode does not read ``refusal``: it fails on the null content (a
    validation error), never returning a model built from the abstention sentence."""
    patched = instructor.from_openai(sdk, mode=instructor.Mode.JSON_SCHEMA)
    with pytest.raises(InstructorRetryException) as caught:
        patched.chat.completions.create(
            model="abstains", messages=ASK, response_model=Weather, max_retries=0
        )
    completion = caught.value.last_completion
    assert completion is not None
    message = completion.choices[0].message
    assert (message.content, message.refusal) == (None, DEFAULT_ABSTAIN_MESSAGE)
    assert sent(upstream)["response_format"]["type"] == "json_schema"
