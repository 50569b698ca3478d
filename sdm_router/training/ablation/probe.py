"""One teacher-forced forward pass per answer, pooled in every way the ablation compares.

Each answer is run once through the model as the token sequence

    prompt (the conversation in the chat template, generation prompt added: what the generator
    was given) + answer (the response's tokens) + end (the template's end-of-turn marker)

which is exactly how :class:`HiddenStateEncoder` tokenizes the conversation with the answer
as the assistant turn whenever the prompt and the answer tokenize the same alone as inside the
whole text (``TokenLayout.exact``; true for every row of the shipped data). Attention is causal, so
the states of the first ``prompt + answer`` positions are those of the generation pass itself
(the prompt's prefill, then each generated token fed back), and the same pass also gives the
encoder's view, which reads one more token (the end marker). From the pass, per layer:

* ``enc.final``, ``enc.mean``: the encoder's pooling today, the state of the last token (the
  end marker) and the mean over every token of the rendered turn;
* ``gen.last``: the state of the last answer token (the one from which the generator emitted
  end-of-sequence; the last prompt token for an empty answer);
* ``gen.answer``: the mean over the answer tokens only (``gen.last`` for an empty answer);
* ``gen.turn``: the mean over prompt and answer tokens (what generation saw, whole turn).

Layers are decoder layers 1..L-1 or ``final`` (the normalized last hidden state). Vectors are
cached in one ``.npz`` store per model, chat template, layer set and library versions, keyed by
``featurize.record_key``, so a rerun (or a grown data set) runs only new answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from sdm_router.core.provenance import versions_digest
from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import LoadedCausalLM
from sdm_router.training.featurize import FEATURE_LIBRARIES, record_key
from sdm_router.training.records import AnswerRecord
from sdm_router.verifier.encoder import HiddenStateEncoder, TokenLayout, decoder_body, padding_id
from sdm_router.verifier.recipe import FINAL_LAYER

F32Array = npt.NDArray[np.float32]
logger = logging.getLogger(__name__)

PROBE_VERSION = "probe-v1"
POOLINGS = ("enc.final", "enc.mean", "gen.last", "gen.answer", "gen.turn")
Progress = Callable[[int], None]


def block_key(layer: str, pooling: str) -> str:
    """The name of one pooled block, e.g. ``L20/gen.last``."""
    return f"L{layer}/{pooling}"


def layer_names(values: Sequence[int | str], layers: int) -> tuple[str, ...]:
    """Canonical layer names ("12", ..., "final"), in order, without repeats; layer L is the
    final layer. Raises ValueError for a layer outside 1..L."""
    names: list[str] = []
    for value in values:
        text = str(value).strip()
        if text != FINAL_LAYER:
            number = int(text)
            if not 1 <= number <= layers:
                raise ValueError(f"layer must be in 1..{layers} or {FINAL_LAYER}, got {value}")
            text = FINAL_LAYER if number == layers else str(number)
        if text not in names:
            names.append(text)
    return tuple(names)


class RepresentationProbe:
    """Runs answers through a causal LM once and pools the states of ``layers``."""

    def __init__(
        self,
        loaded: LoadedCausalLM,
        layers: Sequence[int | str],
        *,
        batch_size: int = 16,
        max_length: int = 2048,
    ) -> None:
        if batch_size < 1 or max_length < 2:
            raise ValueError("batch_size must be >= 1 and max_length >= 2")
        self._loaded = loaded
        # The encoder renders the turn exactly as it does today (and names the template).
        self._encoder = HiddenStateEncoder(loaded, max_length=max_length)
        total = int(getattr(loaded.model.config, "num_hidden_layers", 0) or 0)
        self._total_layers = total
        self._layers = layer_names(layers, total)
        if not self._layers:
            raise ValueError("the probe needs at least one layer")
        self._batch_size = batch_size
        self._max_length = max_length
        self._pad_id = padding_id(loaded.tokenizer)
        self._body = decoder_body(loaded)
        self.hidden_size = int(loaded.model.config.hidden_size)

    @property
    def total_layers(self) -> int:
        """L, the model's decoder layer count."""
        return self._total_layers

    @property
    def layers(self) -> tuple[str, ...]:
        """The pooled layers' canonical names."""
        return self._layers

    @property
    def blocks(self) -> tuple[str, ...]:
        """Every block :meth:`extract` returns."""
        return tuple(block_key(layer, pooling) for layer in self._layers for pooling in POOLINGS)

    @property
    def identity(self) -> dict[str, str]:
        """What the vectors depend on (the cache's key, with the library versions)."""
        encoder = self._encoder.identity
        return {
            "model": encoder["model"],
            "sha256": encoder["sha256"],
            "revision": encoder["revision"],
            "template": encoder["template"],
            "layers": ",".join(self._layers),
            "poolings": ",".join(POOLINGS),
            "maxLength": str(self._max_length),
            "probe": PROBE_VERSION,
        }

    @property
    def fingerprint(self) -> str:
        """A stable digest of :attr:`identity`."""
        canonical = json.dumps(self.identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def extract(
        self, items: Sequence[VerificationInput]
    ) -> tuple[dict[str, F32Array], list[TokenLayout]]:
        """Every block for every item, in order, and each item's token layout."""
        rows = [self._encoder.layout(item) for item in items]
        blocks = {
            name: np.zeros((len(rows), self.hidden_size), dtype=np.float32) for name in self.blocks
        }
        order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
        for begin in range(0, len(order), self._batch_size):
            chunk = order[begin : begin + self._batch_size]
            for name, values in self._forward([rows[i] for i in chunk]).items():
                blocks[name][chunk] = values
        return blocks, rows

    def _forward(self, rows: Sequence[TokenLayout]) -> dict[str, F32Array]:
        device = self._loaded.device
        width = max(len(row.ids) for row in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row.ids)] = torch.tensor(row.ids, dtype=torch.long)
            mask[index, : len(row.ids)] = 1
        weights, last = _pool_weights(rows, width)
        result: dict[str, F32Array] = {}
        with torch.inference_mode():
            states = self._states(ids.to(device), mask.to(device))
            for layer, raw in states.items():
                hidden = raw.float()
                picks = torch.arange(len(rows), device=hidden.device)
                for pooling in POOLINGS:
                    if pooling in last:
                        pooled = hidden[picks, last[pooling].to(hidden.device)]
                    else:
                        pooled = torch.einsum(
                            "bt,bth->bh", weights[pooling].to(hidden.device), hidden
                        )
                    result[block_key(layer, pooling)] = pooled.cpu().numpy().astype(np.float32)
        return result

    def _states(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        """{layer name: [batch, tokens, hidden]} for the probed layers, from one forward."""
        model = self._body if self._body is not None else self._loaded.model
        output = model(
            input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True
        )
        hidden_states = output.hidden_states
        final = output.last_hidden_state if self._body is not None else hidden_states[-1]
        # hidden_states[0] is the embedding output, [i] the output of decoder layer i.
        return {
            layer: final if layer == FINAL_LAYER else hidden_states[int(layer)]
            for layer in self._layers
        }


def _pool_weights(
    rows: Sequence[TokenLayout], width: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per mean pooling a [batch, width] weight matrix whose rows sum to 1; per last-token
    pooling the position of that token."""
    spans: dict[str, list[tuple[int, int]]] = {"enc.mean": [], "gen.answer": [], "gen.turn": []}
    enc_final: list[int] = []
    gen_last: list[int] = []
    for row in rows:
        total = len(row.ids)
        spans["enc.mean"].append((0, total))
        spans["gen.answer"].append(row.answer_span)
        spans["gen.turn"].append((0, max(row.answer_end, 1)))
        enc_final.append(total - 1)
        gen_last.append(row.last_answer)
    weights = {}
    for name, pairs in spans.items():
        matrix = torch.zeros((len(rows), width), dtype=torch.float32)
        for index, (begin, stop) in enumerate(pairs):
            matrix[index, begin:stop] = 1.0 / (stop - begin)
        weights[name] = matrix
    last = {
        "enc.final": torch.tensor(enc_final, dtype=torch.long),
        "gen.last": torch.tensor(gen_last, dtype=torch.long),
    }
    return weights, last


@dataclass(frozen=True, slots=True)
class ProbeFeatures:
    """The probe's blocks for a list of records, in order, with per-row diagnostics."""

    blocks: dict[str, F32Array]
    exact: npt.NDArray[np.bool_]
    answer_tokens: npt.NDArray[np.int64]
    encoded_rows: int
    seconds: float

    def block(self, name: str) -> F32Array:
        """One block's [rows, hidden] matrix."""
        return self.blocks[name]


def store_path(cache_dir: Path, probe: RepresentationProbe) -> Path:
    """The probe's store for its identity and the library versions."""
    identity = f"{probe.fingerprint}|{versions_digest(FEATURE_LIBRARIES)}".encode()
    return cache_dir / f"probe-{hashlib.sha256(identity).hexdigest()[:16]}.npz"


class _Store:
    """Keys and their row vectors per block, grown in chunks, saved as one ``.npz``."""

    def __init__(self, blocks: Sequence[str], hidden_size: int) -> None:
        self.blocks = tuple(blocks)
        self._hidden_size = hidden_size
        self.index: dict[str, int] = {}
        self._chunks: dict[str, list[np.ndarray[Any, Any]]] = {name: [] for name in (
            *self.blocks, "_exact", "_answer_tokens"
        )}  # fmt: skip

    def add(
        self, keys: Sequence[str], blocks: dict[str, F32Array], rows: Sequence[TokenLayout]
    ) -> None:
        for key in keys:
            self.index[key] = len(self.index)
        for name in self.blocks:
            self._chunks[name].append(np.asarray(blocks[name], dtype=np.float32))
        self._chunks["_exact"].append(np.asarray([row.exact for row in rows], dtype=bool))
        answer_tokens = [row.answer_end - row.answer_start for row in rows]
        self._chunks["_answer_tokens"].append(np.asarray(answer_tokens, dtype=np.int64))

    def column(self, name: str) -> np.ndarray[Any, Any]:
        chunks = self._chunks[name]
        if not chunks:
            return _empty(name, self._hidden_size)
        if len(chunks) > 1:
            chunks[:] = [np.concatenate(chunks)]
        return chunks[0]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.asarray(sorted(self.index, key=self.index.__getitem__))
        arrays: dict[str, Any] = {_npz_name(name): self.column(name) for name in self._chunks}
        arrays["keys"] = keys
        temporary = path.with_name(path.stem + ".tmp.npz")
        np.savez(temporary, **arrays)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path, blocks: Sequence[str], hidden_size: int) -> _Store:
        store = cls(blocks, hidden_size)
        if not path.exists():
            return store
        try:
            with np.load(path) as data:
                keys = [str(key) for key in data["keys"]]
                arrays = {name: data[_npz_name(name)] for name in store._chunks}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            logger.warning(
                "probe store %s is unreadable (%s); running the model again", path, error
            )
            return cls(blocks, hidden_size)
        store.index = {key: i for i, key in enumerate(keys)}
        for name, values in arrays.items():
            store._chunks[name] = [values]
        return store


def _empty(name: str, hidden_size: int) -> np.ndarray[Any, Any]:
    if name == "_exact":
        return np.zeros(0, dtype=bool)
    if name == "_answer_tokens":
        return np.zeros(0, dtype=np.int64)
    return np.zeros((0, hidden_size), dtype=np.float32)


def _npz_name(block: str) -> str:
    return block.replace("/", "__").replace(".", "_")


def probe_records(
    records: Sequence[AnswerRecord],
    probe: RepresentationProbe,
    cache_dir: Path | None,
    *,
    chunk_rows: int = 1024,
    progress: Progress | None = None,
) -> ProbeFeatures:
    """The probe's blocks for ``records`` (cached rows are not run again). New rows are run
    shortest first and the store is saved every ``chunk_rows`` rows, so an interrupted run
    resumes."""
    started = time.perf_counter()
    path = store_path(cache_dir, probe) if cache_dir is not None else None
    size = probe.hidden_size
    store = (
        _Store.load(path, probe.blocks, size) if path is not None else _Store(probe.blocks, size)
    )
    keys = [record_key(record) for record in records]
    unique = dict.fromkeys(key for key in keys if key not in store.index)
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    missing = sorted(unique, key=lambda key: _length(records[first[key]]))
    if progress is not None:
        progress(len(keys) - len(missing))  # rows the store (or a repeat) already covers
    for begin in range(0, len(missing), chunk_rows):
        chunk = missing[begin : begin + chunk_rows]
        blocks, rows = probe.extract([records[first[key]].verification_input() for key in chunk])
        store.add(chunk, blocks, rows)
        if path is not None:
            store.save(path)
        if progress is not None:
            progress(len(chunk))
    positions = np.asarray([store.index[key] for key in keys], dtype=np.int64)
    return ProbeFeatures(
        blocks={name: store.column(name)[positions] for name in probe.blocks},
        exact=store.column("_exact")[positions],
        answer_tokens=store.column("_answer_tokens")[positions],
        encoded_rows=len(missing),
        seconds=time.perf_counter() - started,
    )


def _length(record: AnswerRecord) -> int:
    return len(record.response) + sum(len(message.content) for message in record.messages)
