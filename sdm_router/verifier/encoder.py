"""Hidden-state encoder: a (conversation, answer) pair -> one float32 vector for the SDM verifier.

The pair is rendered with the model's chat template (the answer as the assistant turn), run
through the transformer body without the LM head, and pooled one of two ways (2 × 576 = 1152
dims for SmolLM2-135M), from the final layer or from one chosen decoder layer (``layer``; middle
layers often carry more about correctness than the last one, which is shaped for the next token):

* ``final+mean`` (as in the SDM papers): ``[state of the final token (the end-of-turn marker)
  ‖ mean over every token of the turn]``;
* ``last+answer`` (the generation pass's view): ``[state of the last answer token ‖ mean over
  the answer tokens]``. The turn's tokens are the generator's prompt (generation prompt added),
  then the answer's tokens, then the end marker (:meth:`HiddenStateEncoder.layout`); attention
  is causal, so the states at the answer's positions are those the generator itself computed
  while it wrote the answer (the prompt's prefill, then each generated token fed back).

Where the generator recorded the pooled layer's states while it wrote the answer
(:class:`~sdm_router.core.states.RecordedStates`, the embedded decoder), :meth:`features` takes
them instead of running the pass again, when their tokens are exactly this layout's prompt and
answer; otherwise (and for ``final+mean``, which reads the end marker no generator fed) it
encodes, and says why.

Batches are right-padded with an attention mask, so a row's real tokens see exactly what they
would see alone; a vector is the same batched or not (up to float rounding, ~1e-6).

The encoder is synchronous and not thread-safe: the verifier's worker thread calls it. It can
share its :class:`LoadedCausalLM` with a :class:`LocalTransformersBackend`; it then needs that
backend as its ``owner``, and every forward pass runs on the backend's model thread (between
decoding steps), because transformers records hidden states by patching the model instance's
layers for the duration of a call: two threads running one instance would mix their states.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch

from sdm_router.core.generation import Message
from sdm_router.core.states import (
    NOT_RECORDED,
    OTHER_LAYER,
    RECORDED,
    TOKENS_DIFFER,
    TRUNCATED,
)
from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import LoadedCausalLM, chat_messages, load_causal_lm
from sdm_router.verifier.recipe import (
    ANSWER_POOLING,
    FINAL_LAYER,
    POOLING,
    POOLINGS,
    EncoderRecipe,
)

F32Array = npt.NDArray[np.float32]
T = TypeVar("T")
PROVIDER = "sdm-router/hidden-state"
PLAIN_TEMPLATE = "plain-v1"


class ModelOwner(Protocol):
    """The one thread allowed to run a shared model (``LocalTransformersBackend``)."""

    def run_on_model(self, forward: Callable[[], T]) -> T:
        """Run ``forward`` on the model's own thread and return its result."""


class SharedModel(ModelOwner, Protocol):
    """A started component that owns a loaded model and lends it: its weights and its thread."""

    @property
    def loaded(self) -> LoadedCausalLM:
        """The loaded model (available once the owner has started)."""


@runtime_checkable
class RecordsStates(Protocol):
    """A shared model that records chosen layers' states while it generates
    (``LocalTransformersBackend``): its candidates then carry them."""

    def record_layers(self, consumer: str, layers: frozenset[int]) -> None:
        """Record ``layers`` (1-based) for ``consumer`` from now on (empty: none)."""


@dataclass(frozen=True, slots=True)
class TokenLayout:
    """The one token sequence run for an answer: the answer is ``ids[answer_start:answer_end]``,
    the generator's prompt before it, the end-of-turn marker after it. ``exact``: ``ids``
    equals the tokenization of the rendered turn (the prompt and the answer tokenize alone as
    inside the whole text; otherwise ``ids`` is prompt + answer + the rest, tokenized apart)."""

    ids: tuple[int, ...]
    answer_start: int
    answer_end: int
    exact: bool

    @property
    def last_answer(self) -> int:
        """Position of the last answer token (the last prompt token for an empty answer)."""
        return max(self.answer_end - 1, 0)

    @property
    def answer_span(self) -> tuple[int, int]:
        """``[begin, end)`` of the answer tokens (the last prompt token for an empty answer)."""
        if self.answer_end > self.answer_start:
            return self.answer_start, self.answer_end
        return self.last_answer, self.last_answer + 1


@dataclass(frozen=True, slots=True)
class _Pooled:
    """One row to run: its ids, the position of the pooled last state and the mean's span."""

    ids: Sequence[int]
    last: int
    begin: int
    end: int


def padding_id(tokenizer: Any) -> int:
    """The id to right-pad with: it sits after the real tokens, so it never changes a vector."""
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id or 0)


