"""Routes resolved against live components: what the cascade executes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sdm_router.backends.base import Backend
from sdm_router.config import Settings
from sdm_router.core.routing import OnAbstain, OnBreach, OnOodPrompt, OnUnverified, StreamMode
from sdm_router.core.verdict import Estimator, Reason
from sdm_router.pipeline.policy import DEFAULT_POLICY, Policy, PolicyThresholds, policy_for


@dataclass(frozen=True, slots=True)
class Tier:
    """One rung: a backend and the sampling it uses there. ``model`` is the identity of the
    model the backend serves (config: ``model_identity``): what an artifact must have been
    calibrated on to judge this tier's answers ("" when unknown)."""

    backend: Backend
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    model: str = ""


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """A route (or a direct model, which is a one-tier plan that never escalates or retrieves)."""

    name: str
    tiers: tuple[Tier, ...]
    thresholds: PolicyThresholds
    retrieval: bool
    retrieval_top_k: int
    max_backend_calls: int
    on_abstain: OnAbstain
    abstain_message: str
    stream_mode: StreamMode
    direct: bool = False
    description: str = ""
    verify_tool_calls: bool = True  # judge a tool call as the text name(arguments)
    on_unverified: OnUnverified = OnUnverified.ABSTAIN  # an answer left unjudged: pass | abstain
    drop_params: bool = False  # drop what a tier's backend cannot honour instead of a 400
    policy: Policy = DEFAULT_POLICY  # chooses the next step after each attempt
    # observe mode, and why (no_artifact | uncalibrated_model | rolled_back): tier 0's answer is
    # served unverified and recorded as ``observed``. Set by the route table (routes.py), never
    # by configuration; None: the route verifies.
    observing: Reason | None = None
    on_breach: OnBreach = OnBreach.ALERT
    # the routing step before generating (pipeline/prompt_routing.py): runs when a prompt
    # router is loaded that predicts for as many tiers as the plan has
    prompt_routing: bool = False
    skip_alpha: float = 0.95
    on_ood_prompt: OnOodPrompt = OnOodPrompt.CASCADE

    @property
    def models(self) -> frozenset[str]:
        """The model identities the plan's tiers serve."""
        return frozenset(tier.model for tier in self.tiers)


def route_plan(settings: Settings, name: str, backends: Mapping[str, Backend]) -> RoutePlan:
    """The plan of the configured route ``name`` (the gateway's, and ``data build``'s)."""
    route = settings.routes[name]
    return RoutePlan(
        name=name,
        tiers=tuple(
            Tier(
                backend=backends[tier.backend],
                n=tier.n,
                temperature=tier.temperature,
                top_p=tier.top_p,
                max_tokens=tier.max_tokens,
                model=settings.backends[tier.backend].model_identity,
            )
            for tier in route.tiers
        ),
        thresholds=PolicyThresholds(route.accept_alpha, route.estimator),
        retrieval=route.retrieval,
        retrieval_top_k=settings.retrieval.top_k if settings.retrieval else 0,
        max_backend_calls=route.max_backend_calls,
        on_abstain=route.on_abstain,
        abstain_message=route.abstain_message,
        stream_mode=route.stream_mode,
        description=route.description,
        verify_tool_calls=route.verify_tool_calls,
        on_unverified=route.on_unverified,
        drop_params=route.drop_params,
        policy=policy_for(route),
        on_breach=route.on_breach,
        prompt_routing=route.prompt_routing,
        skip_alpha=route.skip_alpha,
        on_ood_prompt=route.on_ood_prompt,
    )


def build_plans(settings: Settings, backends: Mapping[str, Backend]) -> dict[str, RoutePlan]:
    """Routes as configured, plus one direct plan per backend (generate once, never escalate)."""
    plans = {name: route_plan(settings, name, backends) for name in settings.routes}
    for name, backend in backends.items():
        plans[name] = RoutePlan(
            name=name,
            tiers=(Tier(backend=backend, model=settings.backends[name].model_identity),),
            thresholds=PolicyThresholds(settings.verifier.direct_accept_alpha, Estimator.LOWER),
            retrieval=False,
            retrieval_top_k=0,
            max_backend_calls=1,
            on_abstain=OnAbstain.BEST_EFFORT,
            abstain_message="",
            stream_mode=StreamMode.PASSTHROUGH,
            direct=True,
            description=f"direct model {name}: generated once and verified, never escalated",
        )
    return plans
