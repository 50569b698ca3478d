"""``data build`` asks what serving asks: the route's plan, its tier requests, and retrieval
with the user's question and the configured top_k."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from sdm_router.config import Settings, load_settings
from sdm_router.pipeline.plan import build_plans, route_plan
from sdm_router.retrieval.base import Passage
from sdm_router.retrieval.context import format_context
from sdm_router.training.dataset_build import (
    BuildOptions,
    DatasetBuilder,
    Job,
    client_max_tokens,
    plan_jobs,
    run_jobs,
)
from sdm_router.training.suites import get_item
from tests.fakes import FakeBackend, FakeRetriever

BACKEND = "smollm2-135m"
PASSAGES = [
    Passage(id=f"p{i}", text=f"The capital of France is Paris ({i}).", score=0.9 - i / 10)
    for i in range(8)
]


def _settings(top_k: int = 5) -> Settings:
    settings = load_settings()
    assert settings.retrieval is not None
    retrieval = settings.retrieval.model_copy(update={"top_k": top_k})
    return settings.model_copy(update={"retrieval": retrieval})


def _backend(answer: str = "The capital of France is Paris.") -> FakeBackend:
    return FakeBackend(BACKEND, [answer])


def test_the_route_plan_is_the_one_the_gateway_builds() -> None:
    settings = _settings()
    backends = {BACKEND: _backend()}
    assert route_plan(settings, "auto", backends) == build_plans(settings, backends)["auto"]
    assert route_plan(settings, "auto", backends).retrieval_top_k == 5


def test_retrieval_searches_the_users_question_with_the_configured_top_k() -> None:
    settings = _settings(top_k=5)
    backend = _backend()
    plan = route_plan(settings, "auto", {BACKEND: backend})
    retriever = FakeRetriever(PASSAGES)
    item = get_item("capitals/france/p1f4s1c2")
    builder = DatasetBuilder(plan, retriever, seed=0)
    (record,) = asyncio.run(builder.run_job(Job(item, "retrieval", plan.tiers[0], 1, True)))
    # the user's last turn, as serving searches it; not the curated retrieval_key
    assert retriever.queries == [item.prompt]
    assert item.retrieval_key is not None and item.retrieval_key not in retriever.queries
    (request,) = backend.requests
    assert request.messages is not None
    assert request.messages[:-1] == item.messages[:-1]  # system prompt and earlier turn kept
    context = format_context(PASSAGES[:5])
    assert request.messages[-1].content == f"{context}\n\n{item.prompt}"
    assert record.messages == request.text_conversation
    assert (record.label, record.check, record.variant) == (1, "correct", "retrieval")
    assert record.question == item.prompt and record.item_id == item.id


def test_a_retrieval_job_that_finds_nothing_writes_no_row() -> None:
    settings = _settings()
    backend = _backend()
    plan = route_plan(settings, "auto", {BACKEND: backend})
    builder = DatasetBuilder(plan, FakeRetriever([]), seed=0)
    item = get_item("arithmetic/add/7/5/p0")
    assert asyncio.run(builder.run_job(Job(item, "retrieval", plan.tiers[0], 1, True))) == []
    assert backend.requests == []


def test_tier_requests_are_built_by_the_cascade() -> None:
    settings = _settings()
    backend = _backend("12")
    plan = route_plan(settings, "auto", {BACKEND: backend})
    item = get_item("arithmetic/add/7/5/p2s3")
    options = BuildOptions(suite="arithmetic", samples=2, show_progress=False)
    jobs = plan_jobs([item], plan, options, done=set())
    assert [job.variant for job in jobs] == ["greedy", "sampled", "retrieval"]
    output = io.StringIO()
    builder = DatasetBuilder(plan, FakeRetriever(PASSAGES), seed=0)
    written = asyncio.run(run_jobs(jobs, builder, output, options))
    rows = [json.loads(line) for line in output.getvalue().splitlines()]
    assert written == len(rows) == 4
    assert sorted(row["variant"] for row in rows) == [
        "greedy",
        "retrieval",
        "sampled-0",
        "sampled-1",
    ]
    assert all(row["label"] == 1 and row["messages"][0]["role"] == "system" for row in rows)
    greedy, sampled, retrieved = backend.requests
    tiers = settings.routes["auto"].tiers
    assert greedy.params.n == 1 and greedy.params.temperature == tiers[0].temperature
    assert greedy.params.max_tokens == tiers[0].max_tokens
    assert sampled.params.n == 2 and sampled.params.temperature == tiers[1].temperature
    assert retrieved.params.temperature == tiers[0].temperature
    assert greedy.params.logprobs and greedy.params.seed == sampled.params.seed


def test_plan_jobs_retrieves_for_every_family_and_resumes() -> None:
    plan = route_plan(_settings(), "auto", {BACKEND: _backend()})
    items = [get_item("letters/first/garden/p0"), get_item("capitals/france/p0")]
    options = BuildOptions(suite="default", samples=0)
    jobs = plan_jobs(items, plan, options, done=set())
    assert [(job.item.family, job.variant) for job in jobs] == [
        ("letters", "greedy"),
        ("letters", "retrieval"),
        ("capitals", "greedy"),
        ("capitals", "retrieval"),
    ]
    done = {"letters/first/garden/p0#greedy", "capitals/france/p0#retrieval"}
    again = plan_jobs(items, plan, options, done)
    assert [job.record_ids()[0] for job in again] == [
        "letters/first/garden/p0#retrieval",
        "capitals/france/p0#greedy",
    ]
    no_retrieval = BuildOptions(suite="default", samples=0, retrieval=False)
    assert {job.variant for job in plan_jobs(items, plan, no_retrieval, set())} == {"greedy"}


@pytest.mark.parametrize(
    ("limits", "expected"), [((40, 40), 40), ((None, 90), 90), ((None, None), 48)]
)
def test_the_client_max_tokens_leaves_each_tier_its_own(
    limits: tuple[int | None, int | None], expected: int
) -> None:
    settings = load_settings()
    route = settings.routes["auto"]
    tiers = [
        tier.model_copy(update={"max_tokens": limit})
        for tier, limit in zip(route.tiers, limits, strict=True)
    ]
    routes = {"auto": route.model_copy(update={"tiers": tiers})}
    plan = route_plan(settings.model_copy(update={"routes": routes}), "auto", {BACKEND: _backend()})
    assert client_max_tokens(plan) == expected
