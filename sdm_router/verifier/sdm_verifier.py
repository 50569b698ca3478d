"""``SDMVerifier``: hidden-state encoder + logprob attributes + SDM model, on one device worker."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sdm_router.config import VerifierSettings
from sdm_router.core.errors import ConfigurationError
from sdm_router.core.states import DISABLED, RECORDED
from sdm_router.core.verdict import (
    NO_ARTIFACT_ID,
    NearestExemplar,
    Verdict,
    VerificationInput,
    VerifierInfo,
)
from sdm_router.verifier.batching import MicroBatcher
from sdm_router.verifier.encoder import HiddenStateEncoder, RecordsStates, SharedModel
from sdm_router.verifier.features import FEATURE_COMPOSITION, compose_features, feature_dimension
from sdm_router.verifier.protocol import ReloadRefused
from sdm_router.verifier.recipe import EncoderRecipe
from sdm_router.verifier.sdm import ArtifactError, SDMModel, SDMScores

logger = logging.getLogger(__name__)

CORRECT_CLASS = 1
F32Array = npt.NDArray[np.float32]


class VerifierObserver(Protocol):
    """Metrics the verifier reports (``GatewayMetrics`` implements it)."""

    def stage(self, stage: str, seconds: float) -> None:
        """A stage took ``seconds``."""

    def verifier_batch(self, size: int) -> None:
        """One device call verified ``size`` answers."""

    def verifier_features(self, source: str, reason: str) -> None:
        """One answer's hidden-state features came from ``source`` (``recorded``: the
        generator's own pass; ``encoded``: a forward pass here) for ``reason``."""


def recorded_encoder(model: SDMModel) -> EncoderRecipe:
    """The encoder layer and pooling recorded in the artifact's metadata (the defaults, the
    final layer and ``final+mean``, when it records none)."""
    metadata = model.contents.metadata or {}
    identity = metadata.get("sdmRouter", {}).get("encoder")
    return EncoderRecipe.from_identity(identity if isinstance(identity, dict) else None)


def calibrated_on(model: SDMModel) -> frozenset[str] | None:
    """The model identities the artifact was calibrated on (``metadata.sdmRouter.calibratedOn``,
    a list of ``{"model", "rows"}``); None when it records none (it covers every model)."""
    metadata = model.contents.metadata or {}
    recorded = metadata.get("sdmRouter", {}).get("calibratedOn")
    models = frozenset(
        str(entry["model"])
        for entry in (recorded if isinstance(recorded, list) else ())
        if isinstance(entry, dict) and entry.get("model")
    )
    return models or None


def lineage_of(model: SDMModel) -> tuple[tuple[str, str], ...]:
    """What the artifact records of how it was made, as (name, value) pairs: when and by what,
    its calibration rows per model, the split and seed, and each parent it was updated from."""
    contents = model.contents
    router = (contents.metadata or {}).get("sdmRouter", {})
    facts = [("created", contents.created_at),
             ("producer", " ".join(str(v) for v in contents.producer.values()))]  # fmt: skip
    for entry in router.get("calibratedOn") or ():
        if isinstance(entry, dict):
            facts.append(("calibrated on", f"{entry.get('model')}: {entry.get('rows')} rows"))
    for key, name in (("splitCounts", "split rows"), ("holdoutFamilies", "held-out families"),
                      ("trainingSeed", "training seed"), ("dataRows", "data rows")):  # fmt: skip
        if router.get(key) is not None:
            facts.append((name, json.dumps(router[key], sort_keys=True)))
    lineage = router.get("lineage")
    while isinstance(lineage, dict):
        facts.append((
            "updated from",
            f"{lineage.get('parentArtifactId')} ({lineage.get('mode')}, {lineage.get('rule')})",
        ))  # fmt: skip
        lineage = lineage.get("parentLineage")
    return tuple(facts)


def load_recorded_encoder(
    model: SDMModel, source: str | os.PathLike[str] | None, *, device: str = "auto"
) -> HiddenStateEncoder:
    """Load ``source`` (a model folder, a .gguf, or None/``embedded``) as the encoder ``model``
    records: its layer and pooling. Raises ValueError when the model lacks that layer."""
    recipe = recorded_encoder(model)
    return HiddenStateEncoder.from_local(
        source, device=device, layer=recipe.layer, pooling=recipe.pooling
    )


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


