"""Labels without a person: a judge model labels a sample of the served answers, off the
request path.

``GenerationServing`` asks ``wants(record)`` for every decision it records (a coin flip at
``labeling.sample_rate`` over the decisions ``labeling.decisions`` names; the text of a sampled
record is then kept whatever ``storage.keep_text`` says) and hands the sampled ones to
``submit``, which never blocks: a bounded queue, a full one drops (counted). Worker tasks take
answers from it within the judge's budget (``calls_per_minute``), ask the judge (the rubric in
``rubric.py``; for ``kind: reference`` the route's strongest tier answers first), retry a
failed judge call with backoff up to ``max_attempts`` and hand the label to the decision store's
writer (written with its next batch, after the decision) with its source (``judge:<backend>``
or ``reference:<backend>``, the judge's backend) and the judge's logprob. A judge outage costs
no request: it only fills the queue.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sdm_router.backends.base import Backend
from sdm_router.config import LabelingSettings
from sdm_router.core.decisions import DecisionRecord, LabelKind, LabelWrite, label_source
from sdm_router.core.errors import GatewayError, UpstreamError
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.rubric import JudgeReply, judge_messages, read_reply

logger = logging.getLogger(__name__)
RETRY_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 16.0)
MINUTE_S = 60.0
REFERENCE_MAX_TOKENS = 256


class LabelSink(Protocol):
    """Where labels go (``storage.DecisionStore``)."""

    def submit_label(self, label: LabelWrite) -> None:
        """Queue a label for writing after the decision it labels; never blocks."""


class LabelingObserver(Protocol):
    """Counts what happens to sampled answers (``GatewayMetrics`` implements it)."""

    def labeling_event(self, event: str) -> None:
        """``sampled``, ``labelled``, ``unusable``, ``judge_error``, ``dropped_full``,
        ``dropped_failed`` or ``dropped_shutdown``."""

    def labeling_queue(self, depth: int) -> None:
        """Answers waiting for the judge."""

    def label_given(self, kind: str, label: str) -> None:
        """A label of ``kind`` (human, judge, reference) was recorded."""


@dataclass(frozen=True, slots=True)
class LabelJob:
    """One answer to label: the conversation, the served answer, which tier answered."""

    request_id: str
    conversation: tuple[Message, ...]
    answer: str
    tier: int
    plan: RoutePlan


class CallBudget:
    """At most ``per_minute`` calls in any 60 s; ``acquire`` waits for a free slot."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._calls: deque[float] = deque()

    def try_acquire(self) -> float:
        """Take a slot now (returns 0), or return how long to wait for one."""
        now = self._clock()
        while self._calls and self._calls[0] <= now - MINUTE_S:
            self._calls.popleft()
        if len(self._calls) < self._limit:
            self._calls.append(now)
            return 0.0
        return self._calls[0] + MINUTE_S - now

    async def acquire(self) -> None:
        """Wait until a call fits the budget, and take it."""
        while (wait := self.try_acquire()) > 0:
            await asyncio.sleep(wait)


