"""``POST /v1/responses`` with the official ``openai`` client over real HTTP, against the fake
upstream that records every body it receives (the ``tools_gateway`` of test_openai_tools)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import FunctionToolParam, ResponseInputParam

from sdm_router.config import DEFAULT_ABSTAIN_MESSAGE
from tests.integration import test_openai_tools as tools
from tests.support.fake_upstream import CONFIDENT, TOOL_CALL_ID, FakeUpstream
from tests.support.openai_extra import extra_fields

pytestmark = pytest.mark.integration
tools_gateway, sdk, sent = tools.tools_gateway, tools.sdk, tools.sent  # its gateway and helpers

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
    "strict": True,
}


def test_a_string_input_is_answered_and_verified(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    response = sdk.responses.create(model="auto", input="What is six times seven?")
    assert (response.object, response.status) == ("response", "completed")
    assert response.id.startswith("resp_")
    assert response.output_text == CONFIDENT
    verification = extra_fields(response)["verification"]
    assert verification["decision"] == "accept"
    body = sent(upstream)
    assert body["messages"] == [{"role": "user", "content": "What is six times seven?"}]
    for key in ("max_tokens", "temperature", "top_p"):
        assert key not in body  # nothing injected
    assert response.usage is not None and response.usage.output_tokens > 0


def test_instructions_limits_sampling_and_metadata(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    response = sdk.responses.create(
        model="good",
        instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Six times seven?"}]}],
        max_output_tokens=40,
        temperature=0.2,
        top_p=0.5,
        metadata={"team": "a"},
    )
    body = sent(upstream)
    assert body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Six times seven?"},
    ]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (40, 0.2, 0.5)
    assert "metadata" not in body
    assert response.metadata == {"team": "a"}
    assert (response.instructions, response.max_output_tokens) == ("Answer briefly.", 40)


def test_function_calls_round_trip(sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]) -> None:
    first = sdk.responses.create(model="auto", input="Weather in Paris?", tools=[WEATHER])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, call.call_id) == ("get_weather", TOOL_CALL_ID)
    assert json.loads(call.arguments) == {"location": "Paris"}
    assert sent(upstream)["tools"] == [
        {
            "type": "function",
            "function": {key: value for key, value in WEATHER.items() if key != "type"},
        }
    ]
    history: ResponseInputParam = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "14 degrees"},
    ]
    final = sdk.responses.create(model="auto", input=history, tools=[WEATHER])
    assert final.output_text == CONFIDENT
    messages = sent(upstream)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == TOOL_CALL_ID
    assert messages[2] == {"role": "tool", "content": "14 degrees", "tool_call_id": TOOL_CALL_ID}


def test_a_structured_abstention_is_a_refusal_part(sdk: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = sdk.responses.create(
        model="abstains",
        input="Which city?",
        text={"format": {"type": "json_schema", "name": "City", "schema": schema}},
    )
    (message,) = response.output
    assert message.type == "message"
    (part,) = message.content
    assert part.type == "refusal" and part.refusal == DEFAULT_ABSTAIN_MESSAGE
    assert response.output_text == ""
    assert extra_fields(response)["verification"]["decision"] == "abstain"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"input": [{"type": "web_search_call", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
    ],
)
def test_what_is_not_honoured_is_a_400_naming_it(
    tools_gateway: str, fields: dict[str, Any], param: str
) -> None:
    body = {"model": "good", "input": "Hi", **fields}
    reply = httpx.post(f"{tools_gateway}/v1/responses", json=body, timeout=20)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == param
    assert (
        param.split(".", maxsplit=1)[0].split("[", maxsplit=1)[0] in error["message"]
        or param in error["message"]
    )


def test_a_streamed_response_is_the_event_sequence(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model="auto", input="Six times seven?", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == CONFIDENT
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == CONFIDENT
    assert extra_fields(final.response)["verification"]["decision"] == "accept"


def test_the_stream_helper_and_a_streamed_refusal(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model="good", input="Six times seven?") as stream:
        assert stream.get_final_response().output_text == CONFIDENT
    events = list(
        sdk.responses.create(
            model="abstains",
            input="Weather?",
            text={"format": {"type": "json_object"}},
            stream=True,
        )
    )
    refusal = [event.delta for event in events if event.type == "response.refusal.delta"]
    assert "".join(refusal) == DEFAULT_ABSTAIN_MESSAGE
    assert not any(event.type == "response.output_text.delta" for event in events)


def test_responses_are_not_stored(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.retrieve("resp_unknown")
    assert "does not store" in caught.value.message


def test_an_agents_sdk_run_with_one_tool_on_its_default_model(
    tools_gateway: str, upstream: tuple[str, FakeUpstream]
) -> None:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)

    @agents.function_tool
    def get_weather(location: str) -> str:
        """The weather in a city."""
        return f"14 degrees in {location}"

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=f"{tools_gateway}/v1", api_key="x", max_retries=0)
        model = agents.OpenAIResponsesModel("auto", client)  # the SDK's default: Responses API
        agent = agents.Agent(name="weather", tools=[get_weather], model=model)
        return await agents.Runner.run(agent, "Weather in Paris?")

    result = asyncio.run(run())
    assert result.final_output == CONFIDENT
    messages = sent(upstream)["messages"]
    assert messages[-1] == {
        "role": "tool",
        "content": "14 degrees in Paris",
        "tool_call_id": TOOL_CALL_ID,
    }
