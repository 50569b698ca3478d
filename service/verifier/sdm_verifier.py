"""``SDMVerifier``: hidden-state encoder + logprob attributes + SDM model, on one device worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from service.config import VerifierSettings
from service.core.errors import ConfigurationError
from service.core.verdict import NearestExemplar, Verdict, VerificationInput, VerifierInfo
from service.verifier.batching import MicroBatcher
from service.verifier.encoder import HiddenStateEncoder, SharedModel, layer_from_identity
from service.verifier.features import FEATURE_COMPOSITION, compose_features, feature_dimension
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
        self._model: SDMModel | None = None
        self._encoder: HiddenStateEncoder | None = None
        self._batcher: MicroBatcher[tuple[VerificationInput, int], Verdict] | None = None

    @property
    def info(self) -> VerifierInfo:
        """Artifact id and device (after ``start``)."""
        if self._model is None or self._encoder is None:
            return VerifierInfo("not-loaded", "none", "not loaded")
        description = (
            f"SDM over {self._encoder.identity['model']} hidden states, "
            f"{self._model.support_size} support rows"
        )
        return VerifierInfo(self._model.artifact_id, self._encoder.device, description)

    async def start(self) -> None:
        """Load the artifact and encoder, check they belong together, start the worker."""
        artifact = self._settings.artifact
        try:
            self._model = await asyncio.to_thread(
                SDMModel.load, artifact, device=self._settings.device
            )
        except ArtifactError as error:
            raise ConfigurationError(f"cannot load the verifier artifact: {error}") from error
        self._encoder = await asyncio.to_thread(self._load_encoder)
        check_compatible(self._model, self._encoder, artifact)
        self._batcher = MicroBatcher(
            self._verify_batch,
            max_batch_size=self._settings.max_batch_size,
            max_wait_ms=self._settings.max_wait_ms,
            on_batch=self._observer.verifier_batch,
            name="sdm-verifier",
        )
        self._batcher.start()

    def _load_encoder(self) -> HiddenStateEncoder:
        # The artifact says which layer it was trained on; the fingerprint check then covers
        # the rest (model weights, template, pooling).
        assert self._model is not None
        try:
            layer = recorded_encoder_layer(self._model)
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

    async def close(self) -> None:
        """Stop the worker."""
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None

    async def verify(
        self, items: Sequence[VerificationInput], *, nearest_exemplars: int = 0
    ) -> list[Verdict]:
        """One verdict per answer; concurrent requests share device calls."""
        if self._batcher is None:
            raise ConfigurationError("the verifier is not started")
        batcher = self._batcher
        return list(
            await asyncio.gather(*(batcher.submit((item, nearest_exemplars)) for item in items))
        )

    def _verify_batch(self, batch: list[tuple[VerificationInput, int]]) -> list[Verdict]:
        """Runs on the worker thread: encode, compose features, score."""
        assert self._encoder is not None and self._model is not None
        items = [item for item, _ in batch]
        started = time.perf_counter()
        hidden = self._encoder.encode(items)
        self._observer.stage("encode", time.perf_counter() - started)
        features = compose_features(hidden, items)
        nearest = [wanted for _, wanted in batch]
        scores = self._model.score(features, nearest_exemplars=max(nearest))
        return to_verdicts(scores, nearest)