class Labeler:
    """Samples served answers and has the judge label them (see the module)."""

    def __init__(
        self,
        settings: LabelingSettings,
        judge: Backend,
        sink: LabelSink,
        observer: LabelingObserver,
        *,
        seed: int | None = None,
        retry_pauses: tuple[float, ...] = RETRY_PAUSES_S,
    ) -> None:
        self._settings = settings
        self._judge = judge
        self._sink = sink
        self._observer = observer
        self._random = random.Random(seed)
        self._pauses = retry_pauses
        self._decisions = frozenset(settings.decisions)
        self._queue: asyncio.Queue[LabelJob] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.budget = CallBudget(settings.calls_per_minute)
        self.kind = LabelKind(settings.kind)

    @property
    def status(self) -> dict[str, str]:
        """For /readyz: the judge, the kind, the queue."""
        depth = 0 if self._queue is None else self._queue.qsize()
        return {"judge": self._judge.name, "kind": self.kind.value, "queued": str(depth)}

    def wants(self, record: DecisionRecord) -> bool:
        """Whether to label ``record`` (a coin flip at the sample rate, for the decisions
        configured, when it has an answer). Its text must then be kept."""
        if record.answer is None or record.conversation is None:
            return False
        if record.decision not in self._decisions:
            return False
        return self._random.random() < self._settings.sample_rate

    def submit(self, record: DecisionRecord, plan: RoutePlan) -> None:
        """Queue ``record``'s answer for the judge; never blocks (full: dropped, counted)."""
        if self._queue is None or record.answer is None or record.conversation is None:
            return
        tier = record.attempts[-1].tier if record.attempts else 0
        job = LabelJob(record.request_id, record.conversation, record.answer, tier, plan)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._observer.labeling_event("dropped_full")
            return
        self._observer.labeling_event("sampled")
        self._observer.labeling_queue(self._queue.qsize())

    async def start(self) -> None:
        """Start the workers (on the running loop)."""
        self._queue = asyncio.Queue(self._settings.queue_size)
        self._workers = [
            asyncio.create_task(self._work(), name=f"labeling-{index}")
            for index in range(self._settings.concurrency)
        ]

    async def close(self) -> None:
        """Stop the workers; answers still queued are dropped (counted)."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._queue is not None:
            for _ in range(self._queue.qsize()):
                self._observer.labeling_event("dropped_shutdown")
            self._queue = None

    async def idle(self) -> None:
        """Wait until every queued answer is labelled (or dropped)."""
        if self._queue is not None:
            await self._queue.join()

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            job = await queue.get()
            try:
                await self._label(job)
            except Exception:  # a worker never dies: the next answer is labelled
                logger.exception("labelling request %s failed", job.request_id)
            finally:
                queue.task_done()
                self._observer.labeling_queue(queue.qsize())

    async def _label(self, job: LabelJob) -> None:
        reply = await self._judged(job)
        if reply is None:
            self._observer.labeling_event("dropped_failed")
            return
        if reply.label is None:
            self._observer.labeling_event("unusable")
            logger.info("the judge's reply is unusable", extra={"reply": reply.text[:200]})
            return
        self._sink.submit_label(
            LabelWrite(
                job.request_id,
                reply.label,
                self._source_for(job),
                note=reply.text[:4000],
                logprob=reply.logprob,
            )
        )  # written with the store's next batch, after the decision (queued before)
        self._observer.labeling_event("labelled")
        self._observer.label_given(self._kind_for(job).value, reply.label)

    def _reference_backend(self, job: LabelJob) -> Backend | None:
        """The strongest tier's backend, when the answer came from a weaker tier."""
        if self.kind is not LabelKind.REFERENCE or job.plan.direct:
            return None
        last = len(job.plan.tiers) - 1
        return None if job.tier >= last else job.plan.tiers[last].backend

    def _kind_for(self, job: LabelJob) -> LabelKind:
        # an answer of the strongest tier has no stronger reference: the judge alone labels it
        return LabelKind.REFERENCE if self._reference_backend(job) else LabelKind.JUDGE

    def _source_for(self, job: LabelJob) -> str:
        return label_source(self._kind_for(job), self._judge.name)

    async def _judged(self, job: LabelJob) -> JudgeReply | None:
        """The judge's reply, retried on failure; None when every attempt failed."""
        reference: str | None = None
        reference_backend = self._reference_backend(job)
        for attempt in range(self._settings.max_attempts):
            try:
                if reference_backend is not None and reference is None:
                    reference = await self._ask(reference_backend, job.conversation, None)
                messages = judge_messages(job.conversation, job.answer, reference)
                return await self._ask_judge(messages)
            except GatewayError as error:
                self._observer.labeling_event("judge_error")
                logger.info(
                    "judge call failed (attempt %d): %s", attempt + 1, error,
                    extra={"request": job.request_id},
                )  # fmt: skip
                if attempt + 1 < self._settings.max_attempts:
                    await asyncio.sleep(self._pauses[min(attempt, len(self._pauses) - 1)])
        return None

    async def _ask(
        self, backend: Backend, conversation: tuple[Message, ...], max_tokens: int | None
    ) -> str:
        """One call within the budget: the backend's greedy answer to ``conversation``."""
        await self.budget.acquire()
        params = SamplingParams(
            max_tokens=max_tokens or REFERENCE_MAX_TOKENS, temperature=0.0, logprobs=True
        )
        generation = await backend.generate(GenerationRequest(conversation, None, params))
        if not generation.candidates:
            raise UpstreamError(f"backend {backend.name!r} returned no choices")
        return generation.candidates[0].text

    async def _ask_judge(self, messages: tuple[Message, ...]) -> JudgeReply:
        await self.budget.acquire()
        params = SamplingParams(
            max_tokens=self._settings.max_tokens, temperature=0.0, logprobs=True
        )
        generation = await self._judge.generate(GenerationRequest(messages, None, params))
        if not generation.candidates:
            raise UpstreamError(f"the judge {self._judge.name!r} returned no choices")
        candidate = generation.candidates[0]
        return read_reply(candidate.text, candidate.token_logprobs)
