"""LocalTransformersBackend over the real embedded SmolLM2-135M (CPU, greedy unless stated)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
import torch

from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.core.errors import InvalidRequest, NoHealthyBackend
from sdm_router.core.generation import Generation, GenerationRequest, Message, SamplingParams
from sdm_router.models.causal_lm import (
    LoadedCausalLM,
    gguf_cache_folder,
    load_causal_lm,
    locate_embedded_gguf,
    resolve_cache_dir,
)

pytest_plugins = ["tests.integration.embedded_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTIONS = (
    "What is the capital of France?",
    "What is the capital of Japan?",
    "What is 12 + 35?",
)


def chat(question: str, **params: Any) -> GenerationRequest:
    sampling = SamplingParams(**{"max_tokens": 12, "temperature": 0.0, **params})
    return GenerationRequest(messages=(Message("user", question),), prompt=None, params=sampling)


def raw(prompt: str, **params: Any) -> GenerationRequest:
    sampling = SamplingParams(**{"max_tokens": 12, "temperature": 0.0, **params})
    return GenerationRequest(messages=None, prompt=prompt, params=sampling)


@pytest.fixture(scope="module")
def greedy_alone(embedded_backend: LocalTransformersBackend) -> list[Generation]:
    """Each question answered greedily on its own, with 3 top logprobs (the reference)."""

    async def answer_each() -> list[Generation]:
        return [await embedded_backend.generate(chat(q, top_logprobs=3)) for q in QUESTIONS]

    return asyncio.run(answer_each())


async def test_greedy_is_deterministic_and_answers(
    embedded_backend: LocalTransformersBackend, greedy_alone: list[Generation]
) -> None:
    again = await embedded_backend.generate(chat(QUESTIONS[0], top_logprobs=3))
    assert again.candidates == greedy_alone[0].candidates
    assert "Paris" in again.candidates[0].text
    assert again.model == "smollm2-135m"
    assert embedded_backend.device == "cpu"


async def test_batched_greedy_equals_one_at_a_time(
    embedded_backend: LocalTransformersBackend, greedy_alone: list[Generation]
) -> None:
    before = embedded_backend.stats.batches
    together = await asyncio.gather(
        *(embedded_backend.generate(chat(q, top_logprobs=3)) for q in QUESTIONS)
    )
    assert embedded_backend.stats.batches - before < len(QUESTIONS)  # they did share a batch
    assert [g.candidates[0].text for g in together] == [g.candidates[0].text for g in greedy_alone]
    assert [g.usage for g in together] == [g.usage for g in greedy_alone]
    for batched, alone in zip(together, greedy_alone, strict=True):
        mine, theirs = batched.candidates[0].token_logprobs, alone.candidates[0].token_logprobs
        assert mine is not None and theirs is not None
        assert [t.logprob for t in mine] == pytest.approx([t.logprob for t in theirs], abs=1e-3)


def test_logprobs_are_probabilities_of_the_text(greedy_alone: list[Generation]) -> None:
    generation = greedy_alone[1]
    candidate = generation.candidates[0]
    assert candidate.token_logprobs is not None
    assert "".join(t.token for t in candidate.token_logprobs) == candidate.text
    for token in candidate.token_logprobs:
        assert token.logprob <= 0.0
        assert len(token.top_logprobs) == 3
        # Greedy: the chosen token is the best alternative.
        assert token.logprob == pytest.approx(token.top_logprobs[0].logprob, abs=1e-5)
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob
    eos = 1 if candidate.finish_reason == "stop" else 0
    assert generation.usage.completion_tokens == len(candidate.token_logprobs) + eos
    assert generation.usage.prompt_tokens > 20  # the chat template's system turn counts


async def test_a_request_arriving_mid_decode_joins_and_answers_the_same(
    embedded_backend: LocalTransformersBackend, greedy_alone: list[Generation]
) -> None:
    before = embedded_backend.stats
    running = asyncio.create_task(embedded_backend.generate(raw("1, 2, 3, 4, 5,", max_tokens=16)))
    while embedded_backend.stats.tokens == before.tokens:
        await asyncio.sleep(0.005)
    late = await embedded_backend.generate(chat(QUESTIONS[0], top_logprobs=3))
    await running
    assert embedded_backend.stats.joined_rows == before.joined_rows + 1
    assert late.candidates[0].text == greedy_alone[0].candidates[0].text


async def test_logprobs_can_be_turned_off(embedded_backend: LocalTransformersBackend) -> None:
    generation = await embedded_backend.generate(chat(QUESTIONS[0], logprobs=False, max_tokens=2))
    assert generation.candidates[0].token_logprobs is None


async def test_a_stop_string_ends_the_answer_and_is_removed(
    embedded_backend: LocalTransformersBackend, greedy_alone: list[Generation]
) -> None:
    full = greedy_alone[0].candidates[0].text
    assert " is " in full
    stopped = (await embedded_backend.generate(chat(QUESTIONS[0], stop=(" is ",)))).candidates[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == full[: full.index(" is ")]
    assert stopped.token_logprobs is not None
    assert "".join(t.token for t in stopped.token_logprobs).startswith(stopped.text)


async def test_max_tokens_finishes_with_length(
    embedded_backend: LocalTransformersBackend,
) -> None:
    generation = await embedded_backend.generate(raw("1, 2, 3, 4, 5,", max_tokens=3))
    assert generation.candidates[0].finish_reason == "length"
    assert generation.usage.completion_tokens == 3


async def test_max_tokens_is_capped_by_the_configured_limit(
    embedded_loaded: LoadedCausalLM,
) -> None:
    backend = LocalTransformersBackend(loaded=embedded_loaded, max_new_tokens=4)
    await backend.start()
    try:
        generation = await backend.generate(raw("1, 2, 3, 4, 5,", max_tokens=16))
    finally:
        await backend.close()
    assert generation.usage.completion_tokens == 4
    assert generation.candidates[0].finish_reason == "length"


async def test_a_prompt_longer_than_the_context_is_refused(
    embedded_backend: LocalTransformersBackend,
) -> None:
    with pytest.raises(InvalidRequest, match="prompt"):
        await embedded_backend.generate(raw("word " * 9000))


async def test_seeded_sampling_with_n_2_is_reproducible(
    embedded_backend: LocalTransformersBackend,
) -> None:
    request = raw("Once upon a time", temperature=1.0, top_p=0.95, seed=1234, n=2, max_tokens=8)
    first = await embedded_backend.generate(request)
    second = await embedded_backend.generate(request)
    assert len(first.candidates) == 2
    assert first.candidates == second.candidates
    assert first.candidates[0].text != first.candidates[1].text  # rows use seed and seed + 1
    total = first.usage.completion_tokens
    assert total == sum(len(c.token_logprobs or ()) for c in first.candidates) + sum(
        c.finish_reason == "stop" for c in first.candidates
    )


async def test_streaming_adds_up_to_the_non_streamed_answer(
    embedded_backend: LocalTransformersBackend, greedy_alone: list[Generation]
) -> None:
    expected = greedy_alone[2].candidates[0]
    deltas = [delta async for delta in embedded_backend.stream(chat(QUESTIONS[2], top_logprobs=3))]
    assert "".join(d.text for d in deltas) == expected.text
    assert len(deltas) > 2  # text arrived as it was decoded, not in one piece
    assert deltas[-1].finish_reason == expected.finish_reason
    assert deltas[-1].usage is not None
    assert all(d.finish_reason is None for d in deltas[:-1])
    streamed = tuple(t for d in deltas for t in d.token_logprobs)
    assert streamed == expected.token_logprobs


async def test_streaming_refuses_n_above_1(embedded_backend: LocalTransformersBackend) -> None:
    with pytest.raises(InvalidRequest):
        _ = [d async for d in embedded_backend.stream(chat(QUESTIONS[0], n=2))]


async def test_a_client_that_leaves_has_its_row_dropped(
    embedded_loaded: LoadedCausalLM,
) -> None:
    backend = LocalTransformersBackend(loaded=embedded_loaded, max_new_tokens=400)
    await backend.start()
    try:
        stream = backend.stream(raw("1, 2, 3, 4, 5,", max_tokens=400))
        assert isinstance(stream, AsyncGenerator)  # it is closed as a client would
        first = await anext(stream)
        assert first.finish_reason is None
        await stream.aclose()  # the client disconnected
        # A later request runs after the abandoned batch ends (or joins it, being batched).
        await backend.generate(raw("Hello", max_tokens=2))
        stats = backend.stats
    finally:
        await backend.close()
    assert stats.cancelled_rows == 1
    assert stats.tokens < 100  # far fewer than the 400 the abandoned request asked for


async def test_cancelling_the_awaiting_task_drops_the_rows(
    embedded_loaded: LoadedCausalLM,
) -> None:
    backend = LocalTransformersBackend(loaded=embedded_loaded, max_new_tokens=400)
    await backend.start()
    try:
        task = asyncio.create_task(backend.generate(raw("1, 2, 3, 4, 5,", max_tokens=400, n=2)))
        while backend.stats.batches == 0 and backend.queued == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await backend.generate(raw("Hello", max_tokens=2))
        stats = backend.stats
    finally:
        await backend.close()
    assert stats.cancelled_rows == 2
    assert stats.tokens < 200


async def test_a_backend_that_is_not_started_is_unavailable(
    embedded_loaded: LoadedCausalLM,
) -> None:
    backend = LocalTransformersBackend(loaded=embedded_loaded)
    with pytest.raises(NoHealthyBackend):
        await backend.generate(chat(QUESTIONS[0]))


def test_the_dequantized_weights_are_cached_and_reused(
    embedded_loaded: LoadedCausalLM, caplog: pytest.LogCaptureFixture
) -> None:
    gguf = locate_embedded_gguf()
    cached = gguf_cache_folder(gguf, embedded_loaded.sha256, resolve_cache_dir())
    assert (cached / "COMPLETE").is_file()
    assert (cached / "model.safetensors").stat().st_size > 100_000_000
    assert (cached / "tokenizer.json").is_file()
    with caplog.at_level(logging.INFO, logger="sdm_router.models.causal_lm"):
        again = load_causal_lm(None, device="cpu")
    assert "from cache" in caplog.text
    assert "dequantizing" not in caplog.text
    assert again.identity == embedded_loaded.identity
    for (name, mine), (_, theirs) in zip(
        again.model.state_dict().items(), embedded_loaded.model.state_dict().items(), strict=True
    ):
        assert torch.equal(mine, theirs), name


def test_a_model_folder_loads_like_the_gguf(embedded_loaded: LoadedCausalLM) -> None:
    folder: Path = gguf_cache_folder(
        locate_embedded_gguf(), embedded_loaded.sha256, resolve_cache_dir()
    )
    loaded = load_causal_lm(folder, name="smollm2-folder", device="cpu")
    assert loaded.name == "smollm2-folder"
    assert loaded.revision == "local"
    assert loaded.sha256 != embedded_loaded.sha256  # the digest of the folder's weight files
    assert loaded.model.config.hidden_size == 576
