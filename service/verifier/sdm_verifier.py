"""``SDMVerifier``: hidden-state encoder + logprob attributes + SDM model, on one device worker."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from service.config import VerifierSettings
from service.core.errors import ConfigurationError
from service.core.verdict import NearestExemplar, Verdict, VerificationInput, VerifierInfo
from service.verifier.batching import MicroBatcher
from service.verifier.encoder import HiddenStateEncoder, SharedModel, layer_from_identity
from service.verifier.features import FEATURE_COMPOSITION, compose_features, feature_dimension
from service.verifier.protocol import ReloadRefused
from service.verifier.sdm import ArtifactError, SDMModel, SDMScores

CORRECT_CLASS = 1


class VerifierObserver(Protocol):
    """Metrics the verifier reports (``GatewayMetrics`` implements it)."""

    def stage(self, stage: str, seconds: float) -> None:
        """A stage took ``seconds``."""

    def verifier_batch(self, size: int) -> None:
        """One device call verified ``size`` answers."""


def recorded_encoder_layer(model: SDMModel) -> int | None:
    """The encoder layer recorded in the artifact's metadata (None: the final layer)."""
    metadata = model.contents.metadata or {}
    identity = metadata.get("sdmRouter", {}).get("encoder")
    return layer_from_identity(identity if isinstance(identity, dict) else None)


def check_compatible(model: SDMModel, encoder: HiddenStateEncoder, artifact: Path) -> None:
    """Refuse an artifact built for another encoder or feature composition."""
    recorded = model.representation.get("fingerprint")
    if recorded != encoder.fingerprint:
        raise ConfigurationError(
            f"verifier artifact {artifact} was built for encoder fingerprint {recorded!r} "
            f"(model {model.representation.get('model')!r}), but the configured encoder is "
            f"{encoder.fingerprint!r} ({encoder.identity['model']}); rebuild the verifier "
            "for this encoder (sdm-router verifier build)"
        )
    expected = feature_dimension(encoder.dimension)
    if model.embedding_dimension != expected:
        raise ConfigurationError(
            f"verifier artifact {artifact} expects {model.embedding_dimension}-dimensional inputs "
            f"but the encoder with {FEATURE_COMPOSITION} gives {expected}"
        )
    if model.number_of_classes != 2:
        raise ConfigurationError(
            f"verifier artifact {artifact} has {model.number_of_classes} classes; a gateway "
            "verifier is binary (0 = answer wrong, 1 = answer correct)"
        )


def to_verdicts(scores: SDMScores, nearest: Sequence[int]) -> list[Verdict]:
    """Convert batched SDM scores into per-answer verdicts."""
    verdicts = []
    for i, wanted in enumerate(nearest):
        row = scores.row(i)
        exemplars = tuple(
            NearestExemplar(id=item.id, label=item.label, distance=item.squared_distance)
            for item in row.nearest_exemplars[:wanted]
        )
        verdicts.append(
            Verdict(
                prediction=row.prediction,
                probability=row.sdm[row.prediction],
                region_alpha=row.centroid_region_alpha,
                region_alpha_lower=row.lower_region_alpha,
                q=row.q,
                d=row.d,
                q_prime=row.q_prime,
                is_ood=row.is_ood,
                nearest_exemplars=exemplars,
            )
        )
    return verdicts


