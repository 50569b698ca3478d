"""Route-level choices shared by config and pipeline."""

from __future__ import annotations

from enum import StrEnum


class OnAbstain(StrEnum):
    """What a route answers when it abstains."""

    MESSAGE = "message"
    BEST_EFFORT = "best_effort"
    ERROR = "error"
    REFUSAL = "refusal"  # OpenAI's refusal shape: content null, the message in ``refusal``


class StreamMode(StrEnum):
    """How a route streams: verify first, or stream tier 0 live and give the verdict at the end."""

    VERIFY_THEN_STREAM = "verify_then_stream"
    PASSTHROUGH = "passthrough"


class OnUnverified(StrEnum):
    """What a route does with an answer it does not verify (tool calls under
    ``verify_tool_calls: false``): return it marked ``unverified``, or abstain."""

    PASS = "pass"
    ABSTAIN = "abstain"


class OnBreach(StrEnum):
    """What a route does when its live guarantee reads ``breached``: alert only (the status,
    its gauge and the alert rule), tighten its effective accept_alpha step by step until the
    bound holds again, or roll its artifact back (the autopilot's rollback; without one the
    route goes to observe mode)."""

    ALERT = "alert"
    TIGHTEN = "tighten"
    ROLLBACK = "rollback"


class OnOod(StrEnum):
    """What a route does after an out-of-distribution answer (reason ``ood``): retrieve first
    when a retriever is available, then the next tier (as for any failed verdict); go to the
    next tier without retrieving; go straight to the strongest (last) tier; or abstain."""

    RETRIEVE = "retrieve"
    ESCALATE = "escalate"
    STRONGEST = "strongest"
    ABSTAIN = "abstain"


class OnOodPrompt(StrEnum):
    """What a route does when the prompt router finds the prompt out of distribution: run the
    cascade from tier 0 as without routing, start at the strongest (last) tier, or abstain."""

    CASCADE = "cascade"
    STRONGEST = "strongest"
    ABSTAIN = "abstain"


class RoutingAction(StrEnum):
    """What the routing step before generating did (``sdm_router_routing_total{action}``)."""

    PROCEED = "proceed"  # start at tier 0, as without routing
    SKIP = "skip"  # start at a later tier
    ABSTAIN = "abstain"  # abstain before generating
