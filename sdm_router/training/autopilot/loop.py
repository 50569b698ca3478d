"""The autopilot's loop: every ``interval_seconds``, the replica holding the lease looks for
new labelled decisions; once ``min_labels`` of them exist it builds a candidate
(``build.py``), gates it on the held-out labelled rows (``gate.py``), registers it, and
promotes it when the gate passes. Replicas follow the registry (``pipeline/registry_follow.py``);
the guarantee's rollback goes through the registry too. Every step is recorded in the database
(``GET /admin/autopilot``), counted (``sdm_router_autopilot_events_total``) and logged.

A first promotion is provisional: the live guarantee reads ``provisional`` until labelled live
traffic lifts its lower bound to ``accept_alpha - margin`` (``core.guarantee.labels_to_hold``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Protocol

from sdm_router.config import Settings
from sdm_router.core.guarantee import labels_to_hold
from sdm_router.core.verdict import Estimator
from sdm_router.storage.registry import ArtifactRegistry, StepRecord
from sdm_router.training.autopilot.build import Candidate, NotEnoughData, build_candidate, encode
from sdm_router.training.autopilot.gate import Accepted, GateRule, accepted_on, judge
from sdm_router.training.importing import labelled_decisions
from sdm_router.training.records import AnswerRecord
from sdm_router.training.verifier_build import DEFAULT_TRAINING
from sdm_router.training.verifier_update import UpdateRule
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.sdm import SDMModel, TrainingConfig

logger = logging.getLogger(__name__)
LEASE = "autopilot"


class AutopilotObserver(Protocol):
    """Counts the loop's steps (``GatewayMetrics`` implements it)."""

    def autopilot_event(self, event: str) -> None:
        """``build``, ``promoted``, ``refused`` or ``error``."""

    def autopilot_candidate(self, lower_bound: float) -> None:
        """The last candidate's held-out lower bound."""


def encoder_source(settings: Settings) -> str | None:
    """The causal LM the verifier's encoder reads (a folder, a .gguf, or None: embedded)."""
    verifier = settings.verifier
    if verifier.encoder_model is not None:
        return str(verifier.encoder_model)
    backend = settings.backends.get(verifier.encoder_backend or "")
    source = getattr(backend, "source", "embedded")
    return None if source == "embedded" else str(source)


