"""One generated sequence (a "row" of the decoding batch) and what it reports to its request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sdm_router.backends.local.sampling import RowSampler
from sdm_router.backends.local.states import RowRecorder
from sdm_router.backends.local.text import TextTracker
from sdm_router.core.generation import FinishReason, TokenLogprob, TopLogprob
from sdm_router.core.states import CUT_BY_LENGTH, CUT_BY_STOP, RecordedStates

TokenText = Callable[[int], str]


class RowOwner(Protocol):
    """The request a row belongs to. Called from the worker thread only."""

    def cancelled(self) -> bool:
        """Whether the client went away; the row is then dropped at the next step."""
        ...

    def on_progress(self, row: RowState) -> None:
        """The row took one more token (streams emit text here)."""
        ...

    def on_finished(self, row: RowState) -> None:
        """The row has its finish reason."""
        ...

    def on_error(self, error: BaseException) -> None:
        """Decoding failed; the request fails with ``error``."""
        ...


@dataclass(frozen=True, slots=True)
class RowSpec:
    """What to generate for one row: the prompt, limits and sampling."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    sampler: RowSampler
    stop: tuple[str, ...] = ()
    logprobs: bool = True
    top_logprobs: int = 0
    index: int = 0


@dataclass(frozen=True, slots=True)
class Delta:
    """New text and token logprobs of a row since the last delta."""

    text: str
    token_logprobs: tuple[TokenLogprob, ...]


class RowState:
    """The decoding state of one row; mutated by the worker thread only."""

    def __init__(
        self,
        spec: RowSpec,
        owner: RowOwner,
        tracker: TextTracker,
        eos_ids: frozenset[int],
        token_text: TokenText,
        recorder: RowRecorder | None = None,
    ) -> None:
        """``recorder``: records this row's layer states during decoding (None: nothing)."""
        self.spec = spec
        self.recorder = recorder
        self.feeding_last = False  # finished, kept one step to record its last token's states
        self.owner = owner
        self.tracker = tracker
        self._eos_ids = eos_ids
        self._token_text = token_text
        self.token_ids: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self._starts: list[int] = []
        self.finish_reason: FinishReason | None = None
        self._sent_chars = 0
        self._sent_tokens = 0

    @property
    def finished(self) -> bool:
        """Whether the row has a finish reason."""
        return self.finish_reason is not None

    def accept(
        self, token_id: int, logprob: float, top_ids: Sequence[int], top_values: Sequence[float]
    ) -> None:
        """Append the sampled token and decide whether the row is finished."""
        self.token_ids.append(token_id)
        if token_id in self._eos_ids:
            self.finish_reason = "stop"
            return
        start = len(self.tracker.text)
        piece = self.tracker.push(token_id)
        if self.spec.logprobs:
            top = tuple(
                TopLogprob(self._token_text(alt), value)
                for alt, value in zip(top_ids[: self.spec.top_logprobs], top_values, strict=False)
            )
            self.logprobs.append(TokenLogprob(piece, logprob, top))
            self._starts.append(start)
        if self.tracker.stopped:
            self.finish_reason = "stop"
        elif len(self.token_ids) >= self.spec.max_new_tokens:
            self.finish_reason = "length"

    @property
    def text(self) -> str:
        """The answer so far (without any stop string)."""
        return self.tracker.final_text

    def recorded_states(self) -> RecordedStates | None:
        """The layer states recorded for the finished answer (None without a recorder); their
        ``missing`` says why they do not cover the answer's text (a stop string cut it inside
        the tokens, or its last token was never fed back)."""
        if self.recorder is None:
            return None
        ids = self.token_ids
        answer = ids[:-1] if ids and ids[-1] in self._eos_ids else ids
        missing = None
        if self.tracker.stopped:
            missing = CUT_BY_STOP
        elif self.recorder.fed < len(answer):  # cancelled before its last token was fed
            missing = CUT_BY_LENGTH
        return self.recorder.result(self.spec.prompt_ids, answer, missing)

    def kept_logprobs(self) -> tuple[TokenLogprob, ...]:
        """Token logprobs of the answer: those starting before a stop string, when one cut it."""
        cut = self.tracker.stop_at
        if cut is None:
            return tuple(self.logprobs)
        pairs = zip(self.logprobs, self._starts, strict=True)
        return tuple(logprob for logprob, start in pairs if start < cut)

    def take_delta(self) -> Delta:
        """Text and logprobs not yet streamed that are safe to stream now."""
        if self.finished:
            limit = len(self.text)
            tokens = self.kept_logprobs()[self._sent_tokens :]
        else:
            limit = self.tracker.safe_length()
            ready = self._sent_tokens
            while ready < len(self.logprobs) and (
                self._starts[ready] + len(self.logprobs[ready].token) <= limit
            ):
                ready += 1
            tokens = tuple(self.logprobs[self._sent_tokens : ready])
        text = self.tracker.text[self._sent_chars : max(limit, self._sent_chars)]
        self._sent_chars = max(limit, self._sent_chars)
        self._sent_tokens += len(tokens)
        return Delta(text, tokens)
