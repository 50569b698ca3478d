"""``data build``: run a route's models over a task suite and label every answer.

Every item is put to the model as a conversation in its drawn prompt style (system prompt,
earlier turn, answer-format instruction; see ``suites.base``). For every item the build
records the tier-0 answer (``greedy``), ``samples`` sampled answers from the route's
best-of-n tier (``sampled-<k>``) and, when the route retrieves, the tier-0 answer with
retrieved context (``retrieval``): every kind of candidate the gateway will verify.

Requests go through the serving code path: the route becomes the same ``RoutePlan`` the
gateway runs (``route_plan``), each tier's request is built by the cascade's own
``tier_request``, and retrieval searches the user's last turn (``question_text``) with the
configured ``retrieval.top_k`` and adds the context with ``with_context``, as
``Cascade._retrieve`` does; when nothing is retrieved the gateway does not regenerate, so
the build writes no ``retrieval`` row. Rows are appended as they finish, so an interrupted
build resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from sdm_router.backends.factory import make_backend
from sdm_router.config import Settings
from sdm_router.core.generation import GenerationRequest, SamplingParams
from sdm_router.pipeline.cascade import tier_request
from sdm_router.pipeline.plan import RoutePlan, Tier, route_plan
from sdm_router.retrieval.base import Retriever
from sdm_router.retrieval.context import format_context
from sdm_router.retrieval.corpus import make_retriever
from sdm_router.training.records import ROWS_FILE, AnswerRecord, iter_ids
from sdm_router.training.suites import get_suite
from sdm_router.training.suites.base import TaskItem

# The client's max_tokens when no tier sets one (a tier's own max_tokens always applies).
DEFAULT_MAX_TOKENS = 48


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """What to generate. ``styled``: put items in their drawn prompt styles (else every item
    is the bare question as one user turn)."""

    suite: str
    limit: int | None = None
    seed: int = 0
    samples: int = 2
    concurrency: int = 16
    retrieval: bool = True
    styled: bool = True
    show_progress: bool = True


@dataclass(frozen=True, slots=True)
class Job:
    """One generation to run for one item."""

    item: TaskItem
    variant: str
    tier: Tier
    n: int
    retrieved: bool

    def record_ids(self) -> list[str]:
        """The ids of the rows this job writes."""
        if self.variant != "sampled":
            return [f"{self.item.id}#{self.variant}"]
        return [f"{self.item.id}#sampled-{k}" for k in range(self.n)]


def plan_jobs(
    items: Sequence[TaskItem], plan: RoutePlan, options: BuildOptions, done: set[str]
) -> list[Job]:
    """Jobs for every item and variant not yet in the output.

    A ``retrieval`` job is planned for every item when the route retrieves, whatever its
    family: the gateway retrieves for any question its policy sends there.
    """
    first = plan.tiers[0]
    sampled = next((tier for tier in plan.tiers if tier.n > 1), None)
    jobs: list[Job] = []
    for item in items:
        candidates = [Job(item, "greedy", first, 1, False)]
        if sampled is not None and options.samples > 0:
            candidates.append(Job(item, "sampled", sampled, min(options.samples, sampled.n), False))
        if options.retrieval and plan.retrieval:
            candidates.append(Job(item, "retrieval", first, 1, True))
        jobs.extend(job for job in candidates if not set(job.record_ids()) <= done)
    return jobs


def client_max_tokens(plan: RoutePlan) -> int:
    """The ``max_tokens`` the build's client asks for: the largest any tier sets (so that
    ``tier_request`` leaves each tier its own), else ``DEFAULT_MAX_TOKENS``."""
    limits = [tier.max_tokens for tier in plan.tiers if tier.max_tokens is not None]
    return max(limits, default=DEFAULT_MAX_TOKENS)


class DatasetBuilder:
    """Runs jobs concurrently (the local backend batches them) and appends labelled rows."""

    def __init__(self, plan: RoutePlan, retriever: Retriever | None, seed: int) -> None:
        self._plan = plan
        self._retriever = retriever
        self._seed = seed

    def client_request(self, item: TaskItem) -> GenerationRequest:
        """The request a client would send for ``item``: its conversation, greedy unless a
        tier sets a temperature, logprobs on, a seed fixed by the item's id."""
        seed = self._seed + sum(map(ord, item.id))
        params = SamplingParams(
            max_tokens=client_max_tokens(self._plan), temperature=0.0, seed=seed, logprobs=True
        )
        return GenerationRequest(item.messages, None, params)

    async def with_retrieved_context(self, request: GenerationRequest) -> GenerationRequest | None:
        """``request`` with retrieved context, as ``Cascade._retrieve`` builds it: search the
        user's last turn with the route's ``retrieval_top_k``; None when nothing is found."""
        if self._retriever is None:
            return None
        passages = await self._retriever.retrieve(request.question_text, self._plan.retrieval_top_k)
        if not passages:
            return None
        return request.with_context(format_context(passages))

    async def run_job(self, job: Job) -> list[AnswerRecord]:
        """Generate, check and label one job's answers (none for a retrieval job that
        retrieved nothing)."""
        request = self.client_request(job.item)
        if job.retrieved:
            augmented = await self.with_retrieved_context(request)
            if augmented is None:
                return []
            request = augmented
        tiered = tier_request(self._plan, job.tier, request, job.n)
        generation = await job.tier.backend.generate(tiered)
        messages = tiered.text_conversation
        records = []
        for record_id, candidate in zip(job.record_ids(), generation.candidates, strict=False):
            response = candidate.verification_text
            result = job.item.check(response)
            records.append(
                AnswerRecord(
                    id=record_id,
                    item_id=job.item.id,
                    group_id=job.item.group_id,
                    family=job.item.family,
                    variant=record_id.split("#", 1)[1],
                    question=job.item.prompt,
                    messages=messages,
                    response=response,
                    token_logprobs=candidate.token_logprobs,
                    label=int(result.correct),
                    check=str(result.outcome),
                    answer=job.item.answer,
                    model=job.tier.model or job.tier.backend.name,
                )
            )
        return records