class SDMVerifier:
    """Verifies answers; the encoder and the SDM model run on one worker thread in batches."""

    def __init__(
        self,
        settings: VerifierSettings,
        shared_model: SharedModel | None,
        observer: VerifierObserver,
    ) -> None:
        """``shared_model``: the component whose loaded model the encoder uses (and whose thread
        runs its forwards); None loads ``settings.encoder_model`` for the verifier alone."""
        self._settings = settings
        self._shared_model = shared_model
        self._observer = observer
        # Loaded artifacts by id: the current one, plus any an in-flight request still pins.
        self._models: dict[str, SDMModel] = {}
        self._pins: Counter[str] = Counter()
        self._current: str | None = None
        self._reloading = asyncio.Lock()
        self._encoder: HiddenStateEncoder | None = None
        self._batcher: MicroBatcher[tuple[VerificationInput, int, str], Verdict] | None = None

    @property
    def info(self) -> VerifierInfo:
        """Artifact id and device (after ``start``)."""
        if self._current is None or self._encoder is None:
            return VerifierInfo("not-loaded", "none", "not loaded")
        model = self._models[self._current]
        description = (
            f"SDM over {self._encoder.identity['model']} hidden states, "
            f"{model.support_size} support rows"
        )
        return VerifierInfo(model.artifact_id, self._encoder.device, description)

    async def start(self) -> None:
        """Load the artifact and encoder, check they belong together, start the worker."""
        artifact = self._settings.artifact
        try:
            model = await asyncio.to_thread(SDMModel.load, artifact, device=self._settings.device)
        except ArtifactError as error:
            raise ConfigurationError(f"cannot load the verifier artifact: {error}") from error
        self._encoder = await asyncio.to_thread(self._load_encoder, model)
        check_compatible(model, self._encoder, artifact)
        self._install(model)
        self._batcher = MicroBatcher(
            self._verify_batch,
            max_batch_size=self._settings.max_batch_size,
            max_wait_ms=self._settings.max_wait_ms,
            on_batch=self._observer.verifier_batch,
            name="sdm-verifier",
        )
        self._batcher.start()

    def _load_encoder(self, model: SDMModel) -> HiddenStateEncoder:
        # The artifact says which layer it was trained on; the fingerprint check then covers
        # the rest (model weights, template, pooling).
        try:
            layer = recorded_encoder_layer(model)
            if self._shared_model is not None:
                shared = self._shared_model
                return HiddenStateEncoder(shared.loaded, layer=layer, owner=shared)
            assert self._settings.encoder_model is not None
            return HiddenStateEncoder.from_local(
                self._settings.encoder_model, device=self._settings.device, layer=layer
            )
        except ValueError as error:
            raise ConfigurationError(
                f"verifier artifact {self._settings.artifact}: {error}"
            ) from error

    def _install(self, model: SDMModel) -> None:
        """Make ``model`` current; the previous one stays while requests pin it."""
        previous, self._current = self._current, model.artifact_id
        self._models[model.artifact_id] = model
        if previous is not None and previous != model.artifact_id and not self._pins[previous]:
            self._models.pop(previous, None)

    async def reload(self, artifact: Path | None = None) -> VerifierInfo:
        """Load, validate and swap in ``artifact`` (default: the configured path)."""
        path = artifact or self._settings.artifact
        if self._encoder is None:
            raise ReloadRefused("the verifier is not started")
        encoder = self._encoder
        async with self._reloading:
            try:
                model = await asyncio.to_thread(SDMModel.load, path, device=self._settings.device)
            except ArtifactError as error:
                raise ReloadRefused(f"cannot load {path}: {error}") from error
            try:
                check_compatible(model, encoder, path)
            except ConfigurationError as error:
                raise ReloadRefused(str(error)) from error
            self._install(model)
        return self.info

    @contextmanager
    def pinned(self) -> Iterator[str]:
        """The current artifact's id, kept loaded until the block ends."""
        if self._current is None:
            raise ConfigurationError("the verifier is not started")
        artifact = self._current
        self._pins[artifact] += 1
        try:
            yield artifact
        finally:
            self._pins[artifact] -= 1
            if not self._pins[artifact]:
                del self._pins[artifact]
                if artifact != self._current:
                    self._models.pop(artifact, None)

    async def close(self) -> None:
        """Stop the worker."""
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None

    async def verify(
        self,
        items: Sequence[VerificationInput],
        *,
        nearest_exemplars: int = 0,
        artifact: str | None = None,
    ) -> list[Verdict]:
        """One verdict per answer; concurrent requests share device calls."""
        if self._batcher is None or self._current is None:
            raise ConfigurationError("the verifier is not started")
        batcher = self._batcher
        if artifact is None:
            with self.pinned() as current:
                return await self.verify(
                    items, nearest_exemplars=nearest_exemplars, artifact=current
                )
        return list(
            await asyncio.gather(
                *(batcher.submit((item, nearest_exemplars, artifact)) for item in items)
            )
        )

    def _verify_batch(self, batch: list[tuple[VerificationInput, int, str]]) -> list[Verdict]:
        """Runs on the worker thread: encode once, then score each artifact's rows with it."""
        assert self._encoder is not None
        items = [item for item, _, _ in batch]
        started = time.perf_counter()
        hidden = self._encoder.encode(items)
        self._observer.stage("encode", time.perf_counter() - started)
        features = compose_features(hidden, items)
        verdicts: list[Verdict | None] = [None] * len(batch)
        for artifact in {artifact for _, _, artifact in batch}:
            rows = [i for i, (_, _, pinned) in enumerate(batch) if pinned == artifact]
            nearest = [batch[i][1] for i in rows]
            scores = self._models[artifact].score(features[rows], nearest_exemplars=max(nearest))
            for row, verdict in zip(rows, to_verdicts(scores, nearest), strict=True):
                verdicts[row] = verdict
        return [verdict for verdict in verdicts if verdict is not None]
