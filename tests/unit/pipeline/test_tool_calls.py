"""Tool calls through the cascade (verified as text, or unverified by the route's choice) and
parameters a backend cannot honour (refused, or dropped under ``drop_params``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from sdm_router.core.errors import Abstained, InvalidRequest
from sdm_router.core.generation import (
    GenerationRequest,
    Message,
    Param,
    RequestOptions,
    SamplingParams,
    ToolCall,
)
from sdm_router.core.routing import OnAbstain, OnUnverified
from sdm_router.core.verdict import Action, Reason
from sdm_router.pipeline.cascade import (
    Cascade,
    CascadeResult,
    answer_candidates,
    check_params,
    tier_request,
)
from sdm_router.pipeline.gateway import Gateway
from sdm_router.pipeline.observer import NullObserver
from sdm_router.pipeline.plan import RoutePlan, Tier
from sdm_router.pipeline.policy import ranking_key
from sdm_router.pipeline.scope import RequestScope
from sdm_router.pipeline.serving import GenerationServing
from tests.fakes import FakeBackend, FakeVerifier
from tests.support.plans import BAD, GOOD, plan

CALL = ToolCall("call_1", "get_weather", '{"location": "Paris"}')
TOOLS = ({"type": "function", "function": {"name": "get_weather"}},)
LOCAL = frozenset({Param.SEED, Param.STOP})
REQUEST = GenerationRequest(
    messages=(
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("call_0", "get_time", "{}"),)),
        Message("tool", "noon", tool_call_id="call_0"),
    ),
    prompt=None,
    params=SamplingParams(n=1),
    options=RequestOptions(tools=TOOLS, tool_choice="auto"),
)


def tools_plan(*tiers: Tier, **changes: Any) -> RoutePlan:
    return dataclasses.replace(plan(*tiers), **changes)


def run(verifier: FakeVerifier, route: RoutePlan, request: GenerationRequest = REQUEST):
    return Cascade(verifier, None, NullObserver()).run(route, request)


async def test_a_tool_call_is_verified_as_its_text() -> None:
    verifier = FakeVerifier()
    backend = FakeBackend("a", [""], tool_calls=[CALL])
    result = await run(verifier, tools_plan(Tier(backend)))
    assert (result.decision, result.reason) == (Action.ACCEPT, Reason.VERIFIED)
    assert result.best is not None and result.best.candidate.tool_calls == (CALL,)
    (seen,) = verifier.seen
    assert seen.response == 'get_weather({"location": "Paris"})'
    # the history's tool calls are text too, for the verifier
    assert seen.messages[1] == Message("assistant", "get_time({})")
    # the backend itself gets the structured history
    assert backend.requests[0].messages == REQUEST.messages


@pytest.mark.parametrize(
    ("on_unverified", "decision"),
    [(OnUnverified.PASS, Action.UNVERIFIED), (OnUnverified.ABSTAIN, Action.ABSTAIN)],
)
async def test_unverified_tool_calls_follow_on_unverified(
    on_unverified: OnUnverified, decision: Action
) -> None:
    verifier = FakeVerifier()
    first, second = FakeBackend("a", [""], tool_calls=[CALL]), FakeBackend("b", [GOOD])
    route = tools_plan(
        Tier(first),
        Tier(second),
        verify_tool_calls=False,
        on_unverified=on_unverified,
        on_abstain=OnAbstain.MESSAGE,
    )
    result = await run(verifier, route)
    assert (result.decision, result.reason) == (decision, Reason.TOOL_CALLS_UNVERIFIED)
    assert verifier.seen == []  # nothing was judged
    assert second.requests == []  # final: no escalation
    (attempt,) = result.attempts
    assert (attempt.action, attempt.verdict) == (decision, None)
    answers = answer_candidates(route, result, REQUEST)
    if decision is Action.UNVERIFIED:
        assert answers[0].tool_calls == (CALL,)
    else:  # a request with tools abstains in the refusal shape: no content to mistake
        assert (answers[0].text, answers[0].refusal) == ("", "no")
        assert not answers[0].tool_calls


async def test_abstaining_on_unverified_can_raise() -> None:
    route = tools_plan(
        Tier(FakeBackend("a", [""], tool_calls=[CALL])),
        verify_tool_calls=False,
        on_abstain=OnAbstain.ERROR,
    )
    result = await run(FakeVerifier(), route)
    with pytest.raises(Abstained, match="tool_calls_unverified"):
        answer_candidates(route, result, REQUEST)


async def test_a_text_answer_is_verified_even_when_tool_calls_are_not() -> None:
    route = tools_plan(Tier(FakeBackend("a", [BAD])), Tier(FakeBackend("b", [GOOD])))
    route = dataclasses.replace(route, verify_tool_calls=False)
    result = await run(FakeVerifier(), route)
    assert [a.action for a in result.attempts] == [Action.ESCALATE, Action.ACCEPT]


def test_unverified_answers_rank_below_verified_ones() -> None:
    verdict = FakeVerifier._judge(BAD, 0)
    assert ranking_key(None, plan().thresholds.estimator) < ranking_key(
        verdict, plan().thresholds.estimator
    )


async def test_passthrough_streams_tool_call_pieces_and_judges_the_whole_calls() -> None:
    verifier = FakeVerifier()
    route = tools_plan(Tier(FakeBackend("a", [""], tool_calls=[CALL])))
    events = [e async for e in Cascade(verifier, None, NullObserver()).stream_live(route, REQUEST)]
    pieces = [call for e in events if not isinstance(e, CascadeResult) for call in e.tool_calls]
    assert [(p.id, p.name, p.arguments) for p in pieces] == [(CALL.id, CALL.name, CALL.arguments)]
    result = events[-1]
    assert isinstance(result, CascadeResult) and result.decision is Action.ACCEPT
    assert result.best is not None and result.best.candidate.tool_calls == (CALL,)
    assert result.best.candidate.finish_reason == "tool_calls"
    assert verifier.seen[0].response == CALL.text


async def test_passthrough_unverified_tool_calls() -> None:
    route = tools_plan(
        Tier(FakeBackend("a", [""], tool_calls=[CALL])),
        verify_tool_calls=False,
        on_unverified=OnUnverified.PASS,
    )
    events = [
        e async for e in Cascade(FakeVerifier(), None, NullObserver()).stream_live(route, REQUEST)
    ]
    result = events[-1]
    assert isinstance(result, CascadeResult)
    assert (result.decision, result.reason) == (Action.UNVERIFIED, Reason.TOOL_CALLS_UNVERIFIED)


async def test_a_backend_without_the_capability_is_a_400_naming_the_parameter() -> None:
    local = FakeBackend("local", [GOOD], capabilities=LOCAL)
    route = tools_plan(Tier(FakeBackend("remote", [GOOD])), Tier(local))
    cascade = Cascade(FakeVerifier(), None, NullObserver())
    gateway = Gateway({"auto": route}, "auto", cascade, {}, FakeVerifier(), None)
    serving = GenerationServing(gateway, NullObserver(), log_prompts=False)
    scope = RequestScope(request_id="req-1", plan=route, deadline=math.inf)
    with pytest.raises(InvalidRequest) as caught:
        await serving.stream(scope, REQUEST, nearest_exemplars=0)
    assert caught.value.param == "tools" and caught.value.code == "unsupported_parameter"
    assert "'local'" in caught.value.message and "drop_params" in caught.value.message
    assert local.requests == []  # refused before any backend was called


async def test_a_field_implemented_nowhere_is_a_400() -> None:
    request = dataclasses.replace(REQUEST, options=RequestOptions(unsupported=("audio",)))
    with pytest.raises(InvalidRequest) as caught:
        check_params(plan(Tier(FakeBackend("a", [GOOD]))), request)
    assert caught.value.param == "audio"


async def test_the_history_tool_calls_are_named_by_message() -> None:
    request = dataclasses.replace(REQUEST, options=RequestOptions())
    route = plan(Tier(FakeBackend("local", [GOOD], capabilities=LOCAL)))
    with pytest.raises(InvalidRequest) as caught:
        check_params(route, request)
    assert caught.value.param == "messages[1].tool_calls"


async def test_drop_params_drops_per_tier(caplog: pytest.LogCaptureFixture) -> None:
    local = FakeBackend("local", [BAD], capabilities=LOCAL)
    remote = FakeBackend("remote", [GOOD])
    route = tools_plan(Tier(local), Tier(remote), drop_params=True)
    request = dataclasses.replace(REQUEST, params=SamplingParams(seed=5))
    with caplog.at_level("INFO", logger="sdm_router.pipeline.cascade"):
        result = await run(FakeVerifier(), route, request)
    assert result.decision is Action.ACCEPT
    (to_local,) = local.requests
    assert to_local.options.tools is None and to_local.options.tool_choice is None
    assert to_local.params.seed == 5  # honoured, so kept
    assert to_local.messages is not None and to_local.messages[1].content == "get_time({})"
    (to_remote,) = remote.requests
    assert to_remote.options.tools == TOOLS and to_remote.messages == REQUEST.messages
    (record,) = [r for r in caplog.records if r.getMessage() == "parameters dropped (drop_params)"]
    assert vars(record)["dropped"] == {"local": ["messages[1].tool_calls", "tool_choice", "tools"]}


def test_tier_request_without_drop_params_changes_nothing() -> None:
    tier = Tier(FakeBackend("local", [GOOD], capabilities=LOCAL))
    assert tier_request(plan(tier), tier, REQUEST, 1).options == REQUEST.options