async def run_jobs(
    jobs: Sequence[Job], builder: DatasetBuilder, output: TextIO, options: BuildOptions
) -> int:
    """Run ``jobs`` at most ``options.concurrency`` at a time, appending rows to ``output``."""
    semaphore = asyncio.Semaphore(options.concurrency)
    bar = tqdm(total=len(jobs), desc="generate", unit="job", disable=not options.show_progress)
    written = 0

    async def one(job: Job) -> None:
        nonlocal written
        async with semaphore:
            records = await builder.run_job(job)
        for record in records:
            output.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        output.flush()
        written += len(records)
        bar.update(1)

    await asyncio.gather(*(one(job) for job in jobs))
    bar.close()
    return written


async def build_dataset(
    settings: Settings, route_name: str, out: Path, options: BuildOptions
) -> int:
    """Label answers for ``options.suite`` into ``out/rows.jsonl``; returns rows written."""
    route = settings.routes[route_name]
    names = sorted({tier.backend for tier in route.tiers})
    backends = {name: make_backend(name, settings.backends[name]) for name in names}
    plan = route_plan(settings, route_name, backends)
    retriever = None
    if options.retrieval and plan.retrieval and settings.retrieval is not None:
        retriever = make_retriever(settings.retrieval)
    out.mkdir(parents=True, exist_ok=True)
    rows = out / ROWS_FILE
    done = set(iter_ids(rows))
    items = get_suite(options.suite).generate(
        seed=options.seed, limit=options.limit, styled=options.styled
    )
    jobs = plan_jobs(items, plan, options, done)
    for backend in backends.values():
        await backend.start()
    if retriever is not None:
        await retriever.start()
    try:
        with rows.open("a", encoding="utf-8") as output:
            return await run_jobs(
                jobs, DatasetBuilder(plan, retriever, options.seed), output, options
            )
    finally:
        if retriever is not None:
            await retriever.close()
        for backend in backends.values():
            await backend.close()
