"""Routing before generating on the real embedded default: SmolLM2, the shipped verifier and the
shipped prompt router. One question of each kind: abstained before anything is generated, skipped
to a later tier, answered at tier 0 as before; and the same route with routing off.

The expected routing is what the shipped router decides on these fixed prompts (see
docs/prompt-routing.md); rebuilding the router may move a borderline question.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest

from sdm_router.config import Settings, load_settings
from sdm_router.main import build_app
from tests.support.openai_extra import extra_fields
from tests.support.servers import serve_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UNANSWERABLE = "Write the word 'planet' backwards."
SKIPPED = "What is 64 - 31?"
EASY = "What is the capital of France?"


@contextmanager
def serve(settings: Settings) -> Iterator[openai.OpenAI]:
    with (
        serve_in_thread(build_app(settings)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=600) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def routed() -> Iterator[openai.OpenAI]:
    settings = load_settings()
    if settings.verifier.prompt_router is None or not settings.verifier.prompt_router.exists():
        pytest.fail(f"the shipped prompt router is missing: {settings.verifier.prompt_router}")
    with serve(settings) as client:
        yield client


def ask(client: openai.OpenAI, question: str) -> tuple[str, int, dict[str, Any]]:
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": question}]
    )
    verification: dict[str, Any] = extra_fields(completion)["verification"]
    assert completion.usage is not None
    tokens = completion.usage.completion_tokens
    return completion.choices[0].message.content or "", tokens, verification


def test_a_hopeless_question_abstains_before_anything_is_generated(
    routed: openai.OpenAI,
) -> None:
    text, generated, verification = ask(routed, UNANSWERABLE)
    assert verification["decision"] == "abstain", verification
    assert verification["reason"] == "predicted_unanswerable"
    routing = verification["routing"]
    assert routing["action"] == "abstain" and routing["skipped_tiers"] == [0, 1]
    assert all(tier["prediction"] == 0 for tier in routing["tiers"])
    skip_alpha = load_settings().routes["auto"].skip_alpha
    assert all(tier["region_alpha_lower"] >= skip_alpha for tier in routing["tiers"])
    # nothing generated: every attempt is a skip, no completion token was spent
    assert [a["action"] for a in verification["attempts"]] == ["skip", "skip"]
    assert generated == 0
    assert "tenalp" not in text


def test_a_question_tier_0_cannot_answer_starts_at_tier_1(routed: openai.OpenAI) -> None:
    _, _, verification = ask(routed, SKIPPED)
    routing = verification["routing"]
    assert routing["action"] == "skip" and routing["skipped_tiers"] == [0], verification
    assert routing["reason"] == "predicted_to_fail"
    assert verification["attempts"][0]["action"] == "skip"
    assert all(a["tier"] == 1 for a in verification["attempts"][1:])


def test_an_easy_question_is_answered_at_tier_0_as_before(routed: openai.OpenAI) -> None:
    text, _, verification = ask(routed, EASY)
    assert verification["routing"]["action"] == "proceed"
    assert verification["routing"]["skipped_tiers"] == []
    # as without routing: tier 0 (with its retrieval) answers, nothing skipped
    assert verification["attempts"][-1]["action"] == "accept"
    assert all(a["tier"] == 0 and a["action"] != "skip" for a in verification["attempts"])
    assert verification["decision"] == "accept" and verification["tier"] == 0
    assert "Paris" in text


def test_routing_off_from_the_environment_generates_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SDM_ROUTER_ROUTES__AUTO__PROMPT_ROUTING", "off")
    with serve(load_settings()) as client:
        _, generated, verification = ask(client, UNANSWERABLE)
        assert verification["routing"] is None
        assert verification["decision"] == "abstain" and verification["reason"] != (
            "predicted_unanswerable"
        )
        assert "skip" not in [a["action"] for a in verification["attempts"]]
        assert generated > 0