def to_verdicts(
    scores: SDMScores,
    nearest: Sequence[int],
    documents: Sequence[str | None] | None = None,
) -> list[Verdict]:
    """Convert batched SDM scores into per-answer verdicts; ``documents``: the support rows'
    text, when the artifact holds it (its exemplars then carry it)."""
    verdicts = []
    for i, wanted in enumerate(nearest):
        row = scores.row(i)
        exemplars = tuple(
            NearestExemplar(
                id=item.id, label=item.label, distance=item.squared_distance,
                text=None if documents is None else documents[item.support_index],
            )
            for item in row.nearest_exemplars[:wanted]
        )  # fmt: skip
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
        self._shadow: ShadowScorer | None = None

    @property
    def info(self) -> VerifierInfo:
        """Artifact id, device and what it was calibrated on (after ``start``); with no
        artifact loaded the id is ``none`` (every route observes)."""
        if self._current is None or self._encoder is None:
            return VerifierInfo(NO_ARTIFACT_ID, "none", "no artifact loaded")
        model = self._models[self._current]
        description = (
            f"SDM over {self._encoder.identity['model']} hidden states, "
            f"{model.support_size} support rows"
        )
        return VerifierInfo(
            model.artifact_id, self._encoder.device, description, calibrated_on(model),
            regions=tuple(
                (region.alpha, region.minimum_rescaled_similarity)
                for region in model.contents.regions
            ),
            lineage=lineage_of(model),
        )  # fmt: skip

    async def start(self) -> None:
        """Load the artifact and encoder, check they belong together, start the worker. With
        no ``verifier.artifact`` nothing is loaded: the encoder loads with the first artifact
        (``reload``), whose metadata says which layer and pooling it reads."""
        artifact = self._settings.artifact
        if artifact is not None:
            try:
                model = await asyncio.to_thread(
                    SDMModel.load, artifact, device=self._settings.device
                )
            except ArtifactError as error:
                raise ConfigurationError(f"cannot load the verifier artifact: {error}") from error
            self._encoder = await asyncio.to_thread(self._load_encoder, model, artifact)
            check_compatible(model, self._encoder, artifact)
            self._install(model)
            if self._settings.shadow is not None:
                self._shadow = await self._load_shadow(self._settings.shadow, self._encoder)
        self._batcher = MicroBatcher(
            self._verify_batch,
            max_batch_size=self._settings.max_batch_size,
            max_wait_ms=self._settings.max_wait_ms,
            on_batch=self._observer.verifier_batch,
            name="sdm-verifier",
        )
        self._batcher.start()

    async def _load_shadow(self, path: Path, encoder: HiddenStateEncoder) -> ShadowScorer:
        try:
            model = await asyncio.to_thread(SDMModel.load, path, device=self._settings.device)
        except ArtifactError as error:
            raise ConfigurationError(f"cannot load the shadow artifact: {error}") from error
        check_compatible(model, encoder, path)
        backlog = self._settings.shadow_queue
        return ShadowScorer(model, backlog, backlog * self._settings.max_batch_size * 4)

    @property
    def shadow_id(self) -> str | None:
        """The shadow (candidate) artifact's id, when one is configured."""
        return None if self._shadow is None else self._shadow.artifact_id

    async def shadow(self, verdict: Verdict) -> Verdict | None:
        """The shadow artifact's verdict on the input ``verdict`` judged (None: no shadow, or it
        skipped that batch); each verdict can be asked once."""
        return None if self._shadow is None else await self._shadow.verdict_for(verdict)

    def _load_encoder(self, model: SDMModel, artifact: Path) -> HiddenStateEncoder:
        # The artifact says which layer and pooling it was trained on; the fingerprint check then
        # covers the rest (model weights, template).
        try:
            if self._shared_model is not None:
                shared, recipe = self._shared_model, recorded_encoder(model)
                encoder = HiddenStateEncoder(
                    shared.loaded, layer=recipe.layer, pooling=recipe.pooling, owner=shared
                )
                if isinstance(shared, RecordsStates) and self._settings.recorded_states:
                    # The generator records the layer this encoder pools: no second forward.
                    shared.record_layers("verifier", encoder.recordable_layers)
                return encoder
            assert self._settings.encoder_model is not None
            return load_recorded_encoder(
                model, self._settings.encoder_model, device=self._settings.device
            )
        except ValueError as error:
            raise ConfigurationError(f"verifier artifact {artifact}: {error}") from error

    def _install(self, model: SDMModel) -> None:
        """Make ``model`` current; the previous one stays while requests pin it."""
        previous, self._current = self._current, model.artifact_id
        self._models[model.artifact_id] = model
        if previous is not None and previous != model.artifact_id and not self._pins[previous]:
            self._models.pop(previous, None)

    async def reload(self, artifact: Path | None = None) -> VerifierInfo:
        """Load, validate and swap in ``artifact`` (default: the configured path). The first
        artifact of a verifier started without one also loads the encoder it records."""
        path = artifact or self._settings.artifact
        if self._batcher is None:
            raise ReloadRefused("the verifier is not started")
        if path is None:
            raise ReloadRefused("no artifact given and verifier.artifact names none")
        async with self._reloading:
            try:
                model = await asyncio.to_thread(SDMModel.load, path, device=self._settings.device)
                encoder = self._encoder
                if encoder is None:  # the first artifact: its recipe says which encoder
                    encoder = await asyncio.to_thread(self._load_encoder, model, path)
                check_compatible(model, encoder, path)
            except ArtifactError as error:
                raise ReloadRefused(f"cannot load {path}: {error}") from error
            except ConfigurationError as error:
                raise ReloadRefused(str(error)) from error
            except Exception as error:  # a refusal, never a failed request: the old one serves
                logger.exception("verifier artifact %s could not be loaded", path)
                raise ReloadRefused(
                    f"cannot load {path}: {type(error).__name__} (the log has the details)"
                ) from error
            self._encoder = encoder
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
        """Stop the worker (and the shadow's)."""
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None
        if self._shadow is not None:
            await asyncio.to_thread(self._shadow.close)
            self._shadow = None

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
        if self._settings.recorded_states:
            hidden, reasons = self._encoder.features(items)
        else:
            hidden, reasons = self._encoder.encode(items), [DISABLED] * len(items)
        if any(reason != RECORDED for reason in reasons):
            self._observer.stage("encode", time.perf_counter() - started)
        for reason in reasons:
            self._observer.verifier_features(
                "recorded" if reason == RECORDED else "encoded", reason
            )
        features = compose_features(hidden, items)
        scoring = time.perf_counter()
        verdicts: list[Verdict | None] = [None] * len(batch)
        for artifact in {artifact for _, _, artifact in batch}:
            rows = [i for i, (_, _, pinned) in enumerate(batch) if pinned == artifact]
            nearest = [batch[i][1] for i in rows]
            model = self._models[artifact]
            scores = model.score(features[rows], nearest_exemplars=max(nearest))
            documents = model.contents.support.documents
            for row, verdict in zip(rows, to_verdicts(scores, nearest, documents), strict=True):
                verdicts[row] = verdict
        done = [verdict for verdict in verdicts if verdict is not None]
        self._observer.stage("score", time.perf_counter() - scoring)
        if self._shadow is not None:
            self._shadow.submit(features, done)
        return done


