"""The routing step before generating: where a route starts, from the prompt router's verdicts.

The decision (``decide``): skip every tier the router is sure fails (predicted to fail, inside
the distribution, lower region alpha at least the route's ``skip_alpha``) and start at the
first tier that is not; when every tier is skipped, abstain at once with
``predicted_unanswerable`` (the route's ``on_abstain`` answers). A prompt out of the router's
distribution at any tier follows ``on_ood_prompt`` instead: ``cascade`` (tier 0, as without
routing), ``strongest`` (start at the last tier) or ``abstain`` (reason ``ood_prompt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sdm_router.core.generation import Message
from sdm_router.core.routing import OnOodPrompt, RoutingAction
from sdm_router.core.verdict import Reason, Verdict


class PromptPredictor(Protocol):
    """The prompt router as the cascade uses it (``verifier.prompt_router.PromptRouter``)."""

    @property
    def tiers(self) -> int:
        """How many tiers its verdicts cover (a route routes only with as many tiers)."""

    @property
    def router_id(self) -> str:
        """The router's id (its tier artifacts' ids)."""

    async def start(self) -> None:
        """Load the router (after the verifier: it may share the verifier's model)."""

    async def predict(self, messages: Sequence[Message]) -> tuple[Verdict, ...]:
        """One verdict per tier: class 1 when the tier will answer correctly."""


@dataclass(frozen=True, slots=True)
class RoutingStep:
    """The routing step's outcome: the tier to start at (None: abstain), the skipped tiers, the
    router's verdict per tier and why."""

    action: RoutingAction
    start: int | None
    skipped: tuple[int, ...]
    verdicts: tuple[Verdict, ...]
    reason: Reason | None  # predicted_to_fail (skip), predicted_unanswerable, ood_prompt
    router_id: str
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The ``verification.routing`` object."""
        return {
            "action": self.action.value,
            "reason": None if self.reason is None else self.reason.value,
            "start_tier": self.start,
            "skipped_tiers": list(self.skipped),
            "router": self.router_id,
            "latency_ms": round(self.latency_ms, 3),
            "tiers": [
                {
                    "tier": tier,
                    "prediction": verdict.prediction,
                    "probability": round(float(verdict.probability), 6),
                    "region_alpha": round(float(verdict.region_alpha), 6),
                    "region_alpha_lower": round(float(verdict.region_alpha_lower), 6),
                    "ood": bool(verdict.is_ood),
                }
                for tier, verdict in enumerate(self.verdicts)
            ],
        }


def fails_confidently(verdict: Verdict, skip_alpha: float) -> bool:
    """Whether the router is sure enough that a tier fails to skip it. The one rule."""
    return (
        not verdict.is_ood
        and verdict.prediction == 0
        and verdict.region_alpha_lower >= skip_alpha - 1e-9
    )


def decide(
    verdicts: Sequence[Verdict], skip_alpha: float, on_ood_prompt: OnOodPrompt, router_id: str
) -> RoutingStep:
    """The routing step for one prompt (see the module)."""
    verdicts = tuple(verdicts)
    last = len(verdicts) - 1
    if any(verdict.is_ood for verdict in verdicts):
        if on_ood_prompt is OnOodPrompt.ABSTAIN:
            skipped = tuple(range(len(verdicts)))
            return RoutingStep(
                RoutingAction.ABSTAIN, None, skipped, verdicts, Reason.OOD_PROMPT, router_id
            )
        if on_ood_prompt is OnOodPrompt.STRONGEST and last > 0:
            skipped = tuple(range(last))
            return RoutingStep(
                RoutingAction.SKIP, last, skipped, verdicts, Reason.OOD_PROMPT, router_id
            )
        return RoutingStep(RoutingAction.PROCEED, 0, (), verdicts, Reason.OOD_PROMPT, router_id)
    skips = [fails_confidently(verdict, skip_alpha) for verdict in verdicts]
    start = next((tier for tier, skip in enumerate(skips) if not skip), None)
    if start is None:
        return RoutingStep(
            RoutingAction.ABSTAIN,
            None,
            tuple(range(len(verdicts))),
            verdicts,
            Reason.PREDICTED_UNANSWERABLE,
            router_id,
        )
    if start == 0:
        return RoutingStep(RoutingAction.PROCEED, 0, (), verdicts, None, router_id)
    return RoutingStep(
        RoutingAction.SKIP,
        start,
        tuple(range(start)),
        verdicts,
        Reason.PREDICTED_TO_FAIL,
        router_id,
    )
