"""The official ``openai`` client's tool-calling, JSON-mode and embeddings examples through the
gateway, over real HTTP, against the fake vLLM-like upstream (which calls tools when given
``tools`` and records every request body it receives)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from pydantic import BaseModel

from sdm_router.backends.base import Backend
from sdm_router.backends.factory import make_backend
from sdm_router.backends.local_transformers import LOCAL_CAPABILITIES
from sdm_router.backends.openai_http import OpenAIHTTPBackend
from sdm_router.config import DEFAULT_ABSTAIN_MESSAGE, OpenAIBackendSettings
from sdm_router.core.generation import Param
from sdm_router.main import build_app
from sdm_router.observability.metrics import GatewayMetrics
from tests.fakes import FakeRetriever, FakeVerifier
from tests.support.fake_upstream import CONFIDENT, TOOL_CALL_ID, FakeUpstream
from tests.support.gateway import fake_settings
from tests.support.openai_extra import extra_fields
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.integration

WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "The city"}},
            "required": ["location"],
        },
    },
}
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What's the weather like in Paris today?"}
]


class LocalLikeBackend(OpenAIHTTPBackend):
    """An upstream that declares what the embedded local model honours (seed and stop only)."""

    @property
    def capabilities(self) -> frozenset[Param]:
        return LOCAL_CAPABILITIES


@pytest.fixture(scope="module")
def tools_gateway(upstream: tuple[str, FakeUpstream]) -> Iterator[str]:
    url = upstream[0]

    def backend(model: str) -> dict[str, Any]:
        return {"type": "openai", "base_url": f"{url}/v1", "model": model}

    names = {"good": "good", "unsure": "unsure", "fail-400": "fail-400", "local-like": "good"}
    settings = fake_settings(
        url,
        backends={name: backend(model) for name, model in names.items()},
        routes={
            "auto": {"tiers": [{"backend": "unsure"}, {"backend": "good"}]},
            "passthrough": {"tiers": [{"backend": "good"}], "stream_mode": "passthrough"},
            "unverified-pass": {
                "tiers": [{"backend": "good"}],
                "verify_tool_calls": False,
                "on_unverified": "pass",
            },
            "unverified-abstain": {"tiers": [{"backend": "good"}], "verify_tool_calls": False},
            "local-route": {"tiers": [{"backend": "local-like"}]},
            "local-like-drop": {"tiers": [{"backend": "local-like"}], "drop_params": True},
            "abstains": {"tiers": [{"backend": "unsure"}]},
            "abstains-refusal": {"tiers": [{"backend": "unsure"}], "on_abstain": "refusal"},
        },
        embeddings={
            "embed-small": {"backend": "good", "model": "fake-embedder"},
            "embed-broken": {"backend": "fail-400"},
        },
    )
    backends: dict[str, Backend] = {
        name: make_backend(name, config) for name, config in settings.backends.items()
    }
    local = settings.backends["local-like"]
    assert isinstance(local, OpenAIBackendSettings)
    backends["local-like"] = LocalLikeBackend("local-like", local)
    app = build_app(
        settings,
        backends=backends,
        verifier=FakeVerifier(),
        retriever=FakeRetriever(),
        metrics=GatewayMetrics(),
    )
    with serve_in_thread(app) as gateway:
        yield gateway


@pytest.fixture
def sdk(tools_gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{tools_gateway}/v1", api_key="unused", max_retries=0) as client:
        yield client


def sent(upstream: tuple[str, FakeUpstream]) -> dict[str, Any]:
    """The last body the upstream received."""
    return upstream[1].log.requests[-1]


def test_the_tool_calling_example_round_trip(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    messages: list[Any] = list(ASK)  # the second turn adds the SDK's own message, dumped
    completion = sdk.chat.completions.create(model="auto", messages=messages, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id == TOOL_CALL_ID
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    verification = extra_fields(completion)["verification"]
    assert (verification["decision"], verification["reason"]) == ("accept", "verified")
    assert sent(upstream)["tools"] == [WEATHER_TOOL]

    # the example's second turn: the assistant's call (content null) and the tool's answer
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "14 degrees, sunny"})
    final = sdk.chat.completions.create(model="auto", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == CONFIDENT
    assert final.choices[0].finish_reason == "stop"
    history = sent(upstream)["messages"]
    assert history[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {"name": "get_weather", "arguments": call.function.arguments},
            }
        ],
    }
    assert history[2] == {
        "role": "tool",
        "content": "14 degrees, sunny",
        "tool_call_id": TOOL_CALL_ID,
    }


def test_tool_choice_and_parallel_tool_calls_are_forwarded(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    other: ChatCompletionFunctionToolParam = {
        "type": "function",
        "function": {"name": "get_time", "parameters": {}},
    }
    completion = sdk.chat.completions.create(
        model="good",
        messages=ASK,
        tools=[other, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    call = (completion.choices[0].message.tool_calls or [])[0]
    assert call.type == "function" and call.function.name == "get_weather"
    body = sent(upstream)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False


def test_pydantic_function_tools_parse(sdk: openai.OpenAI) -> None:
    class GetWeather(BaseModel):
        location: str
        days: int

    completion = sdk.chat.completions.parse(
        model="good", messages=ASK, tools=[openai.pydantic_function_tool(GetWeather)]
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == GetWeather(location="Paris", days=42)


def test_json_mode(sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]) -> None:
    completion = sdk.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Answer in JSON: what is six times seven?"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": 42}
    assert sent(upstream)["response_format"] == {"type": "json_object"}


def test_structured_outputs_parse(sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]) -> None:
    class Answer(BaseModel):
        city: str
        temperature: int

    completion = sdk.chat.completions.parse(model="good", messages=ASK, response_format=Answer)
    assert completion.choices[0].message.parsed == Answer(city="Paris", temperature=42)
    forwarded = sent(upstream)["response_format"]
    assert forwarded["type"] == "json_schema"
    assert forwarded["json_schema"]["name"] == "Answer"
    assert forwarded["json_schema"]["strict"] is True
    assert forwarded["json_schema"]["schema"]["required"] == ["city", "temperature"]


def test_a_structured_request_abstains_as_a_refusal_parse_surfaces(sdk: openai.OpenAI) -> None:
    class Answer(BaseModel):
        city: str

    completion = sdk.chat.completions.parse(model="abstains", messages=ASK, response_format=Answer)
    message = completion.choices[0].message
    assert (message.content, message.parsed) == (None, None)
    assert message.refusal == DEFAULT_ABSTAIN_MESSAGE
    assert extra_fields(completion)["verification"]["decision"] == "abstain"


def test_plain_text_abstains_as_the_route_says(sdk: openai.OpenAI) -> None:
    plain = sdk.chat.completions.create(model="abstains", messages=ASK).choices[0].message
    assert (plain.content, plain.refusal) == (DEFAULT_ABSTAIN_MESSAGE, None)  # default: message
    refused = sdk.chat.completions.create(model="abstains-refusal", messages=ASK)
    message = refused.choices[0].message
    assert (message.content, message.refusal) == (None, DEFAULT_ABSTAIN_MESSAGE)
    chunks = list(sdk.chat.completions.create(model="abstains-refusal", messages=ASK, stream=True))
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert "".join(d.refusal or "" for d in deltas) == DEFAULT_ABSTAIN_MESSAGE
    assert not "".join(d.content or "" for d in deltas)


def test_the_abstention_respects_max_tokens(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="abstains", messages=ASK, max_completion_tokens=5
    )
    choice = completion.choices[0]
    assert choice.message.content == DEFAULT_ABSTAIN_MESSAGE[:5].rstrip()
    assert choice.finish_reason == "length"


def test_penalties_logit_bias_user_seed_stop_are_forwarded(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    sdk.chat.completions.create(
        model="good",
        messages=ASK,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        logit_bias={"50256": -100, "11": 5},
        user="alice",
        seed=11,
        stop=["\n\n", "END"],
    )
    body = sent(upstream)
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.5, -0.25)
    assert body["logit_bias"] == {"50256": -100, "11": 5}
    assert (body["user"], body["seed"], body["stop"]) == ("alice", 11, ["\n\n", "END"])
    sdk.completions.create(model="good", prompt="Six times seven?", presence_penalty=1.0)
    assert sent(upstream)["presence_penalty"] == 1.0


def test_passthrough_streams_tool_call_deltas(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="passthrough", messages=ASK, tools=[WEATHER_TOOL], stream=True
        )
    )
    pieces = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert pieces[0].id == TOOL_CALL_ID and pieces[0].function is not None
    assert pieces[0].function.name == "get_weather"
    assert all(piece.id is None for piece in pieces[1:])  # later pieces only add arguments
    arguments = "".join(piece.function.arguments or "" for piece in pieces if piece.function)
    assert json.loads(arguments) == {"location": "Paris"}
    final = chunks[-1]
    assert final.choices[0].finish_reason == "tool_calls"
    assert extra_fields(final)["verification"]["decision"] == "accept"
    assert sent(upstream)["stream"] is True and sent(upstream)["tools"] == [WEATHER_TOOL]


def test_the_sdk_stream_helper_assembles_the_call(sdk: openai.OpenAI) -> None:
    with sdk.chat.completions.stream(model="good", messages=ASK, tools=[WEATHER_TOOL]) as stream:
        for _ in stream:
            pass
        completion = stream.get_final_completion()
    (call,) = completion.choices[0].message.tool_calls or []
    assert (call.id, call.function.name) == (TOOL_CALL_ID, "get_weather")
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls"


def test_verify_then_stream_replays_the_tool_calls_in_a_delta(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(model="auto", messages=ASK, tools=[WEATHER_TOOL], stream=True)
    )
    calls = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert [(c.id, c.function.name if c.function else None) for c in calls] == [
        (TOOL_CALL_ID, "get_weather")
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_unverified_tool_calls_pass_when_the_route_says_so(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="unverified-pass", messages=ASK, tools=[WEATHER_TOOL]
    )
    completion = raw.parse()
    call = (completion.choices[0].message.tool_calls or [])[0]
    assert call.type == "function" and call.function.name == "get_weather"
    verification = extra_fields(completion)["verification"]
    assert (verification["decision"], verification["reason"]) == (
        "unverified",
        "tool_calls_unverified",
    )
    assert verification["prediction"] is None and verification["region_alpha"] is None
    assert verification["attempts"][0]["action"] == "unverified"
    assert raw.headers["x-sdm-decision"] == "unverified"
    # a text answer on the same route is verified as usual
    text = sdk.chat.completions.create(model="unverified-pass", messages=ASK)
    assert extra_fields(text)["verification"]["decision"] == "accept"


def test_unverified_tool_calls_abstain_by_default(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="unverified-abstain", messages=ASK, tools=[WEATHER_TOOL]
    )
    message = completion.choices[0].message
    assert (message.content, message.refusal) == (None, DEFAULT_ABSTAIN_MESSAGE)  # tools: refusal
    assert completion.choices[0].message.tool_calls is None
    verification = extra_fields(completion)["verification"]
    assert (verification["decision"], verification["reason"]) == (
        "abstain",
        "tool_calls_unverified",
    )


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER_TOOL]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ],
)
@pytest.mark.parametrize("model", ["local-route", "local-like"])  # a route; a direct model
@pytest.mark.parametrize("stream", [False, True])
def test_a_parameter_the_backend_cannot_honour_is_a_400_naming_it(
    sdk: openai.OpenAI,
    upstream: tuple[str, FakeUpstream],
    fields: dict[str, Any],
    param: str,
    model: str,
    stream: bool,
) -> None:
    before = len(upstream[1].log.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=model,
            messages=ASK,
            stream=stream,
            extra_body=fields,
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == (param, "unsupported_parameter")
    assert param in body["message"]
    assert len(upstream[1].log.requests) == before  # nothing was sent upstream


def test_the_history_tool_calls_are_refused_by_message(sdk: openai.OpenAI) -> None:
    call: ChatCompletionMessageFunctionToolCallParam = {
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="local-like",
            messages=[*ASK, {"role": "assistant", "tool_calls": [call]}],
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "messages[1].tool_calls"


def test_what_the_local_model_honours_is_accepted(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    completion = sdk.chat.completions.create(
        model="local-like", messages=ASK, seed=3, stop=["\n"], temperature=0, user="bob"
    )
    assert completion.choices[0].message.content == CONFIDENT
    assert (sent(upstream)["seed"], sent(upstream)["stop"]) == (3, ["\n"])


def test_drop_params_drops_what_the_backend_cannot_honour(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    completion = sdk.chat.completions.create(
        model="local-like-drop",
        messages=ASK,
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        logit_bias={"1": 5},
        seed=9,
        extra_body={"audio": {"voice": "alloy"}, "vendor_knob": 1},
    )
    assert completion.choices[0].message.content == CONFIDENT  # no tools reached the model
    body = sent(upstream)
    for key in ("tools", "tool_choice", "logit_bias", "audio", "vendor_knob"):
        assert key not in body
    assert body["seed"] == 9


def test_embeddings_with_the_sdk_defaults(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    reply = sdk.embeddings.create(model="embed-small", input=["hello world", "hi"])
    assert reply.model == "embed-small" and reply.object == "list"
    assert [item.index for item in reply.data] == [0, 1]
    assert reply.data[0].embedding == pytest.approx([11.0, 11.1, 11.2])  # decoded from base64
    assert reply.usage.prompt_tokens == 3
    body = sent(upstream)
    assert upstream[1].log.paths[-1] == "/v1/embeddings"
    assert body == {
        "model": "fake-embedder",
        "input": ["hello world", "hi"],
        "encoding_format": "base64",
    }


def test_embeddings_as_floats_with_dimensions(
    sdk: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    reply = sdk.embeddings.create(
        model="embed-small", input="hello", encoding_format="float", dimensions=2, user="carol"
    )
    assert reply.data[0].embedding == pytest.approx([5.0, 5.1])
    assert sent(upstream)["dimensions"] == 2 and sent(upstream)["user"] == "carol"


def test_embedding_models_are_listed_as_such(sdk: openai.OpenAI) -> None:
    kinds = {model.id: getattr(model, "kind", None) for model in sdk.models.list()}
    assert kinds["embed-small"] == kinds["embed-broken"] == "embedding"
    assert kinds["auto"] == "route"


def test_embeddings_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.embeddings.create(model="auto", input="hello")
    assert caught.value.code == "model_not_found"
    assert "embed-small" in caught.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="embed-broken", input="hello")
    assert "scripted failure 400" in refused.value.message
    with pytest.raises(openai.BadRequestError) as empty:
        sdk.embeddings.create(model="embed-small", input=[])
    assert isinstance(empty.value.body, dict) and empty.value.body["param"] == "input"


def test_no_embedding_model_configured_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert "No embedding model is configured" in caught.value.message
