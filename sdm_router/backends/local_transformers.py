"""A Backend that generates in-process with a transformers causal LM (the embedded SmolLM2).

One worker thread owns the model and decodes micro-batches of rows (a request with ``n`` > 1 is
``n`` rows); the event loop only tokenizes prompts (in a thread), queues rows and awaits
futures. Cancelling the awaiting task drops the request's rows at the next decoding step.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from functools import lru_cache, partial
from typing import Any, TypeVar

from sdm_router.backends.local.decoding import BatchDecoder, DecodeStats
from sdm_router.backends.local.job import Job
from sdm_router.backends.local.rows import RowSpec, RowState
from sdm_router.backends.local.sampling import make_sampler
from sdm_router.backends.local.states import LayerTap, RowRecorder
from sdm_router.backends.local.text import TextTracker
from sdm_router.backends.local.worker import BatchingWorker
from sdm_router.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    NoHealthyBackend,
    Overloaded,
    UpstreamError,
)
from sdm_router.core.generation import (
    Candidate,
    Generation,
    GenerationRequest,
    Param,
    SamplingParams,
    StreamDelta,
    Usage,
)
from sdm_router.models.causal_lm import (
    EMBEDDED_NAME,
    LoadedCausalLM,
    chat_messages,
    load_causal_lm,
    resolve_device,
)

T = TypeVar("T")

# Besides the core sampling parameters (max_tokens, temperature, top_p, n, logprobs,
# top_logprobs), the decoder honours a seed (one CPU generator per row: seed + row index) and
# stop sequences (TextTracker). No tools, response_format, penalties or logit_bias.
LOCAL_CAPABILITIES: frozenset[Param] = frozenset({Param.SEED, Param.STOP})


class LocalTransformersBackend:
    """Generates with a local causal LM on CPU or CUDA, batching concurrent requests.

    Give either ``loaded`` (weights shared with e.g. the verifier's encoder) or ``source``
    (``None``/``"embedded"``, a ``.gguf`` file or a model folder; loaded in :meth:`start`).
    """

    def __init__(
        self,
        name: str = EMBEDDED_NAME,
        *,
        source: str | os.PathLike[str] | None = None,
        loaded: LoadedCausalLM | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_size: int = 8,
        max_wait_ms: float = 5.0,
        max_new_tokens: int = 512,
        max_queued_rows: int = 256,
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if max_new_tokens < 1 or max_queued_rows < 1 or max_batch_size < 1:
            raise ValueError("max_new_tokens, max_queued_rows and max_batch_size must be >= 1")
        self._name = name
        self._source = source
        self._loaded = loaded
        self._device_setting = device
        self._dtype = dtype
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_new_tokens = max_new_tokens
        self._max_queued_rows = max_queued_rows
        self._cache_dir = cache_dir
        self._threads = threads
        self._worker: BatchingWorker | None = None
        self._decoder: BatchDecoder | None = None
        self._eos_ids: frozenset[int] = frozenset()
        self._context = 0
        self._decode: Callable[[Sequence[int]], str] = str
        self._token_text: Callable[[int], str] = str
        self._tap: LayerTap | None = None
        self._wanted_layers: dict[str, frozenset[int]] = {}

    @property
    def name(self) -> str:
        """The model id clients use."""
        return self._name

    @property
    def capabilities(self) -> frozenset[Param]:
        """``seed`` and ``stop`` (``LOCAL_CAPABILITIES``)."""
        return LOCAL_CAPABILITIES

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda:N`` (resolved from the setting until the model is loaded)."""
        if self._loaded is not None:
            return self._loaded.device_label
        resolved = resolve_device(self._device_setting)
        return "cpu" if resolved.type == "cpu" else f"cuda:{resolved.index or 0}"

    @property
    def loaded(self) -> LoadedCausalLM:
        """The loaded model, to share with an encoder; only after :meth:`start`."""
        if self._loaded is None:
            raise NoHealthyBackend(f"{self._name} is not loaded yet")
        return self._loaded

    @property
    def stats(self) -> DecodeStats:
        """Batches, rows, tokens decoded and rows dropped by cancellation since start."""
        return replace(self._decoder.stats) if self._decoder is not None else DecodeStats()

    @property
    def queued(self) -> int:
        """Rows waiting for a batch (for an in-flight gauge)."""
        return self._worker.queued if self._worker is not None else 0

    def run_on_model(self, forward: Callable[[], T]) -> T:
        """Run ``forward`` on the thread that owns the model, between two decoding steps.

        Blocks the calling thread (never the event loop) until it has run. Every pass on the
        shared weights goes through here, so no two threads ever run the model at once.
        """
        worker = self._worker
        if worker is None:
            raise NoHealthyBackend(f"{self._name} is not running")
        if worker.owns_current_thread():
            return forward()
        return worker.run(forward).result()

    def record_layers(self, consumer: str, layers: frozenset[int]) -> None:
        """Record ``layers`` (decoder layers, 1-based) of every answer generated from now on,
        for ``consumer`` (replacing what it asked before; empty stops). Each candidate then
        carries them (``Candidate.recorded``): the prompt's and the answer's spans, pooled.
        Raises ValueError for a layer the model does not have."""
        self._wanted_layers[consumer] = layers
        tap = self._tap
        if tap is not None:  # hooks change on the model's thread, never during a pass
            self.run_on_model(partial(tap.want, consumer, layers))

    @property
    def recorded_layers(self) -> frozenset[int]:
        """The layers recorded now (empty before :meth:`start` or when none is asked for)."""
        return self._tap.layers if self._tap is not None else frozenset()

    @property
    def ready(self) -> bool:
        """Whether the worker is running."""
        return self._worker is not None and self._worker.alive

    async def start(self) -> None:
        """Load the weights (off the event loop) and start the decoding worker."""
        if self._worker is not None:
            return
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(
                load_causal_lm,
                self._source,
                name=self._name,
                device=self._device_setting,
                dtype=self._dtype,
                cache_dir=self._cache_dir,
                threads=self._threads,
            )
        loaded = self._loaded
        self._eos_ids = eos_token_ids(loaded)
        self._decode = _decoder(loaded)
        self._token_text = _token_text(loaded)
        self._context = int(getattr(loaded.model.config, "max_position_embeddings", 2048))
        pad_id = loaded.tokenizer.pad_token_id
        tap = LayerTap(loaded.model)
        if tap.supported:
            for consumer, layers in self._wanted_layers.items():
                tap.want(consumer, layers)
            self._tap = tap
        decoder = BatchDecoder(
            loaded.model,
            loaded.device,
            pad_id if pad_id is not None else min(self._eos_ids),
            self._tap,
        )
        self._decoder = decoder
        self._worker = BatchingWorker(
            decoder.decode,
            max_batch_size=self._max_batch_size,
            max_wait_s=self._max_wait_s,
            name=f"local-llm-{self._name}",
        )
        self._worker.start()

    async def close(self) -> None:
        """Stop the worker after its current batch; queued requests fail with 503."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.to_thread(worker.stop, 30.0)

    async def generate(self, request: GenerationRequest) -> Generation:
        """Generate ``request.params.n`` candidates in one batch."""
        job, rows = await self._submit(request, stream=False)
        try:
            await job.done
        except asyncio.CancelledError:
            job.cancel()
            raise
        except GatewayError:
            raise
        except Exception as exc:
            raise UpstreamError(f"{self._name} failed: {exc}") from exc
        candidates = tuple(
            Candidate(
                text=row.text,
                finish_reason=row.finish_reason or "stop",
                token_logprobs=row.kept_logprobs() if row.spec.logprobs else None,
                recorded=row.recorded_states(),
            )
            for row in rows
        )
        completion = sum(len(row.token_ids) for row in rows)
        return Generation(self._name, candidates, Usage(job.prompt_tokens, completion))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Stream one candidate; the last delta has ``finish_reason`` and ``usage``."""
        if request.params.n != 1:
            raise InvalidRequest("streaming supports n=1 only", param="n")
        job, _ = await self._submit(request, stream=True)
        assert job.deltas is not None
        try:
            while True:
                item = await job.deltas.get()
                if isinstance(item, GatewayError):
                    raise item
                if isinstance(item, BaseException):
                    raise UpstreamError(f"{self._name} failed: {item}") from item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            job.cancel()  # a no-op after the last delta; stops decoding when the client left

    async def _submit(
        self, request: GenerationRequest, *, stream: bool
    ) -> tuple[Job, list[RowState]]:
        worker, loaded = self._worker, self._loaded
        if worker is None or loaded is None or not worker.alive:
            raise NoHealthyBackend(f"{self._name} is not running")
        params = request.params
        check_params(params)
        if worker.queued + params.n > self._max_queued_rows:
            raise Overloaded(f"{self._name} has {worker.queued} generations queued")
        prompt_ids = await asyncio.to_thread(encode_prompt, loaded, request)
        room = self._context - len(prompt_ids)
        if room < 1:
            raise ContextLengthExceeded(
                f"the prompt has {len(prompt_ids)} tokens; {self._name} takes {self._context}",
                param="messages" if request.messages is not None else "prompt",
            )
        limit = min(max_tokens_of(params), self._max_new_tokens, room)
        job = Job(asyncio.get_running_loop(), params.n, stream=stream)
        job.prompt_tokens = len(prompt_ids)
        rows = [self._row(job, tuple(prompt_ids), limit, request, i) for i in range(params.n)]
        worker.submit(rows)
        return job, rows

    def _row(
        self,
        job: Job,
        prompt_ids: tuple[int, ...],
        limit: int,
        request: GenerationRequest,
        index: int,
    ) -> RowState:
        params = request.params
        seed = None if params.seed is None else params.seed + index
        spec = RowSpec(
            prompt_ids=prompt_ids,
            max_new_tokens=limit,
            sampler=make_sampler(*sampling_of(params), seed),
            stop=params.stop,
            logprobs=params.logprobs,
            top_logprobs=params.top_logprobs if params.logprobs else 0,
            index=index,
        )
        tracker = TextTracker(self._decode, params.stop)
        layers = self._tap.layers if self._tap is not None else frozenset()
        recorder = RowRecorder(layers) if layers else None
        return RowState(spec, job, tracker, self._eos_ids, self._token_text, recorder)


MAX_TOP_LOGPROBS = 20
# the embedded model's defaults for what neither the client nor the route set
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0


def max_tokens_of(params: SamplingParams) -> int:
    """The request's ``max_tokens``, else the embedded default."""
    return DEFAULT_MAX_TOKENS if params.max_tokens is None else params.max_tokens


def sampling_of(params: SamplingParams) -> tuple[float, float]:
    """The request's ``temperature`` and ``top_p``, else the embedded defaults."""
    temperature = DEFAULT_TEMPERATURE if params.temperature is None else params.temperature
    return temperature, DEFAULT_TOP_P if params.top_p is None else params.top_p


def check_params(params: SamplingParams) -> None:
    """Refuse values that would break the batch a request shares with others."""
    if params.n < 1:
        raise InvalidRequest("n must be at least 1", param="n")
    temperature, top_p = sampling_of(params)
    if max_tokens_of(params) < 1:
        raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
    if not temperature >= 0.0:  # also refuses NaN
        raise InvalidRequest("temperature must be >= 0", param="temperature")
    if not 0.0 < top_p <= 1.0:
        raise InvalidRequest("top_p must be in (0, 1]", param="top_p")
    if not 0 <= params.top_logprobs <= MAX_TOP_LOGPROBS:
        message = f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}]"
        raise InvalidRequest(message, param="top_logprobs")


