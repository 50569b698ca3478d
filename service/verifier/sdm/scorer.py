"""`SDMScorer`: an SDMModel behind a MicroBatcher, so the device is owned by one worker."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ..batching import BatchStats, MicroBatcher
from .model import SDMModel
from .scores import SDMRowScore

F32Array = npt.NDArray[np.float32]


class SDMScorer:
    """Batches concurrent single-row requests into one ``SDMModel.score`` call."""

    def __init__(
        self,
        model: SDMModel,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        nearest_exemplars: int = 0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self._nearest = nearest_exemplars
        self._batcher: MicroBatcher[F32Array, SDMRowScore] = MicroBatcher(
            self._score_batch, max_batch_size, max_wait_ms, on_batch, name="sdm-scorer"
        )

    @property
    def device(self) -> str:
        """The model's device."""
        return self.model.device

    def start(self) -> None:
        """Start the worker thread."""
        self._batcher.start()

    async def close(self) -> None:
        """Drain and stop the worker thread."""
        await self._batcher.close()

    async def score(self, vector: F32Array) -> SDMRowScore:
        """Score one input vector [D] (awaitable; never blocks the event loop)."""
        return await self._batcher.submit(np.asarray(vector, dtype=np.float32).reshape(-1))

    def stats(self) -> BatchStats:
        """Batch sizes seen so far."""
        return self._batcher.stats()

    def _score_batch(self, vectors: list[F32Array]) -> list[SDMRowScore]:
        scores = self.model.score(np.stack(vectors), nearest_exemplars=self._nearest)
        return [scores.row(i) for i in range(len(scores))]
