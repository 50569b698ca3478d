"""Test doubles implementing the gateway's protocols (no MagicMock).

``FakeVerifier`` judges answers by their text, mirroring the fake upstream's two answers:
"I am not sure." is predicted incorrect with no calibrated region; an answer containing
"ood" is out of distribution; everything else is verified at alpha 0.97 (lower 0.96).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sdm_router.core.decisions import LabelAgreement, LabelledAnswer, LabelWrite
from sdm_router.core.generation import (
    Candidate,
    FinishReason,
    Generation,
    GenerationRequest,
    Param,
    StreamDelta,
    ToolCall,
    Usage,
    tool_call_pieces,
)
from sdm_router.core.verdict import NearestExemplar, Verdict, VerificationInput, VerifierInfo
from sdm_router.retrieval.base import Passage


class FakeVerifier:
    """Verdicts from the answer text; records every item it was asked about."""

    def __init__(self) -> None:
        self.seen: list[VerificationInput] = []
        self.started = False
        self.artifact_id = "fake-artifact"
        self.pinned_by: list[str] = []  # the artifact each verify call named
        # Shadow mode: with ``shadow_id`` set, the candidate accepts exactly what the live
        # verdict rejects (so tests see disagreement), judged on the same verdicts.
        self.shadow_id: str | None = None
        # what the artifact records it was calibrated on (None: covers every model); an
        # artifact_id of "none" plays a verifier with no artifact loaded
        self.calibrated_on: frozenset[str] | None = None

    @property
    def info(self) -> VerifierInfo:
        return VerifierInfo(
            artifact_id=self.artifact_id, device="cpu", description="fake",
            calibrated_on=self.calibrated_on,
        )  # fmt: skip

    @contextmanager
    def pinned(self) -> Iterator[str]:
        yield self.artifact_id

    async def reload(self, artifact: Path | None = None) -> VerifierInfo:
        """A path whose name contains "corrupt" is refused; any other becomes the artifact id."""
        from sdm_router.verifier.protocol import ReloadRefused

        if artifact is not None and "corrupt" in artifact.name:
            raise ReloadRefused(f"cannot load {artifact}: checksum mismatch")
        self.artifact_id = artifact.stem if artifact is not None else "fake-artifact"
        return self.info

    async def shadow(self, verdict: Verdict) -> Verdict | None:
        if self.shadow_id is None:
            return None
        flipped = 1 - verdict.prediction
        alpha = 0.99 if flipped == 1 else 0.0
        return Verdict(
            flipped, 0.9, alpha, alpha, q=verdict.q, d=verdict.d, q_prime=verdict.q_prime,
            is_ood=False,
        )  # fmt: skip

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def verify(
        self,
        items: Sequence[VerificationInput],
        *,
        nearest_exemplars: int = 0,
        artifact: str | None = None,
    ) -> list[Verdict]:
        self.seen.extend(items)
        self.pinned_by.append(artifact or self.artifact_id)
        return [self._judge(item.response, nearest_exemplars) for item in items]

    @staticmethod
    def _judge(response: str, nearest_exemplars: int) -> Verdict:
        exemplars = tuple(  # support-1 carries text, as an artifact built with it does
            NearestExemplar(
                id=f"support-{i}", label=1, distance=0.5 + i,
                text="Q: What is six times seven?\nA: 42" if i == 1 else None,
            )
            for i in range(nearest_exemplars)
        )  # fmt: skip
        if "ood" in response.lower():
            return Verdict(
                0, 0.5, 0.0, 0.0, q=0, d=0.0, q_prime=0.0, is_ood=True, nearest_exemplars=exemplars
            )
        if "not sure" in response.lower():
            return Verdict(
                0, 0.9, 0.0, 0.0, q=3, d=0.4, q_prime=2.0, is_ood=False, nearest_exemplars=exemplars
            )
        return Verdict(
            1,
            0.99,
            0.97,
            0.96,
            q=50,
            d=0.8,
            q_prime=40.0,
            is_ood=False,
            nearest_exemplars=exemplars,
        )


class FakeRetriever:
    """Returns one fixed passage for every query and records the queries."""

    def __init__(self, passages: Sequence[Passage] | None = None) -> None:
        self.queries: list[str] = []
        self._passages = (
            list(passages)
            if passages is not None
            else [Passage(id="fact-1", text="The answer to hard questions is 42.", score=0.9)]
        )

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def retrieve(self, query: str, top_k: int) -> list[Passage]:
        self.queries.append(query)
        return self._passages[:top_k]


class FakeBackend:
    """An in-process backend that answers from a script and records every request."""

    def __init__(
        self,
        name: str,
        answers: Sequence[str],
        *,
        error: Exception | None = None,
        capabilities: frozenset[Param] = frozenset(Param),
        tool_calls: Sequence[ToolCall] = (),
    ) -> None:
        self._name = name
        self._answers = list(answers)
        self._error = error
        self._capabilities = capabilities
        self._tool_calls = tuple(tool_calls)
        self.requests: list[GenerationRequest] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> frozenset[Param]:
        return self._capabilities

    @property
    def device(self) -> str:
        return "cpu"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        if self._error is not None:
            raise self._error
        texts = [self._answers[i % len(self._answers)] for i in range(request.params.n)]
        finish: FinishReason = "tool_calls" if self._tool_calls else "stop"
        return Generation(
            model=self._name,
            candidates=tuple(
                Candidate(text=text, finish_reason=finish, tool_calls=self._tool_calls)
                for text in texts
            ),
            usage=Usage(prompt_tokens=5, completion_tokens=3),
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        generation = await self.generate(request)
        candidate = generation.candidates[0]
        if candidate.text:
            for word in candidate.text.split(" "):
                yield StreamDelta(index=0, text=word + " ")
        if candidate.tool_calls:
            yield StreamDelta(index=0, text="", tool_calls=tool_call_pieces(candidate.tool_calls))
        yield StreamDelta(
            index=0, text="", finish_reason=candidate.finish_reason, usage=generation.usage
        )


class FakeLabelSink:
    """Records the labels it is given (the decision store's ``submit_label``)."""

    def __init__(self) -> None:
        self.labels: list[tuple[str, str, str, float | None, str | None]] = []

    def submit_label(self, label: LabelWrite) -> None:
        self.labels.append((label.request_id, label.label, label.source, label.logprob, label.note))


class FakeLabelingObserver:
    """Counts labelling events and labels (``GatewayMetrics``' labelling side)."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.given: list[tuple[str, str]] = []
        self.depth = 0

    def labeling_event(self, event: str) -> None:
        self.events.append(event)

    def labeling_queue(self, depth: int) -> None:
        self.depth = depth

    def label_given(self, kind: str, label: str) -> None:
        self.given.append((kind, label))


class FakeLabelReader:
    """Serves labelled answers from a list (the decision store's reads), filtered like it."""

    def __init__(self, answers: Sequence[LabelledAnswer] = ()) -> None:
        self.answers = list(answers)
        self.agreements: list[LabelAgreement] = []

    async def labelled(
        self,
        *,
        route: str | None = None,
        artifact_id: str | None = None,
        decision: Collection[str] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[LabelledAnswer]:
        kept = [
            answer
            for answer in self.answers
            if (route is None or answer.route == route)
            and (artifact_id is None or answer.artifact_id == artifact_id)
            and (decision is None or answer.decision in decision)
        ]
        kept.sort(key=lambda answer: answer.created, reverse=newest_first)
        return kept if limit is None else kept[:limit]

    async def agreement(self) -> list[LabelAgreement]:
        return list(self.agreements)
