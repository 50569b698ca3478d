"""``data build``: run a route's models over a task suite and label every answer.

For every item it records the tier-0 answer (``greedy``), ``samples`` sampled answers from the
route's best-of-n tier (``sampled-<k>``) and, for factual families when the route retrieves, the
tier-0 answer with retrieved context (``retrieval``): every kind of candidate the gateway will
verify. Rows are appended as they finish, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from service.backends.base import Backend
from service.backends.factory import make_backend
from service.config import RouteSettings, Settings, TierSettings
from service.core.generation import GenerationRequest, Message, SamplingParams
from service.retrieval.base import Retriever
from service.retrieval.context import format_context
from service.retrieval.corpus import make_retriever
from service.training.records import ROWS_FILE, AnswerRecord, iter_ids
from service.training.suites import families_of_kind, get_suite
from service.training.suites.base import TaskItem

DEFAULT_MAX_TOKENS = 48


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """What to generate."""

    suite: str
    limit: int | None = None
    seed: int = 0
    samples: int = 2
    concurrency: int = 16
    retrieval: bool = True
    show_progress: bool = True


@dataclass(frozen=True, slots=True)
class Job:
    """One generation to run for one item."""

    item: TaskItem
    variant: str
    backend: Backend
    tier: TierSettings
    n: int
    retrieved: bool

    def record_ids(self) -> list[str]:
        """The ids of the rows this job writes."""
        if self.variant != "sampled":
            return [f"{self.item.id}#{self.variant}"]
        return [f"{self.item.id}#sampled-{k}" for k in range(self.n)]


def _params(tier: TierSettings, n: int, seed: int) -> SamplingParams:
    return SamplingParams(
        max_tokens=tier.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=0.0 if tier.temperature is None else tier.temperature,
        top_p=tier.top_p or 1.0,
        n=n,
        seed=seed,
        logprobs=True,
    )


def plan_jobs(
    items: Sequence[TaskItem],
    route: RouteSettings,
    backends: dict[str, Backend],
    options: BuildOptions,
    done: set[str],
) -> list[Job]:
    """Jobs for every item and variant not yet in the output."""
    first = route.tiers[0]
    sampled = next((tier for tier in route.tiers if tier.n > 1), None)
    factual = set(families_of_kind("factual"))
    jobs: list[Job] = []
    for item in items:
        candidates = [Job(item, "greedy", backends[first.backend], first, 1, False)]
        if sampled is not None and options.samples > 0:
            n = min(options.samples, sampled.n)
            candidates.append(Job(item, "sampled", backends[sampled.backend], sampled, n, False))
        if options.retrieval and route.retrieval and item.family in factual:
            candidates.append(Job(item, "retrieval", backends[first.backend], first, 1, True))
        jobs.extend(job for job in candidates if not set(job.record_ids()) <= done)
    return jobs


class DatasetBuilder:
    """Runs jobs concurrently (the local backend batches them) and appends labelled rows."""

    def __init__(self, retriever: Retriever | None, seed: int) -> None:
        self._retriever = retriever
        self._seed = seed

    async def run_job(self, job: Job) -> list[AnswerRecord]:
        """Generate, check and label one job's answers."""
        messages: tuple[Message, ...] = (Message("user", job.item.prompt),)
        if job.retrieved and self._retriever is not None:
            passages = await self._retriever.retrieve(job.item.retrieval_key or job.item.prompt, 3)
            context = format_context(passages)
            if context:
                messages = (Message("user", f"{context}\n\n{job.item.prompt}"),)
        seed = self._seed + sum(map(ord, job.item.id))
        request = GenerationRequest(messages, None, _params(job.tier, job.n, seed))
        generation = await job.backend.generate(request)
        records = []
        for record_id, candidate in zip(job.record_ids(), generation.candidates, strict=False):
            result = job.item.check(candidate.text)
            records.append(
                AnswerRecord(
                    id=record_id,
                    item_id=job.item.id,
                    group_id=job.item.group_id,
                    family=job.item.family,
                    variant=record_id.split("#", 1)[1],
                    question=job.item.prompt,
                    messages=messages,
                    response=candidate.text,
                    token_logprobs=candidate.token_logprobs,
                    label=int(result.correct),
                    check=str(result.outcome),
                    answer=job.item.answer,
                    model=job.backend.name,
                )
            )
        return records


async def _run_all(
    jobs: Sequence[Job], builder: DatasetBuilder, output: TextIO, options: BuildOptions
) -> int:
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
    retriever = None
    if options.retrieval and route.retrieval and settings.retrieval is not None:
        retriever = make_retriever(settings.retrieval)
    out.mkdir(parents=True, exist_ok=True)
    rows = out / ROWS_FILE
    done = set(iter_ids(rows))
    items = get_suite(options.suite).generate(seed=options.seed, limit=options.limit)
    jobs = plan_jobs(items, route, backends, options, done)
    for backend in backends.values():
        await backend.start()
    if retriever is not None:
        await retriever.start()
    try:
        with rows.open("a", encoding="utf-8") as output:
            return await _run_all(jobs, DatasetBuilder(retriever, options.seed), output, options)
    finally:
        if retriever is not None:
            await retriever.close()
        for backend in backends.values():
            await backend.close()