def encode_prompt(loaded: LoadedCausalLM, request: GenerationRequest) -> list[int]:
    """Token ids of the chat (template, generation prompt added) or of the raw prompt."""
    tokenizer = loaded.tokenizer
    with loaded.tokenizer_lock:
        if request.messages is not None:
            text = tokenizer.apply_chat_template(
                chat_messages(request.messages), tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        elif request.prompt is not None:
            ids = tokenizer(request.prompt)["input_ids"]
        else:
            raise InvalidRequest("a request needs messages or a prompt", param="messages")
    if not ids:
        raise InvalidRequest("the prompt is empty", param="prompt")
    return list(ids)


# End-of-turn/text markers of common chat families; ids only count when the vocabulary has them.
END_MARKERS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>")


def eos_token_ids(loaded: LoadedCausalLM) -> frozenset[int]:
    """Token ids that end an answer: the tokenizer's and generation config's EOS, end markers."""
    found: set[int] = set()
    candidates: list[Any] = [loaded.tokenizer.eos_token_id]
    vocabulary = loaded.tokenizer.get_vocab()
    candidates.extend(vocabulary[marker] for marker in END_MARKERS if marker in vocabulary)
    generation_config = getattr(loaded.model, "generation_config", None)
    if generation_config is not None:
        candidates.append(generation_config.eos_token_id)
    for value in candidates:
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, Sequence):
            found.update(int(v) for v in value)
    if not found:
        raise NoHealthyBackend("the model has no end-of-sequence token")
    return frozenset(found)


def _decoder(loaded: LoadedCausalLM) -> Callable[[Sequence[int]], str]:
    tokenizer, lock = loaded.tokenizer, loaded.tokenizer_lock

    def decode(ids: Sequence[int]) -> str:
        with lock:
            text: str = tokenizer.decode(
                list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        return text

    return decode


def _token_text(loaded: LoadedCausalLM) -> Callable[[int], str]:
    tokenizer, lock = loaded.tokenizer, loaded.tokenizer_lock

    @lru_cache(maxsize=65536)
    def token_text(token_id: int) -> str:
        with lock:
            text: str = tokenizer.decode(
                [token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
        return text

    return token_text
