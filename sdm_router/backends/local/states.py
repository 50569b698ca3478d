"""Recording chosen decoder layers' states during the decoder's own pass (no second forward).

:class:`LayerTap` hooks the model's decoder layers once; inside :meth:`LayerTap.capture` a
forward pass leaves each wanted layer's ``hidden_states[layer]`` (the output of decoder layer
``layer``, 1-based; the last one normalised, as transformers reports it) in a dict; outside it
the hooks do nothing, so other passes on the same weights (the verifier's encoder, between
decoding steps) are never recorded. :class:`RowRecorder` pools one row's states as they come:
the prompt span from its prefill, the answer span from each generated token fed back (its last
state and a running sum). Consumers (the verifier's ``last+answer`` encoder, a prompt router)
ask for layers by name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from sdm_router.core.states import LayerStates, RecordedStates, SpanStates


def tapped_modules(model: Any) -> list[Any] | None:
    """The modules whose outputs are ``hidden_states[1..L]``: decoder layers 1..L-1, then the
    final norm (transformers reports the last layer's output normalised, as
    ``last_hidden_state``); None when the model has no such ``layers`` and ``norm``
    (``model.model`` of Llama-family models)."""
    base = getattr(model, "base_model", model)
    layers, norm = getattr(base, "layers", None), getattr(base, "norm", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers) or norm is None:
        return None
    return [*list(layers)[:-1], norm]


class LayerTap:
    """Forward hooks on a model's decoder layers, recording the wanted ones inside
    :meth:`capture`. Layers are asked for per consumer; the tap records their union."""

    def __init__(self, model: Any) -> None:
        self._layers = tapped_modules(model)
        self._wanted: dict[str, frozenset[int]] = {}
        self._lock = threading.Lock()
        self._captured: dict[int, torch.Tensor] | None = None
        self._handles: dict[int, Any] = {}

    @property
    def supported(self) -> bool:
        """Whether the model exposes its decoder layers."""
        return self._layers is not None

    @property
    def layers(self) -> frozenset[int]:
        """The layers recorded now (1-based)."""
        return frozenset(self._handles)

    def want(self, consumer: str, layers: frozenset[int]) -> None:
        """Record ``layers`` for ``consumer`` (replacing what it asked before; empty: nothing).
        Raises ValueError for a layer the model does not have or a model without layers."""
        count = len(self._layers) if self._layers is not None else 0
        wrong = sorted(layer for layer in layers if not 1 <= layer <= count)
        if wrong:
            raise ValueError(f"cannot record layers {wrong}: the model has layers 1..{count}")
        with self._lock:
            self._wanted[consumer] = layers
            union = frozenset().union(*self._wanted.values())
            for layer in set(self._handles) - union:
                self._handles.pop(layer).remove()
            for layer in sorted(union - set(self._handles)):
                assert self._layers is not None
                self._handles[layer] = self._layers[layer - 1].register_forward_hook(
                    self._hook(layer)
                )

    def _hook(self, layer: int) -> Any:
        def record(module: Any, args: Any, output: Any) -> None:
            captured = self._captured
            if captured is not None:
                captured[layer] = output[0] if isinstance(output, tuple) else output

        return record

    @contextmanager
    def capture(self) -> Iterator[dict[int, torch.Tensor]]:
        """Record the wanted layers' outputs (``[batch, tokens, hidden]``) of the passes run
        inside the block (the last pass's, when several run)."""
        captured: dict[int, torch.Tensor] = {}
        self._captured = captured
        try:
            yield captured
        finally:
            self._captured = None


class RowRecorder:
    """One row's pooled states: the prompt span (from the prefill) and the answer span so far."""

    def __init__(self, layers: frozenset[int]) -> None:
        self.layers = layers
        self._prompt: dict[int, SpanStates] = {}
        self._answer_last: dict[int, torch.Tensor] = {}
        self._answer_sum: dict[int, torch.Tensor] = {}
        self._answer_count: dict[int, int] = {}

    @property
    def fed(self) -> int:
        """How many generated tokens' states were recorded (in every recorded layer)."""
        return min(self._answer_count.values(), default=0)

    def prompt(self, layer: int, last: torch.Tensor, mean: torch.Tensor) -> None:
        """The prompt span's states of ``layer`` (``[hidden]``)."""
        self._prompt[layer] = SpanStates(_numpy(last), _numpy(mean))

    def answer_token(self, states: dict[int, torch.Tensor], row: int) -> None:
        """One generated token was fed back: ``states[layer][row, -1]`` is its state."""
        for layer in self.layers:
            captured = states.get(layer)
            if captured is None:
                continue
            state = captured[row, -1].float()
            self._answer_last[layer] = state
            total = self._answer_sum.get(layer)
            self._answer_sum[layer] = state.clone() if total is None else total + state
            self._answer_count[layer] = self._answer_count.get(layer, 0) + 1

    def result(
        self, prompt_ids: Sequence[int], answer_ids: Sequence[int], missing: str | None
    ) -> RecordedStates:
        """The recorded states of a finished row whose answer is ``answer_ids``: only the layers
        whose states cover the prompt and every answer token."""
        layers: dict[int, LayerStates] = {}
        for layer in self.layers:
            prompt = self._prompt.get(layer)
            count = self._answer_count.get(layer, 0)
            if prompt is None or count != len(answer_ids):
                continue
            answer = None
            if count:
                mean = self._answer_sum[layer] / count
                answer = SpanStates(_numpy(self._answer_last[layer]), _numpy(mean))
            layers[layer] = LayerStates(prompt, answer)
        ids = (*prompt_ids, *answer_ids)
        return RecordedStates(ids, len(prompt_ids), layers, missing)


def _numpy(state: torch.Tensor) -> np.ndarray[Any, np.dtype[np.float32]]:
    result: np.ndarray[Any, np.dtype[np.float32]] = (
        state.detach().float().cpu().numpy().astype(np.float32, copy=False)
    )
    return result
