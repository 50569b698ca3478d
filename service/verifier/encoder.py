"""Hidden-state encoder: a (conversation, answer) pair -> one float32 vector for the SDM verifier.

The pair is rendered with the model's chat template (the answer as the assistant turn), run
through the transformer body without the LM head, and pooled as in the SDM papers:
``[hidden state of the final token ‖ mean over the real tokens]`` (2 × 576 = 1152 dims for
SmolLM2-135M), taken from the final layer or from one chosen decoder layer (``layer``; middle
layers often carry more about correctness than the last one, which is shaped for the next token).

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
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from service.core.generation import Message
from service.core.verdict import VerificationInput
from service.models.causal_lm import LoadedCausalLM, chat_messages, load_causal_lm

F32Array = npt.NDArray[np.float32]
T = TypeVar("T")
POOLING = "final+mean"
PROVIDER = "sdm-router/hidden-state"
PLAIN_TEMPLATE = "plain-v1"
FINAL_LAYER = "final"


class ModelOwner(Protocol):
    """The one thread allowed to run a shared model (``LocalTransformersBackend``)."""

    def run_on_model(self, forward: Callable[[], T]) -> T:
        """Run ``forward`` on the model's own thread and return its result."""


class SharedModel(ModelOwner, Protocol):
    """A started component that owns a loaded model and lends it: its weights and its thread."""

    @property
    def loaded(self) -> LoadedCausalLM:
        """The loaded model (available once the owner has started)."""


def layer_from_identity(identity: Mapping[str, Any] | None) -> int | None:
    """The decoder layer an artifact's recorded encoder identity names (None: the final layer)."""
    value = (identity or {}).get("layer", FINAL_LAYER)
    return None if value in (None, FINAL_LAYER) else int(value)


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
    """Encodes verification inputs as ``[final-token ‖ mean]`` hidden states of one layer."""

    def __init__(
        self,
        loaded: LoadedCausalLM,
        *,
        layer: int | None = None,
        max_length: int = 2048,
        batch_size: int = 16,
        owner: ModelOwner | None = None,
    ):
        """``layer``: decoder layer 1..L whose output is pooled; None pools the final
        (normalized) hidden state. ``owner``: the component whose thread runs ``loaded``'s
        forwards when the weights are shared; None runs them on the calling thread."""
        if max_length < 2 or batch_size < 1:
            raise ValueError("max_length must be >= 2 and batch_size >= 1")
        layers = int(getattr(loaded.model.config, "num_hidden_layers", 0) or 0)
        if layer is not None and not 1 <= layer <= layers:
            raise ValueError(f"encoder layer must be in 1..{layers} for {loaded.name}, got {layer}")
        self._layer = layer
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
        max_length: int = 2048,
        batch_size: int = 16,
    ) -> HiddenStateEncoder:
        """Load any transformers causal LM from local disk (or the embedded GGUF) and wrap it."""
        loaded = load_causal_lm(
            source, name=name, device=device, dtype=dtype, cache_dir=cache_dir, threads=threads
        )
        return cls(loaded, layer=layer, max_length=max_length, batch_size=batch_size)

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
    def pooling(self) -> str:
        """``final+mean`` over the final hidden state, ``final+mean@layerN`` over layer N."""
        return POOLING if self._layer is None else f"{POOLING}@layer{self._layer}"

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
            "pooling": POOLING,
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

    def encode(self, items: Sequence[VerificationInput]) -> F32Array:
        """One ``[dimension]`` float32 row per item, in order."""
        return self.encode_texts([self.format(item) for item in items])

    def encode_texts(self, texts: Sequence[str]) -> F32Array:
        """Encode already formatted texts (batched by ``batch_size``)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        tokenizer = self._loaded.tokenizer
        with self._loaded.tokenizer_lock:
            encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        ids = [list(row)[-self._max_length :] for row in encoded]
        ids = [row if row else [self._pad_id] for row in ids]
        # Batch texts of similar length together: less padding, same vectors.
        order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
        result = np.empty((len(ids), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            forward = partial(self._encode_ids, [ids[index] for index in chunk])
            result[chunk] = forward() if self._owner is None else self._owner.run_on_model(forward)
        return result

    def _encode_ids(self, rows: Sequence[Sequence[int]]) -> F32Array:
        device = self._loaded.device
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(list(row), dtype=torch.long)
            mask[index, : len(row)] = 1
        with torch.inference_mode():
            hidden = self._hidden_states(ids.to(device), mask.to(device)).float()
            weights = mask.to(device=device, dtype=hidden.dtype).unsqueeze(-1)
            lengths = mask.sum(dim=1).to(device)
            final = hidden[torch.arange(len(rows), device=device), lengths - 1]
            mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
            pooled = torch.cat([final, mean], dim=-1)
        result: F32Array = pooled.cpu().numpy().astype(np.float32, copy=False)
        return result

    def _hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> Any:
        """[batch, tokens, hidden] of the pooled layer."""
        every_layer = self._layer is not None
        if self._body is not None:
            output = self._body(
                input_ids=ids, attention_mask=mask, use_cache=False,
                output_hidden_states=every_layer,
            )  # fmt: skip
            if not every_layer:
                return output.last_hidden_state
        else:
            output = self._loaded.model(
                input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True
            )
        # hidden_states[0] is the embedding output, [i] the output of decoder layer i.
        return output.hidden_states[self._layer if every_layer else -1]
