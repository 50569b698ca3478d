"""The judge's rubric and the labeller: reading replies, the budget, retries, drops, the
reference kind. (The labeller against a real HTTP judge: tests/integration/test_labeling.py.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from sdm_router.config import LabelingSettings
from sdm_router.core.decisions import AttemptRecord, DecisionRecord
from sdm_router.core.errors import UpstreamError
from sdm_router.core.generation import Message, TokenLogprob
from sdm_router.pipeline.labeling import CallBudget, Labeler
from sdm_router.pipeline.plan import RoutePlan, Tier
from sdm_router.pipeline.rubric import judge_messages, read_reply
from tests.fakes import FakeBackend, FakeLabelingObserver, FakeLabelSink
from tests.support.plans import plan

QUESTION = (Message("user", "What is the capital of France?"),)


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("correct", "correct"),
        ("Incorrect. Paris is the capital.", "incorrect"),
        ("  **CORRECT** - it says Paris", "correct"),
        ('"incorrect"', "incorrect"),
        ("correctly answered", None),  # not the word
        ("The answer is correct.", None),  # does not begin with it
        ("", None),
        ("I cannot tell.", None),
    ],
)
def test_the_reply_must_begin_with_the_word(reply: str, label: str | None) -> None:
    assert read_reply(reply).label == label


def test_the_logprob_of_the_verdict_word_is_the_sum_over_its_tokens() -> None:
    tokens = (
        TokenLogprob(" inc", -0.25),
        TokenLogprob("orrect", -0.5),
        TokenLogprob(".", -1.0),
    )
    reply = read_reply(" incorrect.", tokens)
    assert (reply.label, reply.logprob) == ("incorrect", -0.75)
    assert read_reply("incorrect.", tokens).logprob is None  # tokens that do not spell it
    assert read_reply("correct").logprob is None  # no logprobs returned


def test_the_prompt_carries_the_transcript_the_answer_and_the_reference() -> None:
    system, user = judge_messages(QUESTION, "Lyon", reference="Paris")
    assert system.role == "system" and "correct or incorrect" in system.content
    assert "user: What is the capital of France?" in user.content
    assert "Answer to grade:\nLyon" in user.content
    assert "Reference answer:\nParis" in user.content
    assert "Reference answer" not in judge_messages(QUESTION, "Lyon")[1].content


async def test_the_budget_allows_so_many_calls_a_minute() -> None:
    now = [0.0]
    budget = CallBudget(3, clock=lambda: now[0])
    assert [budget.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.try_acquire() == pytest.approx(60.0)
    now[0] = 30.0
    assert budget.try_acquire() == pytest.approx(30.0)
    now[0] = 60.0
    assert budget.try_acquire() == 0.0


def record(request_id: str, tier: int = 0, decision: str = "accept") -> DecisionRecord:
    attempt = AttemptRecord(
        tier=tier, model="small", action=decision, reason="verified", prediction=1, q=1, d=0.1,
        region_alpha=0.97, region_alpha_lower=0.96, latency_ms=1.0, retrieved_context=False,
    )  # fmt: skip
    return DecisionRecord(
        request_id=request_id, response_id=None, created=time.time(), route="route",
        requested_model="route", decision=decision, reason="verified", artifact_id="a",
        prompt_tokens=1, completion_tokens=1, key_name=None, attempts=(attempt,),
        conversation=QUESTION, answer="Paris",
    )  # fmt: skip


def labeler(
    judge: FakeBackend, sink: FakeLabelSink, observer: FakeLabelingObserver, **settings: object
) -> Labeler:
    config = LabelingSettings.model_validate({"judge": judge.name, **settings})
    return Labeler(config, judge, sink, observer, seed=0, retry_pauses=(0.0,))


def route() -> RoutePlan:
    return plan(Tier(FakeBackend("small", ["Paris"])), Tier(FakeBackend("large", ["Paris."])))


async def settle(worker: Labeler) -> None:
    await asyncio.wait_for(worker.idle(), 5)


async def test_a_sampled_answer_is_labelled_with_its_source_and_logprob() -> None:
    sink, observer = FakeLabelSink(), FakeLabelingObserver()
    worker = labeler(FakeBackend("grader", ["correct, Paris"]), sink, observer, sample_rate=1.0)
    await worker.start()
    try:
        assert worker.wants(record("r1"))
        worker.submit(record("r1"), route())
        await settle(worker)
    finally:
        await worker.close()
    assert sink.labels == [("r1", "correct", "judge:grader", None, "correct, Paris")]
    assert observer.events == ["sampled", "labelled"]
    assert observer.given == [("judge", "correct")]


def test_sampling_follows_the_rate_and_the_decisions() -> None:
    sink, observer = FakeLabelSink(), FakeLabelingObserver()
    worker = labeler(FakeBackend("grader", ["correct"]), sink, observer, sample_rate=0.25)
    wanted = sum(worker.wants(record(f"r{i}")) for i in range(4000))
    assert 850 < wanted < 1150  # 1000 expected
    assert not worker.wants(record("x", decision="unverified"))  # not among the decisions


async def test_a_failing_judge_is_retried_then_the_answer_is_dropped() -> None:
    sink, observer = FakeLabelSink(), FakeLabelingObserver()
    judge = FakeBackend("grader", [], error=UpstreamError("judge down"))
    worker = labeler(judge, sink, observer, sample_rate=1.0, max_attempts=3)
    await worker.start()
    try:
        worker.submit(record("r1"), route())
        await settle(worker)
    finally:
        await worker.close()
    assert len(judge.requests) == 3
    assert observer.events == ["sampled", "judge_error", "judge_error", "judge_error",
                               "dropped_failed"]  # fmt: skip
    assert sink.labels == []


async def test_an_unusable_reply_is_counted_and_is_no_label() -> None:
    sink, observer = FakeLabelSink(), FakeLabelingObserver()
    worker = labeler(FakeBackend("grader", ["Maybe."]), sink, observer, sample_rate=1.0)
    await worker.start()
    try:
        worker.submit(record("r1"), route())
        await settle(worker)
    finally:
        await worker.close()
    assert observer.events == ["sampled", "unusable"] and sink.labels == []


async def test_a_full_queue_drops_and_never_blocks() -> None:
    sink, observer = FakeLabelSink(), FakeLabelingObserver()
    worker = labeler(FakeBackend("grader", ["correct"]), sink, observer, queue_size=2)
    await worker.start()
    for index in range(5):  # submitted before any worker runs: the queue takes two
        worker.submit(record(f"r{index}"), route())
    await worker.close()
    assert observer.events.count("sampled") == 2
    assert observer.events.count("dropped_full") == 3
    assert observer.events.count("dropped_shutdown") == 2


async def test_the_reference_kind_asks_the_strongest_tier_then_the_judge_compares() -> None:
    sink, observer = FakeLabelSink(), FakeLabelingObserver()
    judge = FakeBackend("grader", ["incorrect: the reference says Paris."])
    worker = labeler(judge, sink, observer, sample_rate=1.0, kind="reference")
    plan_ = route()
    strongest = plan_.tiers[1].backend
    assert isinstance(strongest, FakeBackend)
    await worker.start()
    try:
        worker.submit(record("from-tier-0", tier=0), plan_)
        worker.submit(record("from-tier-1", tier=1), plan_)
        await settle(worker)
    finally:
        await worker.close()
    assert len(strongest.requests) == 1  # only the weaker tier's answer needs a reference
    prompts = [request.messages[-1].content for request in judge.requests if request.messages]
    assert sum("Reference answer:\nParis." in prompt for prompt in prompts) == 1
    sources = {request_id: source for request_id, _, source, _, _ in sink.labels}
    assert sources == {"from-tier-0": "reference:grader", "from-tier-1": "judge:grader"}
