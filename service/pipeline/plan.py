"""Routes resolved against live components: what the cascade executes."""

from __future__ import annotations

from dataclasses import dataclass

from service.backends.base import Backend
from service.core.routing import OnAbstain, OnUnverified, StreamMode
from service.pipeline.policy import PolicyThresholds


@dataclass(frozen=True, slots=True)
class Tier:
    """One rung: a backend and the sampling it uses there."""

    backend: Backend
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


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
