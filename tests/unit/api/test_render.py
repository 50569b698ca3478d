"""Response rendering: the dicts the renderers build are the documented models, key for key.

The renderers skip the response models per request (``sdm_router.api.openai.render.base``);
these tests hold them to the models: every body validates against its model
(``extra="forbid"``, required fields present) and serializes back to the same bytes (same
keys, same order, defaults included in a non-streamed body, only what is set in a stream
chunk).
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from sdm_router.api.openai.render.base import RenderContext, json_bytes
from sdm_router.api.openai.render.chat import ChatRenderer
from sdm_router.api.openai.render.completion import CompletionRenderer, completion_logprobs
from sdm_router.api.openai.render.sse import sse
from sdm_router.api.openai.render.verification import verification_of
from sdm_router.api.openai.responses import ChatCompletion, ChatCompletionChunk, TextCompletion
from sdm_router.core.generation import (
    Candidate,
    StreamDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
)
from sdm_router.core.verdict import Action, NearestExemplar, Reason, Verdict
from sdm_router.pipeline.cascade import Attempt, CascadeResult, ScoredCandidate
from sdm_router.pipeline.serving import Served, text_pieces
from tests.support.plans import route_plan

PLAN = route_plan("auto", max_backend_calls=2)
EXEMPLARS = (NearestExemplar("support-0", 1, 0.1234567891), NearestExemplar("support-1", 0, 2.5))
VERDICT = Verdict(1, 0.97, 0.96, 0.955, q=12, d=0.8, q_prime=10.0, is_ood=False,
                  nearest_exemplars=EXEMPLARS)  # fmt: skip
TOKENS = (
    TokenLogprob("The", -0.1, (TopLogprob("The", -0.1), TopLogprob("A", -2.5))),
    TokenLogprob(" answer é", -0.25),
)
CALL = ToolCall("call_1", "lookup", '{"q": "42"}')


def _served(candidates: list[Candidate], decision: Action = Action.ACCEPT) -> Served:
    verdict = VERDICT if decision is Action.ACCEPT else None
    reason = Reason.VERIFIED if decision is Action.ACCEPT else Reason.BACKEND_ERROR
    attempts = [
        Attempt(0, "small", Action.ESCALATE, Reason.BELOW_ALPHA, VERDICT, 12.3456, False),
        Attempt(1, "large", decision, reason, verdict, 1.0, True),
    ]
    choices = [ScoredCandidate(candidate, verdict, 1, "large") for candidate in candidates]
    result = CascadeResult("auto", decision, reason, choices, attempts, Usage(20, 4))
    return Served(PLAN, result, candidates)


SERVED = [
    _served([Candidate("The answer é", "stop", TOKENS)]),
    _served([Candidate("", "tool_calls", None, (CALL,)), Candidate("Two", "length", TOKENS)]),
    _served([Candidate("Sorry.", "stop")], Action.ABSTAIN),
]
CONTEXTS = [
    RenderContext(
        "x-1", 1700000000, logprobs=True, top_logprobs=1, include_usage=True, nearest_exemplars=2
    ),
    RenderContext(
        "x-2", 1700000000, logprobs=False, top_logprobs=0, include_usage=False, nearest_exemplars=0
    ),
]
DELTAS = [
    StreamDelta(0, "The", token_logprobs=TOKENS[:1]),
    StreamDelta(0, "", tool_calls=(ToolCallDelta(0, "call_1", "lookup", ""),)),
    StreamDelta(0, "and", tool_calls=(ToolCallDelta(0, None, None, '{"q"'),)),
    StreamDelta(1, " more", finish_reason="stop"),
]


def _as_documented(model: type[BaseModel], body: bytes, *, streamed: bool) -> None:
    parsed = model.model_validate_json(body)
    assert parsed.__pydantic_serializer__.to_json(parsed, exclude_unset=streamed) == body


def _event(frame: bytes) -> bytes:
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    return frame[len(b"data: ") : -2]


@pytest.mark.parametrize("served", SERVED)
@pytest.mark.parametrize("context", CONTEXTS)
def test_non_streamed_bodies_are_the_documented_models(
    served: Served, context: RenderContext
) -> None:
    _as_documented(ChatCompletion, json_bytes(ChatRenderer().response(context, served)),
                   streamed=False)  # fmt: skip
    _as_documented(TextCompletion, json_bytes(CompletionRenderer().response(context, served)),
                   streamed=False)  # fmt: skip


@pytest.mark.parametrize("served", SERVED)
@pytest.mark.parametrize("context", CONTEXTS)
def test_stream_chunks_are_the_documented_models(served: Served, context: RenderContext) -> None:
    verification = verification_of(served, context.nearest_exemplars)
    for renderer, model in (
        (ChatRenderer(), ChatCompletionChunk),
        (CompletionRenderer(), TextCompletion),
    ):
        opening = renderer.opening(context, "large", 2)
        frames = [] if opening is None else [opening]
        frames += [renderer.piece(context, "large", delta) for delta in DELTAS]
        frames.append(renderer.finish(context, "large", 0, "stop", None))
        frames.append(renderer.finish(context, "large", 1, "length", verification))
        frames.append(renderer.usage(context, "large", served.result.usage, verification))
        for frame in frames:
            _as_documented(model, _event(frame), streamed=True)


def test_verification_carries_exemplars_only_when_asked() -> None:
    asked, plain = verification_of(SERVED[0], 1), verification_of(SERVED[0], 0)
    assert asked["nearest_exemplars"] == [{"id": "support-0", "label": 1, "distance": 0.123457}]
    assert "nearest_exemplars" not in plain
    assert [attempt["action"] for attempt in plain["attempts"]] == ["escalate", "accept"]


def test_stream_chunks_leave_out_what_they_do_not_set() -> None:
    context = CONTEXTS[1]
    piece = orjson.loads(_event(ChatRenderer().piece(context, "m", DELTAS[1])))
    assert piece["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": ""},
            }
        ]
    }
    assert "usage" not in piece and "verification" not in piece
    last = orjson.loads(_event(ChatRenderer().finish(context, "m", 0, "stop", None)))
    assert last["choices"][0]["delta"] == {} and "verification" not in last


def test_error_events_are_compact_json() -> None:
    body = {"error": {"message": "Bad «value».", "type": "invalid_request_error", "param": None,
                      "code": None}}  # fmt: skip
    assert orjson.loads(_event(sse(body))) == body


@given(st.text())
def test_stream_pieces_concatenate_back_to_the_text(text: str) -> None:
    assert "".join(text_pieces(text)) == text


def test_completion_logprobs_offsets() -> None:
    tokens = (
        TokenLogprob("Hel", -0.1, (TopLogprob("Hel", -0.1), TopLogprob("He", -2.0))),
        TokenLogprob("lo", -0.2),
    )
    rendered = completion_logprobs(tokens, 1)
    assert rendered is not None
    assert rendered["text_offset"] == [0, 3]
    assert rendered["top_logprobs"] == [{"Hel": -0.1}, {}]
