"""The OpenAI request surface: tools, formats, penalties and ``logit_bias`` parsed, carried
through the internal request, and passed to upstreams; tool calls read back from replies."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sdm_router.api.openai.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingsRequest,
    VerifyRequest,
)
from sdm_router.backends.local_transformers import LOCAL_CAPABILITIES
from sdm_router.backends.openai_wire import (
    UPSTREAM_CAPABILITIES,
    chat_payload,
    embeddings_payload,
    parse_chunk,
    parse_completion,
    parse_embeddings,
)
from sdm_router.core.embeddings import EmbeddingRequest
from sdm_router.core.errors import UpstreamError
from sdm_router.core.generation import (
    Candidate,
    GenerationRequest,
    Message,
    Param,
    SamplingParams,
    ToolCall,
    ToolCallDelta,
    join_tool_calls,
    tool_call_pieces,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather at a place",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
USER = {"role": "user", "content": "Weather in Paris?"}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
}


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [USER], **fields})


def internal(body: ChatCompletionRequest, **params: Any) -> GenerationRequest:
    messages = tuple(message.to_message() for message in body.messages)
    return GenerationRequest(
        messages, None, SamplingParams(**params), user=body.user, options=body.options()
    )


def test_every_field_reaches_the_upstream_payload() -> None:
    body = chat(
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": {}}},
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100},
        user="alice",
    )
    payload = chat_payload(internal(body, seed=7, stop=("\n",)), "m", 0, stream=False)
    assert payload["tools"] == [WEATHER]
    assert payload["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert payload["parallel_tool_calls"] is False
    assert payload["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {}},
    }
    assert (payload["presence_penalty"], payload["frequency_penalty"]) == (0.5, -0.5)
    assert payload["logit_bias"] == {"50256": -100}
    assert (payload["user"], payload["seed"], payload["stop"]) == ("alice", 7, ["\n"])


def test_unset_fields_stay_out_of_the_payload() -> None:
    payload = chat_payload(internal(chat()), "m", 0, stream=False)
    for key in ("tools", "tool_choice", "response_format", "logit_bias", "presence_penalty"):
        assert key not in payload


def test_tool_history_is_passed_through() -> None:
    body = chat(
        messages=[
            USER,
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "14 C"},
        ],
        tools=[WEATHER],
    )
    messages = chat_payload(internal(body), "m", 0, stream=False)["messages"]
    assert messages[1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert messages[2] == {"role": "tool", "content": "14 C", "tool_call_id": "call_1"}


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"tool_choice": "auto"}, ("tool_choice",)),
        ({"parallel_tool_calls": True}, ("parallel_tool_calls",)),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            ("tool_choice",),
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, ("tools", 0, "type")),
        ({"response_format": {"type": "xml"}}, ("response_format",)),
        ({"logit_bias": {"a": 1}}, ("logit_bias", "a", "[key]")),
        ({"logit_bias": {"1": 101}}, ("logit_bias", "1")),
        ({"presence_penalty": 3}, ("presence_penalty",)),
        ({"messages": [{"role": "tool", "content": "x"}]}, ("messages", 0)),
        (
            {"messages": [{"role": "user", "content": "x", "tool_calls": [CALL]}]},
            ("messages", 0, "tool_calls"),
        ),
    ],
)
def test_malformed_fields_are_refused_where_they_are(
    fields: dict[str, Any], where: tuple[object, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        chat(**fields)
    assert caught.value.errors()[0]["loc"][: len(where)] == where


def test_fields_implemented_nowhere_are_noted_unless_neutral() -> None:
    body = chat(audio={"voice": "alloy"}, modalities=["text"], functions=None)
    assert body.options().unsupported == ("audio",)
    legacy = CompletionRequest.model_validate({"prompt": "x", "suffix": "y", "best_of": 1})
    assert legacy.options().unsupported == ("suffix",)


def test_used_params_ignore_neutral_values() -> None:
    neutral = chat(presence_penalty=0, logit_bias={}, response_format={"type": "text"})
    assert internal(neutral).used_params() == []
    used = chat(tools=[WEATHER], tool_choice="required", response_format={"type": "json_object"})
    assert [param for param, _ in internal(used, seed=1).used_params()] == [
        Param.TOOLS,
        Param.TOOL_CHOICE,
        Param.RESPONSE_FORMAT,
        Param.SEED,
    ]


def test_history_tool_calls_need_the_tools_capability_and_name_their_message() -> None:
    body = chat(messages=[USER, {"role": "assistant", "tool_calls": [CALL]}])
    assert internal(body).used_params() == [(Param.TOOLS, "messages[1].tool_calls")]


def test_dropping_tools_writes_the_history_calls_as_text() -> None:
    body = chat(
        messages=[USER, {"role": "assistant", "tool_calls": [CALL]}],
        tools=[WEATHER],
        tool_choice="auto",
        logit_bias={"1": 5},
    )
    dropped = internal(body, seed=3).without(
        frozenset({Param.TOOLS, Param.TOOL_CHOICE, Param.LOGIT_BIAS})
    )
    assert dropped.options.tools is None and dropped.options.tool_choice is None
    assert dropped.options.logit_bias is None and dropped.params.seed == 3
    assert dropped.messages is not None
    assert dropped.messages[1] == Message("assistant", 'get_weather({"location": "Paris"})')
    assert dropped.used_params() == [(Param.SEED, "seed")]


def test_capabilities_are_declared_exactly() -> None:
    assert frozenset(Param) == UPSTREAM_CAPABILITIES
    assert frozenset({Param.SEED, Param.STOP}) == LOCAL_CAPABILITIES


def test_verification_text_is_the_text_then_one_line_per_call() -> None:
    calls = (ToolCall("1", "f", '{"a": 1}'), ToolCall("2", "g", "{}"))
    assert Candidate("", tool_calls=calls).verification_text == 'f({"a": 1})\ng({})'
    assert Candidate("Let me look.", tool_calls=calls[:1]).verification_text == (
        'Let me look.\nf({"a": 1})'
    )
    assert Candidate("42").verification_text == "42"


def test_stream_pieces_join_back_into_calls() -> None:
    calls = (ToolCall("1", "f", '{"a": 1}'), ToolCall("2", "g", "{}"))
    assert join_tool_calls(list(tool_call_pieces(calls))) == calls
    pieces = [
        ToolCallDelta(0, "1", "f", ""),
        ToolCallDelta(1, "2", "g", "{"),
        ToolCallDelta(0, None, None, '{"a"'),
        ToolCallDelta(0, None, None, ": 1}"),
        ToolCallDelta(1, None, None, "}"),
    ]
    assert join_tool_calls(pieces) == calls


def test_a_reply_with_tool_calls_keeps_them() -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [CALL]},
                "finish_reason": "tool_calls",
            }
        ]
    }
    (candidate,), _ = parse_completion(body)
    assert candidate.text == "" and candidate.finish_reason == "tool_calls"
    assert candidate.tool_calls == (ToolCall("call_1", "get_weather", '{"location": "Paris"}'),)


def test_a_malformed_tool_call_names_its_field() -> None:
    body = {"choices": [{"message": {"tool_calls": [{"id": "1", "function": {"name": "f"}}]}}]}
    with pytest.raises(UpstreamError, match=r"choices\[0\]\.message\.tool_calls\[0\]"):
        parse_completion(body)


def test_streamed_tool_call_pieces_are_read() -> None:
    first = {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    (delta,) = parse_chunk({"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})
    assert delta.tool_calls == (ToolCallDelta(0, "c", "f", ""),)
    more = {"index": 0, "function": {"arguments": '{"a"'}}
    (delta,) = parse_chunk({"choices": [{"delta": {"tool_calls": [more]}}]})
    assert delta.tool_calls == (ToolCallDelta(0, None, None, '{"a"'),)


def test_embeddings_request_and_reply() -> None:
    body = EmbeddingsRequest.model_validate(
        {"model": "e", "input": ["a", "b"], "dimensions": 2, "encoding_format": "float"}
    )
    assert embeddings_payload(EmbeddingRequest("up", body.input, "float", 2, None)) == {
        "model": "up",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    reply = {
        "data": [{"index": 1, "embedding": [0.5, 1]}, {"index": 0, "embedding": "AAAA"}],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    parsed = parse_embeddings(reply)
    assert parsed.vectors == ["AAAA", [0.5, 1.0]] and parsed.prompt_tokens == 2
    with pytest.raises(UpstreamError, match="data"):
        parse_embeddings({"object": "list"})
    empty: object
    for empty in ([], "", [""], [[]]):
        with pytest.raises(ValidationError) as caught:
            EmbeddingsRequest.model_validate({"model": "e", "input": empty})
        assert caught.value.errors()[0]["loc"] == ("input",)
    tokens = EmbeddingsRequest.model_validate({"model": "e", "input": [[0, 1], [2]]})
    assert tokens.to_request().input == [[0, 1], [2]]


def test_verify_reads_the_history_tool_calls_as_text() -> None:
    body = VerifyRequest.model_validate(
        {"messages": [USER, {"role": "assistant", "tool_calls": [CALL]}], "response": "ok"}
    )
    assert body.conversation()[1] == Message("assistant", 'get_weather({"location": "Paris"})')
