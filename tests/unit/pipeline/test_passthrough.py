"""Passthrough, the cascade's live mode, builds its tier request like every other tier."""

from __future__ import annotations

from sdm_router.core.generation import GenerationRequest, Message, SamplingParams, StreamDelta
from sdm_router.pipeline.cascade import Cascade, CascadeResult, tier_request
from sdm_router.pipeline.observer import NullObserver
from sdm_router.pipeline.plan import Tier
from tests.fakes import FakeBackend, FakeVerifier
from tests.support.plans import GOOD, plan

CLIENT = GenerationRequest(
    messages=(Message("user", "What is 6*7?"),),
    prompt=None,
    params=SamplingParams(n=1, temperature=1.0, top_p=1.0, max_tokens=200),
)


def test_one_function_builds_every_tier_request() -> None:
    tier = Tier(FakeBackend("a", [GOOD]), n=3, temperature=0.2, top_p=0.5, max_tokens=40)
    built = tier_request(plan(tier), tier, CLIENT, n=3).params
    assert (built.n, built.temperature, built.top_p, built.max_tokens) == (3, 0.2, 0.5, 40)
    loose = Tier(FakeBackend("a", [GOOD]))
    built = tier_request(plan(loose), loose, CLIENT, n=1).params
    assert (built.temperature, built.top_p, built.max_tokens) == (1.0, 1.0, 200)


async def test_the_streamed_tier_gets_the_tiers_max_tokens_and_top_p() -> None:
    backend = FakeBackend("a", [GOOD])
    tier = Tier(backend, n=4, temperature=0.0, top_p=0.9, max_tokens=32)
    events = [
        event
        async for event in Cascade(FakeVerifier(), None, NullObserver()).stream_live(
            plan(tier), CLIENT
        )
    ]
    (sent,) = backend.requests
    assert sent.params.n == 1  # one live stream, whatever the tier's n
    assert (sent.params.temperature, sent.params.top_p, sent.params.max_tokens) == (0.0, 0.9, 32)
    assert isinstance(events[-1], CascadeResult)
    assert all(isinstance(event, StreamDelta) for event in events[:-1])