def decoder_body(loaded: LoadedCausalLM) -> Any:
    """The model without its LM head (which costs vocab × hidden per token), or None when the
    model has no separate body (then hidden states come from the full model)."""
    base = getattr(loaded.model, "base_model", None)
    return base if base is not None and base is not loaded.model else None


class HiddenStateEncoder:
    """Encodes verification inputs as two pooled hidden states of one layer (see the module)."""

    def __init__(
        self,
        loaded: LoadedCausalLM,
        *,
        layer: int | None = None,
        pooling: str = POOLING,
        max_length: int = 2048,
        batch_size: int = 16,
        owner: ModelOwner | None = None,
    ):
        """``layer``: decoder layer 1..L whose output is pooled; None pools the final
        (normalized) hidden state. ``pooling``: ``final+mean`` or ``last+answer``. ``owner``:
        the component whose thread runs ``loaded``'s forwards when the weights are shared;
        None runs them on the calling thread."""
        if max_length < 2 or batch_size < 1:
            raise ValueError("max_length must be >= 2 and batch_size >= 1")
        if pooling not in POOLINGS:
            raise ValueError(f"encoder pooling must be one of {POOLINGS}, got {pooling!r}")
        self._pooling = pooling
        layers = int(getattr(loaded.model.config, "num_hidden_layers", 0) or 0)
        if layer is not None and not 1 <= layer <= layers:
            raise ValueError(f"encoder layer must be in 1..{layers} for {loaded.name}, got {layer}")
        self._layer = layer
        self._state_layer = layer if layer is not None else layers  # hidden_states[L] is final
        self._loaded = loaded
        self._owner = owner
        self._max_length = max_length
        self._batch_size = batch_size
        tokenizer = loaded.tokenizer
        template = getattr(tokenizer, "chat_template", None)
        self._has_template = isinstance(template, str) and bool(template)
        self._template_name = (
            "chat-template-sha256:" + hashlib.sha256(template.encode()).hexdigest()[:16]
            if isinstance(template, str) and template
            else PLAIN_TEMPLATE
        )
        self._pad_id = padding_id(tokenizer)
        self._body = decoder_body(loaded)
        self._hidden_size = int(loaded.model.config.hidden_size)

    @classmethod
    def from_local(
        cls,
        source: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        layer: int | None = None,
        pooling: str = POOLING,
        max_length: int = 2048,
        batch_size: int = 16,
    ) -> HiddenStateEncoder:
        """Load any transformers causal LM from local disk (or the embedded GGUF) and wrap it."""
        loaded = load_causal_lm(
            source, name=name, device=device, dtype=dtype, cache_dir=cache_dir, threads=threads
        )
        return cls(
            loaded, layer=layer, pooling=pooling, max_length=max_length, batch_size=batch_size
        )

    @property
    def loaded(self) -> LoadedCausalLM:
        """The model this encoder runs."""
        return self._loaded

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda:N``."""
        return self._loaded.device_label

    @property
    def layer(self) -> int | None:
        """The pooled decoder layer (None: the final hidden state)."""
        return self._layer

    @property
    def recordable_layers(self) -> frozenset[int]:
        """The decoder layers (1-based, as ``hidden_states[layer]``) a generator should record
        for :meth:`recorded_vector`: this encoder's layer with ``last+answer``; none for
        ``final+mean``, which reads the end-of-turn marker no generator feeds back."""
        if self._pooling != ANSWER_POOLING:
            return frozenset()
        return frozenset({self._state_layer})

    @property
    def recipe(self) -> EncoderRecipe:
        """The layer and pooling this encoder reads."""
        return EncoderRecipe(self._layer, self._pooling)

    @property
    def pooling(self) -> str:
        """The pooling, with its layer: ``final+mean`` over the final hidden state,
        ``final+mean@layerN`` or ``last+answer@layerN`` over layer N."""
        return self._pooling if self._layer is None else f"{self._pooling}@layer{self._layer}"

    @property
    def dimension(self) -> int:
        """Length of one vector: twice the hidden size."""
        return 2 * self._hidden_size

    @property
    def identity(self) -> dict[str, str]:
        """What a verifier artifact records to refuse running with another encoder."""
        return {
            "model": self._loaded.name,
            "sha256": self._loaded.sha256,
            "revision": self._loaded.revision,
            "template": self._template_name,
            "pooling": self._pooling,
            "layer": FINAL_LAYER if self._layer is None else str(self._layer),
            "dimension": str(self.dimension),
        }

    @property
    def fingerprint(self) -> str:
        """A stable digest of :attr:`identity`, e.g. ``hidden:final+mean@layer20:1152:<16 hex>``."""
        canonical = json.dumps(self.identity, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        return f"hidden:{self.pooling}:{self.dimension}:{digest}"

    @property
    def representation(self) -> dict[str, str | None]:
        """The artifact manifest's ``representation`` block for this encoder."""
        return {
            "provider": PROVIDER,
            "model": self._loaded.name,
            "revision": self._loaded.revision,
            "inputTemplate": self._template_name,
            "fingerprint": self.fingerprint,
        }

    def format(self, item: VerificationInput) -> str:
        """The text the model reads: the conversation plus the answer as the assistant turn."""
        turns = (*item.messages, Message(role="assistant", content=item.response))
        if not self._has_template:
            return "".join(f"{turn.role}: {turn.content}\n" for turn in turns).rstrip()
        with self._loaded.tokenizer_lock:
            text: str = self._loaded.tokenizer.apply_chat_template(
                chat_messages(turns), tokenize=False, add_generation_prompt=False
            )
        # The final token is then the template's end-of-turn marker, not a trailing newline.
        return text.rstrip()

    def prompt_text(self, messages: Sequence[Message]) -> str:
        """The generator's input for ``messages``: the chat template with the generation prompt
        added (what the local backend renders)."""
        if not self._has_template:
            return "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant: "
        with self._loaded.tokenizer_lock:
            text: str = self._loaded.tokenizer.apply_chat_template(
                chat_messages(messages), tokenize=False, add_generation_prompt=True
            )
        return text

    def layout(self, item: VerificationInput) -> TokenLayout:
        """The token sequence for one answer: prompt + answer + end marker (see the module),
        cut to the last ``max_length`` tokens as :meth:`encode` does."""
        whole_text = self.format(item)
        prompt_text = self.prompt_text(item.messages)
        prompt, answer, whole = (
            self._ids(prompt_text), self._ids(item.response), self._ids(whole_text)
        )  # fmt: skip
        head = prompt + answer
        exact = whole[: len(head)] == head
        if exact:
            ids = whole
        else:
            joined = prompt_text + item.response
            tail = whole_text[len(joined) :] if whole_text.startswith(joined) else ""
            ids = head + self._ids(tail)
        start, end = len(prompt), len(head)
        cut = max(0, len(ids) - self._max_length)  # keep the end
        if not ids:
            ids = [self._pad_id]
        return TokenLayout(tuple(ids[cut:]), max(start - cut, 0), max(end - cut, 0), exact)

    def _ids(self, text: str) -> list[int]:
        with self._loaded.tokenizer_lock:
            return list(self._loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, items: Sequence[VerificationInput]) -> F32Array:
        """One ``[dimension]`` float32 row per item, in order."""
        if self._pooling == POOLING:
            return self.encode_texts([self.format(item) for item in items])
        rows = []
        for item in items:
            layout = self.layout(item)
            begin, end = layout.answer_span
            rows.append(_Pooled(layout.ids, layout.last_answer, begin, end))
        return self._encode_rows(rows)

    def recorded_vector(self, item: VerificationInput) -> tuple[F32Array | None, str]:
        """The vector :meth:`encode` would give, from the generator's recorded states, and
        ``recorded``; or None and why they cannot stand in (a reason of ``core.states``)."""
        recorded = item.recorded
        if recorded is None:
            return None, NOT_RECORDED
        if recorded.missing is not None:
            return None, recorded.missing
        states = recorded.layers.get(self._state_layer)
        if states is None or self._pooling != ANSWER_POOLING:
            return None, OTHER_LAYER
        layout = self.layout(item)
        if (
            layout.answer_start != recorded.prompt_length
            or layout.ids[: layout.answer_end] != recorded.token_ids
        ):
            cut = len(layout.ids) >= self._max_length
            return None, TRUNCATED if cut else TOKENS_DIFFER
        # An empty answer pools the last prompt token's state twice, as encode does.
        last, mean = (
            (states.answer.last, states.answer.mean)
            if states.answer is not None
            else (states.prompt.last, states.prompt.last)
        )
        return np.concatenate([last, mean]).astype(np.float32, copy=False), RECORDED

    def features(self, items: Sequence[VerificationInput]) -> tuple[F32Array, list[str]]:
        """One row per item, as :meth:`encode` gives it, taken from the recorded states where
        they stand in (:meth:`recorded_vector`) and encoded for the rest; and each row's
        reason (``recorded``, or why it was encoded)."""
        found = [self.recorded_vector(item) for item in items]
        result = np.empty((len(items), self.dimension), dtype=np.float32)
        missing = [index for index, (vector, _) in enumerate(found) if vector is None]
        if missing:
            result[missing] = self.encode([items[index] for index in missing])
        for index, (vector, _) in enumerate(found):
            if vector is not None:
                result[index] = vector
        return result, [reason for _, reason in found]

    def encode_prompts(self, conversations: Sequence[Sequence[Message]]) -> F32Array:
        """The prompt router's view (pooling ``last+prompt``): per conversation, one forward
        over the generator's prompt alone (generation prompt added, no answer), pooled at this
        encoder's layer as ``[state of the last prompt token ‖ mean over the prompt tokens]``."""
        return self._encode_rows(self._prompt_rows(conversations))

    def encode_prompt_layers(
        self, conversations: Sequence[Sequence[Message]], layers: Sequence[int | None]
    ) -> dict[int | None, F32Array]:
        """``encode_prompts`` at several layers from one forward per batch (choosing a layer
        on validation); None is the final hidden state."""
        rows = self._prompt_rows(conversations)
        result = {
            layer: np.empty((len(rows), self.dimension), dtype=np.float32) for layer in layers
        }
        order = sorted(range(len(rows)), key=lambda index: len(rows[index].ids))
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            forward = partial(self._encode_batch, [rows[index] for index in chunk], tuple(layers))
            pooled = forward() if self._owner is None else self._owner.run_on_model(forward)
            for layer, vectors in zip(layers, pooled, strict=True):
                result[layer][chunk] = vectors
        return result

    def _prompt_rows(self, conversations: Sequence[Sequence[Message]]) -> list[_Pooled]:
        rows = []
        for messages in conversations:
            ids = self._ids(self.prompt_text(messages))[-self._max_length :] or [self._pad_id]
            rows.append(_Pooled(ids, len(ids) - 1, 0, len(ids)))
        return rows

    def encode_texts(self, texts: Sequence[str]) -> F32Array:
        """Encode already formatted texts (batched by ``batch_size``) with the ``final+mean``
        pooling: the last token's state and the mean over every token. A ``last+answer``
        encoder needs the answer's position: use :meth:`encode`."""
        if self._pooling != POOLING:
            raise ValueError(f"encode_texts pools {POOLING}; this encoder pools {self._pooling}")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        tokenizer = self._loaded.tokenizer
        with self._loaded.tokenizer_lock:
            encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        ids = [list(row)[-self._max_length :] for row in encoded]
        ids = [row if row else [self._pad_id] for row in ids]
        return self._encode_rows([_Pooled(row, len(row) - 1, 0, len(row)) for row in ids])

    def _encode_rows(self, rows: Sequence[_Pooled]) -> F32Array:
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Batch rows of similar length together: less padding, same vectors.
        order = sorted(range(len(rows)), key=lambda index: len(rows[index].ids))
        result = np.empty((len(rows), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            forward = partial(self._encode_batch, [rows[index] for index in chunk], (self._layer,))
            (pooled,) = forward() if self._owner is None else self._owner.run_on_model(forward)
            result[chunk] = pooled
        return result

    def _encode_batch(
        self, rows: Sequence[_Pooled], layers: tuple[int | None, ...]
    ) -> list[F32Array]:
        device = self._loaded.device
        width = max(len(row.ids) for row in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        span = torch.zeros((len(rows), width), dtype=torch.long)  # the mean's tokens
        for index, row in enumerate(rows):
            ids[index, : len(row.ids)] = torch.tensor(list(row.ids), dtype=torch.long)
            mask[index, : len(row.ids)] = 1
            span[index, row.begin : row.end] = 1
        last = torch.tensor([row.last for row in rows], dtype=torch.long, device=device)
        results: list[F32Array] = []
        with torch.inference_mode():
            for states in self._hidden_states(ids.to(device), mask.to(device), layers):
                hidden = states.float()
                final = hidden[torch.arange(len(rows), device=device), last]
                weights = span.to(device=device, dtype=hidden.dtype).unsqueeze(-1)
                mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
                pooled = torch.cat([final, mean], dim=-1)
                results.append(pooled.cpu().numpy().astype(np.float32, copy=False))
        return results

    def _hidden_states(
        self, ids: torch.Tensor, mask: torch.Tensor, layers: tuple[int | None, ...]
    ) -> list[Any]:
        """[batch, tokens, hidden] of each of ``layers`` (None: the final hidden state)."""
        every_layer = any(layer is not None for layer in layers)
        if self._body is not None:
            output = self._body(
                input_ids=ids, attention_mask=mask, use_cache=False,
                output_hidden_states=every_layer,
            )  # fmt: skip
            if not every_layer:
                return [output.last_hidden_state for _ in layers]
        else:
            output = self._loaded.model(
                input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True
            )
        # hidden_states[0] is the embedding output, [i] the output of decoder layer i; the body's
        # last_hidden_state is the final (normalized) one.
        final = output.last_hidden_state if self._body is not None else output.hidden_states[-1]
        return [final if layer is None else output.hidden_states[layer] for layer in layers]
