"""The embedded default end to end in-process: real SmolLM2, real verifier artifact, real retrieval.

The expected decisions are what the shipped artifact decides on these fixed prompts; they are the
product's acceptance criteria (easy facts accepted, facts the bare model gets wrong accepted after
retrieval, questions it cannot answer abstained).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from sdm_router.config import load_settings
from sdm_router.main import build_app
from sdm_router.verifier.sdm import SDMModel
from tests.support.openai_extra import extra_fields
from tests.support.servers import serve_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder admin reloads of the module's gateway may name artifacts in."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def embedded_client(artifact_root: Path) -> Iterator[openai.OpenAI]:
    settings = load_settings()
    if settings.verifier.artifact is None or not settings.verifier.artifact.exists():
        pytest.fail(f"the shipped verifier artifact is missing: {settings.verifier.artifact}")
    verifier = settings.verifier.model_copy(update={"artifact_roots": [artifact_root]})
    settings = settings.model_copy(update={"verifier": verifier})
    with (
        serve_in_thread(build_app(settings)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=600) as client,
    ):
        yield client


def ask(client: openai.OpenAI, question: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": question}], **extra
    )
    verification: dict[str, Any] = extra_fields(completion)["verification"]
    return completion.choices[0].message.content or "", verification


def test_easy_fact_is_accepted(embedded_client: openai.OpenAI) -> None:
    text, verification = ask(embedded_client, "What is the capital of France?")
    assert verification["decision"] == "accept", verification
    assert "Paris" in text
    assert verification["region_alpha_lower"] >= 0.95
    assert verification["prediction"] == 1


def test_fact_the_bare_model_gets_wrong_is_accepted_after_retrieval(
    embedded_client: openai.OpenAI,
) -> None:
    # greedy SmolLM2 answers "The capital of Oman is Musandam."; with the retrieved passage the
    # regenerated answer is verified and accepted
    text, verification = ask(embedded_client, "Which city is the capital of Oman?")
    actions = [attempt["action"] for attempt in verification["attempts"]]
    assert actions == ["retrieve", "accept"], verification
    assert verification["attempts"][1]["retrieved_context"] is True
    assert verification["decision"] == "accept", verification
    assert "Muscat" in text


def test_hard_arithmetic_abstains(embedded_client: openai.OpenAI) -> None:
    text, verification = ask(embedded_client, "What is 487 times 356?")
    assert verification["decision"] == "abstain", verification
    assert "173372" not in text.replace(",", "")  # the abstention message, not a guess


def test_stream_with_usage_on_the_embedded_model(embedded_client: openai.OpenAI) -> None:
    stream = embedded_client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Name the capital of Japan."}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=12,
        temperature=0,
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert extra_fields(chunks[-1])["verification"]["decision"] in {"accept", "abstain"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


def test_n_choices_on_the_direct_model(embedded_client: openai.OpenAI) -> None:
    completion = embedded_client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "What is 2 plus 2?"}],
        n=2,
        temperature=0.8,
        seed=1,
        max_tokens=12,
        logprobs=True,
    )
    assert len(completion.choices) == 2
    assert completion.choices[0].logprobs is not None
    assert extra_fields(completion)["verification"]["attempts"][0]["model"] == "smollm2-135m"


def test_verify_endpoint_with_the_real_verifier(embedded_client: openai.OpenAI) -> None:
    right = embedded_client.post(
        "/verify",
        body={
            "prompt": "What is the capital of France?",
            "response": "The capital of France is Paris.",
        },
        cast_to=object,
    )
    wrong = embedded_client.post(
        "/verify",
        body={"prompt": "What is 487 times 356?", "response": "487 times 356 is 12."},
        cast_to=object,
    )
    assert isinstance(right, dict) and isinstance(wrong, dict)
    assert right["verification"]["prediction"] == 1
    assert wrong["verification"]["decision"] == "abstain"


CONCURRENT_CHATS = [
    "What is the capital of France?",
    "Which city is the capital of Oman?",
    "What is 487 times 356?",
    "What is 3 plus 4?",
    "What is the capital of Japan?",
    "What is the chemical symbol for gold?",
    "How many letters are in the word 'planet'?",
    "Reverse the word 'stone'.",
]
CONCURRENT_VERIFIES = [
    ("What is the capital of Canada?", "Toronto"),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is 487 times 356?", "487 times 356 is 12."),
    ("What is 2 plus 2?", "2 plus 2 is 4."),
]


def verdict_summary(verification: dict[str, Any]) -> tuple[Any, ...]:
    """What must not depend on the other requests in flight."""
    return (
        verification["decision"],
        verification["reason"],
        verification["prediction"],
        verification["q"],
        verification["region_alpha"],
        verification["region_alpha_lower"],
    )


def chat_outcome(client: openai.OpenAI, question: str) -> tuple[Any, ...]:
    # seeded: the best-of-4 tier samples, and must sample the same alone or batched
    text, verification = ask(client, question, seed=7)
    return ("chat", question, text, *verdict_summary(verification))


def verify_outcome(client: openai.OpenAI, prompt: str, response: str) -> tuple[Any, ...]:
    reply = client.post("/verify", body={"prompt": prompt, "response": response}, cast_to=object)
    assert isinstance(reply, dict)
    return ("verify", prompt, response, *verdict_summary(reply["verification"]))


def test_concurrent_chats_and_verifies_get_their_solo_verdicts(
    embedded_client: openai.OpenAI,
) -> None:
    """8 chats and 4 /v1/verify calls at once on the real model: no 5xx (the SDK raises on any
    error status), and every verdict equals the one the same request gets alone."""
    jobs: list[tuple[Any, ...]] = [(chat_outcome, q) for q in CONCURRENT_CHATS]
    jobs += [(verify_outcome, prompt, response) for prompt, response in CONCURRENT_VERIFIES]
    solo = [job[0](embedded_client, *job[1:]) for job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        together = list(pool.map(lambda job: job[0](embedded_client, *job[1:]), jobs))
    for alone, concurrent in zip(solo, together, strict=True):
        assert concurrent == alone
    assert {outcome[3] for outcome in solo} >= {"accept", "abstain"}  # both kinds of verdict


def test_a_reload_under_load_fails_no_request_and_each_decision_names_its_artifact(
    embedded_client: openai.OpenAI, artifact_root: Path
) -> None:
    """Chats in flight finish on the artifact they started with; later ones use the new one."""
    shipped = load_settings().verifier.artifact
    assert shipped is not None
    original = SDMModel.load(shipped, device="cpu")
    renamed = SDMModel(replace(original.contents, model_id="reloaded-copy"), device="cpu")
    copy = renamed.save(artifact_root / "copy.sdmkitmodel")
    base = str(embedded_client.base_url).removesuffix("/v1/").removesuffix("/v1")

    def chat_record(question: str) -> dict[str, Any]:
        raw = embedded_client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": question}], max_tokens=12
        )
        raw.parse()
        request_id = raw.headers["x-request-id"]
        return dict(httpx.get(f"{base}/v1/decisions/{request_id}", timeout=30).json())

    questions = [f"What is {i} plus {i + 1}?" for i in range(6)]
    with ThreadPoolExecutor(max_workers=len(questions)) as pool:
        in_flight = [pool.submit(chat_record, q) for q in questions]
        time.sleep(1.0)  # the chats are generating, pinned to the shipped artifact
        reload = httpx.post(
            f"{base}/admin/verifier/reload", json={"artifact": str(copy)}, timeout=60
        )
        assert reload.status_code == 200, reload.text
        after = [pool.submit(chat_record, q) for q in questions[:3]]
        before_records = [future.result() for future in in_flight]
        after_records = [future.result() for future in after]
    try:
        assert {r["artifact_id"] for r in before_records} == {original.artifact_id}
        assert {r["artifact_id"] for r in after_records} == {"reloaded-copy"}
        ready = httpx.get(f"{base}/readyz", timeout=10).json()
        assert ready["components"]["verifier"]["artifact_id"] == "reloaded-copy"
    finally:
        restored = httpx.post(f"{base}/admin/verifier/reload", timeout=60)
        assert restored.json()["artifact_id"] == original.artifact_id
