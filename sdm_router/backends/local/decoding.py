"""Batched decoding: left-padded prefill, then one token per row per step on a KV cache.

Rows leave the batch (and the KV cache) as soon as they finish or their request is cancelled,
and rows queued meanwhile join it at a step boundary (continuous batching): they are prefilled
on their own and their cache is merged into the running one, left-padded to a common length.
Positions are counted per row, so padding never changes what a row computes. With a
:class:`~sdm_router.backends.local.states.LayerTap`, rows that carry a recorder get their
wanted layers' states recorded from these same passes (prefill and each step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from sdm_router.backends.local import kv
from sdm_router.backends.local.rows import RowState
from sdm_router.backends.local.sampling import choose_tokens, step_logprobs
from sdm_router.backends.local.states import LayerTap

# Given the rows decoding now and whether rows may join (the cache supports merging), hands out
# queued rows that join (maybe none). The worker also runs its queued tasks inside the call.
Poll = Callable[[int, bool], list[RowState]]


def left_pad(
    prompts: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and position ids of left-padded prompts (``[batch, width]``).

    Positions count real tokens only, so a padded row sees the same positions as alone.
    """
    width = max(len(prompt) for prompt in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    return ids, mask, positions


@dataclass(slots=True)
class DecodeStats:
    """Running totals of a decoder, for metrics and tests (written by the worker thread)."""

    batches: int = 0
    rows: int = 0
    joined_rows: int = 0
    tokens: int = 0
    cancelled_rows: int = 0


@dataclass(slots=True)
class _Batch:
    """The live rows and their device state; ``tokens`` are the ones to feed next."""

    rows: list[RowState]
    cache: Any
    mask: torch.Tensor
    next_positions: torch.Tensor
    logits: torch.Tensor
    tokens: torch.Tensor


class BatchDecoder:
    """Runs :meth:`decode` on a model that owns a device; used by the worker thread only."""

    def __init__(
        self, model: Any, device: torch.device, pad_id: int, tap: LayerTap | None = None
    ) -> None:
        self._model = model
        self._device = device
        self._pad_id = pad_id
        self._tap = tap
        self.stats = DecodeStats()

    def _capture(self, rows: Sequence[RowState]) -> AbstractContextManager[dict[int, Any]]:
        """Record the tap's layers when a row wants them."""
        if self._tap is None or not any(row.recorder is not None for row in rows):
            return nullcontext({})
        return self._tap.capture()

    def decode(self, rows: Sequence[RowState], poll: Poll | None = None) -> None:
        """Decode until every row (and every row that joined through ``poll``) is done."""
        with torch.inference_mode():
            batch = self._start(rows)
            if batch is None:
                return
            self.stats.batches += 1
            while True:
                self._advance(batch)
                if poll is not None:
                    self._join(batch, poll(len(batch.rows), kv.supports_surgery(batch.cache)))
                if not batch.rows:
                    return
                self._step(batch)

    def _start(self, rows: Sequence[RowState]) -> _Batch | None:
        """Prefill the rows still wanted; ``None`` when there are none."""
        active = [row for row in rows if not row.owner.cancelled()]
        self.stats.cancelled_rows += len(rows) - len(active)
        if not active:
            return None
        self.stats.rows += len(active)
        ids, mask, positions = left_pad([row.spec.prompt_ids for row in active], self._pad_id)
        mask = mask.to(self._device)
        with self._capture(active) as captured:
            output = self._model(
                input_ids=ids.to(self._device),
                attention_mask=mask,
                position_ids=positions.to(self._device),
                use_cache=True,
                logits_to_keep=1,
            )
        if captured:
            _record_prompts(active, captured, mask)
        empty = torch.zeros(0, dtype=torch.long)
        next_positions = positions[:, -1:].to(self._device) + 1
        logits = output.logits[:, -1, :]
        return _Batch(active, output.past_key_values, mask, next_positions, logits, empty)

    def _advance(self, batch: _Batch) -> None:
        """Pick, score and record one token per row; drop finished and cancelled rows."""
        rows = batch.rows
        tokens = choose_tokens(batch.logits, [row.spec.sampler for row in rows])
        top_k = max(row.spec.top_logprobs for row in rows)
        scored = step_logprobs(batch.logits, tokens, top_k)
        accepted = 0
        for i, row in enumerate(rows):
            if row.feeding_last:  # its last token's states are recorded now: it is done
                row.feeding_last = False
                row.owner.on_finished(row)
                continue
            row.accept(int(tokens[i]), scored.chosen[i], scored.top_ids[i], scored.top_values[i])
            accepted += 1
            # A row cut by max_tokens never fed its last token back; a recording row stays one
            # more (cached) step for that token's states, then finishes.
            row.feeding_last = row.recorder is not None and row.finish_reason == "length"
            row.owner.on_progress(row)
            if row.finished and not row.feeding_last:
                row.owner.on_finished(row)
        self.stats.tokens += accepted
        unfinished = [i for i, row in enumerate(rows) if not row.finished or row.feeding_last]
        keep = [i for i in unfinished if not rows[i].owner.cancelled()]
        self.stats.cancelled_rows += len(unfinished) - len(keep)
        batch.tokens = tokens
        if len(keep) < len(rows):
            self._select(batch, keep)

    def _select(self, batch: _Batch, keep: list[int]) -> None:
        batch.rows = [batch.rows[i] for i in keep]
        batch.tokens = batch.tokens[keep]
        if not keep:
            return
        index = torch.tensor(keep, device=self._device)
        batch.cache.batch_select_indices(index)
        batch.mask, batch.next_positions = batch.mask[index], batch.next_positions[index]
        if kv.supports_surgery(batch.cache):
            # Padding that only departed rows needed is dropped from the front.
            leading = int(batch.mask.any(dim=0).long().argmax())
            kv.trim_left(batch.cache, leading)
            batch.mask = batch.mask[:, leading:]

    def _join(self, batch: _Batch, joiners: list[RowState]) -> None:
        """Prefill queued rows and merge them into the running batch."""
        if not joiners:
            return
        joined = self._start(joiners)
        if joined is None:
            return
        self.stats.joined_rows += len(joined.rows)
        self._advance(joined)
        if not joined.rows:
            return
        if not batch.rows:
            batch.rows, batch.cache, batch.mask = joined.rows, joined.cache, joined.mask
            batch.next_positions, batch.tokens = joined.next_positions, joined.tokens
            return
        length = kv.merge(batch.cache, joined.cache)
        pad = torch.nn.functional.pad
        batch.mask = torch.cat(
            [
                pad(batch.mask, (length - batch.mask.shape[1], 0)),
                pad(joined.mask, (length - joined.mask.shape[1], 0)),
            ]
        )
        batch.next_positions = torch.cat([batch.next_positions, joined.next_positions])
        batch.tokens = torch.cat([batch.tokens, joined.tokens])
        batch.rows = batch.rows + joined.rows

    def _step(self, batch: _Batch) -> None:
        """Feed each row's last token; the cache grows by one position."""
        ones = torch.ones((len(batch.rows), 1), dtype=batch.mask.dtype, device=self._device)
        batch.mask = torch.cat([batch.mask, ones], dim=-1)
        with self._capture(batch.rows) as captured:
            output = self._model(
                input_ids=batch.tokens.view(-1, 1).to(self._device),
                attention_mask=batch.mask,
                position_ids=batch.next_positions,
                past_key_values=batch.cache,
                use_cache=True,
            )
        if captured:
            for index, row in enumerate(batch.rows):
                if row.recorder is not None:
                    row.recorder.answer_token(captured, index)
        batch.next_positions = batch.next_positions + 1
        batch.logits = output.logits[:, -1, :]


def _record_prompts(
    rows: Sequence[RowState], captured: dict[int, torch.Tensor], mask: torch.Tensor
) -> None:
    """Each recording row's prompt span: its last token's state and the mean over its tokens
    (the prompts are left-padded, so the last column is every row's last token)."""
    weights = mask.unsqueeze(-1).float()
    for layer, states in captured.items():
        hidden = states.float()
        means = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
        for index, row in enumerate(rows):
            if row.recorder is not None and layer in row.recorder.layers:
                row.recorder.prompt(layer, hidden[index, -1], means[index])