class ShadowScorer:
    """Scores the features of every live batch with a candidate artifact on its own thread, so
    the live verdicts never wait for it. Each result is kept for the live verdict it shadows
    (by identity; at most ``kept`` of them, oldest dropped) until the pipeline asks for it. A
    batch that finds ``backlog`` batches still waiting is skipped."""

    def __init__(self, model: SDMModel, backlog: int, kept: int) -> None:
        self._model = model
        self._backlog = backlog
        self._kept = kept
        self._waiting = 0
        self._lock = threading.Lock()
        self._results: OrderedDict[
            int, tuple[Verdict, concurrent.futures.Future[list[Verdict]], int]
        ] = OrderedDict()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sdm-shadow")
        self.skipped = 0

    @property
    def artifact_id(self) -> str:
        """The candidate's id."""
        return self._model.artifact_id

    def submit(self, features: F32Array, live: list[Verdict]) -> None:
        """Queue ``features`` (one row per verdict in ``live``) for scoring; never blocks."""
        with self._lock:
            if self._waiting >= self._backlog:
                self.skipped += 1
                return
            self._waiting += 1
        future = self._pool.submit(self._score, features)
        future.add_done_callback(self._finished)
        with self._lock:
            for row, verdict in enumerate(live):
                self._results[id(verdict)] = (verdict, future, row)
            while len(self._results) > self._kept:
                self._results.popitem(last=False)

    def _finished(self, _: concurrent.futures.Future[list[Verdict]]) -> None:
        with self._lock:
            self._waiting -= 1

    def _score(self, features: F32Array) -> list[Verdict]:
        scores = self._model.score(features)
        return to_verdicts(scores, [0] * features.shape[0])

    async def verdict_for(self, verdict: Verdict) -> Verdict | None:
        """The candidate's verdict on the row ``verdict`` was computed from."""
        with self._lock:
            entry = self._results.pop(id(verdict), None)
        if entry is None or entry[0] is not verdict:
            return None
        _, future, row = entry
        return (await asyncio.wrap_future(future))[row]

    def close(self) -> None:
        """Finish what is queued and stop the thread."""
        self._pool.shutdown(wait=True)