class Autopilot:
    """The loop (see the module). ``run_once`` is blocking; ``start`` runs it off the loop."""

    def __init__(
        self,
        settings: Settings,
        registry: ArtifactRegistry,
        observer: AutopilotObserver,
        *,
        training: TrainingConfig = DEFAULT_TRAINING,
        encoder: HiddenStateEncoder | None = None,
    ) -> None:
        self._settings = settings
        self._config = settings.autopilot
        self._registry = registry
        self._observer = observer
        self._training = training
        self._encoder = encoder
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None

    def gate_rule(self) -> tuple[GateRule, Estimator]:
        """The gate at the strictest accept_alpha of the verified routes (and its estimator)."""
        strictest = max(self._settings.routes.values(), key=lambda route: route.accept_alpha)
        config = self._config
        rule = GateRule(
            strictest.accept_alpha, config.min_accepted, config.min_lower_bound, config.confidence
        )
        return rule, strictest.estimator

    # ---- one pass ----------------------------------------------------------------------

    def run_once(self) -> StepRecord | None:
        """One pass: None when another replica holds the lease or too few new labels exist,
        else the last step recorded (``promote``, ``gate`` or ``error``)."""
        if not self._registry.acquire(LEASE, self.holder, self._config.lease_seconds):
            return None
        records = list(labelled_decisions(self._settings.storage))
        built_on = self._labels_at_last_build()
        if len(records) - built_on < self._config.min_labels:
            return None
        try:
            return self._build_and_gate(records)
        except NotEnoughData as error:
            return self._record("build", "skipped", str(error), labels=len(records))
        except Exception as error:  # recorded; the next pass tries again
            logger.exception("the autopilot's build failed")
            self._observer.autopilot_event("error")
            return self._record(
                "error", "failed", f"{type(error).__name__}: {error}", labels=len(records)
            )

    def _labels_at_last_build(self) -> int:
        for step in reversed(self._registry.steps(limit=200)):
            if step.step == "build":
                return int(step.figures.get("labels", 0))
        return 0

    def _record(self, step: str, decision: str, detail: str, **figures: Any) -> StepRecord:
        artifact = figures.pop("artifact_id", None)
        record = self._registry.record_step(
            step, decision, detail, artifact_id=artifact, figures=figures
        )
        logger.info("autopilot %s: %s (%s)", step, decision, detail)
        return record

    def _load_encoder(self) -> HiddenStateEncoder:
        if self._encoder is None:
            device = self._settings.verifier.device
            self._encoder = HiddenStateEncoder.from_local(
                encoder_source(self._settings), device=device
            )
        return self._encoder

    def _build_and_gate(self, records: list[AnswerRecord]) -> StepRecord:
        live = self._registry.live()
        encoder = self._load_encoder()
        rule = UpdateRule(self._config.held_out, self._config.support)
        folder = self._config.artifacts_folder()
        candidate = build_candidate(
            records, encoder, folder, rule, live.id if live else None, self._training
        )
        self._observer.autopilot_event("build")
        self._record(
            "build", "built", f"candidate {candidate.model.artifact_id} from {len(records)} "
            f"labelled decisions", artifact_id=candidate.model.artifact_id,
            labels=len(records), **candidate.counts, seconds=candidate.seconds,
        )  # fmt: skip
        gate, estimator = self.gate_rule()
        mine = accepted_on(
            candidate.model, candidate.held_out_vectors, candidate.held_out_labels,
            gate.accept_alpha, estimator,
        )  # fmt: skip
        live_model = self._live_model(live.path if live else None)
        theirs = None
        if live_model is not None:
            theirs = self._live_accepts(
                live_model, records, candidate, gate.accept_alpha, estimator
            )
        result = judge(mine, theirs, gate)
        self._observer.autopilot_candidate(float(result.figures["lower_bound"]))
        identifier = candidate.model.artifact_id
        self._registry.register(
            identifier, str(candidate.path), parent_id=live.id if live else None,
            routes=tuple(self._settings.routes), figures=result.figures,
        )  # fmt: skip
        if not result.passed:
            self._observer.autopilot_event("refused")
            return self._record(
                "gate", "refused", "; ".join(result.reasons), artifact_id=identifier,
                **result.figures,
            )  # fmt: skip
        self._record("gate", "passed", "every condition holds", artifact_id=identifier,
                     **result.figures)  # fmt: skip
        retired = self._registry.promote(identifier)
        self._observer.autopilot_event("promoted")
        needed = labels_to_hold(gate.accept_alpha, margin=self._settings.guarantee.margin,
                                confidence=self._settings.guarantee.confidence)  # fmt: skip
        return self._record(
            "promote", "promoted",
            f"{identifier} is live (retired: {retired or 'none, the routes observed'}); "
            f"provisional until at least {needed} labelled live accepted answers lift the "
            "guarantee's lower bound", artifact_id=identifier, retired=retired,
            labels_to_hold=needed,
        )  # fmt: skip

    def _live_model(self, registered: str | None) -> SDMModel | None:
        """The artifact serving now: the registry's live one, else the configured one (None:
        the routes observe)."""
        path = registered or self._settings.verifier.artifact
        if path is None:
            return None
        return SDMModel.load(Path(path), device="cpu")

    def _live_accepts(
        self,
        live: SDMModel,
        records: list[AnswerRecord],
        candidate: Candidate,
        alpha: float,
        estimator: Estimator,
    ) -> Accepted:
        """What the live artifact accepts of the same held-out rows (encoded with the encoder
        it records, when that is not the candidate's)."""
        vectors = candidate.held_out_vectors
        if live.representation.get("fingerprint") != self._load_encoder().fingerprint:
            from sdm_router.verifier.sdm_verifier import load_recorded_encoder

            theirs = load_recorded_encoder(live, encoder_source(self._settings), device="cpu")
            rule = UpdateRule(self._config.held_out, self._config.support)
            rows = [row for row in records if rule.part(row.group_id) == "held_out"]
            vectors = encode(rows, theirs, self._config.artifacts_folder() / "cache")
        return accepted_on(live, vectors, candidate.held_out_labels, alpha, estimator)

    # ---- running -----------------------------------------------------------------------

    async def start(self) -> None:
        """Run a pass every ``interval_seconds`` until closed (each pass off the event loop)."""
        self._task = asyncio.create_task(self._run(), name="autopilot")

    async def close(self) -> None:
        """Stop, and give the lease up."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self._registry.release, LEASE, self.holder)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # the database may be away: the next pass tries again
                logger.exception("the autopilot's pass failed")
            await asyncio.sleep(self._config.interval_seconds)
