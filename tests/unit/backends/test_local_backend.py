"""LocalTransformersBackend plumbing on a tiny random Llama and a character tokenizer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from sdm_router.backends.base import Backend
from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.core.errors import InvalidRequest, NoHealthyBackend, Overloaded, UpstreamError
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.models.causal_lm import LoadedCausalLM
from tests.support.tiny_llama import tiny_llama

ALPHABET = "abcdefghijklmnopqrstuvwxyz .?"
EOS = len(ALPHABET)  # 29
VOCAB = 32


class CharTokenizer:
    """One token per character; ``<eos>`` is id 29; a chat template of "role: content" lines."""

    pad_token_id = 0
    eos_token_id = EOS

    def get_vocab(self) -> dict[str, int]:
        return {**{c: i for i, c in enumerate(ALPHABET)}, "<eos>": EOS}

    def __call__(self, text: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        assert isinstance(text, str)
        return {"input_ids": [ALPHABET.index(c) for c in text if c in ALPHABET]}

    def decode(self, ids: Sequence[int], **_: Any) -> str:
        return "".join(ALPHABET[i] if i < len(ALPHABET) else "" for i in ids)

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        return "".join(f"{m['role']} {m['content']}." for m in messages) + "assistant "


@pytest.fixture(scope="module")
def tiny_loaded() -> LoadedCausalLM:
    model = tiny_llama(VOCAB, seed=1)
    model.generation_config.eos_token_id = EOS
    return LoadedCausalLM(
        "tiny", model, CharTokenizer(), torch.device("cpu"), Path("tiny"), "0" * 64, "test"
    )


@pytest.fixture
async def backend(tiny_loaded: LoadedCausalLM) -> AsyncIterator[LocalTransformersBackend]:
    started = LocalTransformersBackend("tiny", loaded=tiny_loaded, max_new_tokens=8)
    await started.start()
    yield started
    await started.close()


def request(prompt: str | None = "hello", **params: Any) -> GenerationRequest:
    return GenerationRequest(
        messages=None, prompt=prompt, params=SamplingParams(**{"temperature": 0.0, **params})
    )


def test_it_is_a_backend(tiny_loaded: LoadedCausalLM) -> None:
    backend = LocalTransformersBackend("tiny", loaded=tiny_loaded)
    assert isinstance(backend, Backend)
    assert backend.device == "cpu"
    assert backend.name == "tiny"


async def test_n_candidates_count_the_prompt_once(backend: LocalTransformersBackend) -> None:
    generation = await backend.generate(request(n=3, temperature=1.0, seed=5, max_tokens=6))
    assert len(generation.candidates) == 3
    assert generation.usage.prompt_tokens == len("hello")
    per_row = [len(c.token_logprobs or ()) for c in generation.candidates]
    stops = sum(c.finish_reason == "stop" for c in generation.candidates)
    assert generation.usage.completion_tokens == sum(per_row) + stops
    assert all(count <= 6 for count in per_row)


async def test_chat_requests_use_the_template(backend: LocalTransformersBackend) -> None:
    chat = GenerationRequest(
        messages=(Message("developer", "be brief"), Message("user", "hi")),
        prompt=None,
        params=SamplingParams(max_tokens=2, temperature=0.0),
    )
    generation = await backend.generate(chat)
    assert generation.usage.prompt_tokens == len("system be brief.user hi.assistant ")


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        (request(n=0), "n"),
        (request(top_p=0.0, temperature=1.0), "top_p"),
        (request(temperature=-1.0), "temperature"),
        (request(top_logprobs=21), "top_logprobs"),
        (request(max_tokens=0), "max_tokens"),
        (request(prompt=None), "messages"),
        (request(prompt="!!!"), "prompt"),
        (request(prompt="a" * 80), "prompt"),
    ],
)
async def test_invalid_requests_name_the_parameter(
    backend: LocalTransformersBackend, bad: GenerationRequest, param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await backend.generate(bad)
    assert caught.value.param == param


async def test_streaming_needs_n_1(backend: LocalTransformersBackend) -> None:
    with pytest.raises(InvalidRequest):
        async for _ in backend.stream(request(n=2)):
            pass


async def test_too_many_queued_rows_is_overload(tiny_loaded: LoadedCausalLM) -> None:
    backend = LocalTransformersBackend("tiny", loaded=tiny_loaded, max_queued_rows=2)
    await backend.start()
    try:
        with pytest.raises(Overloaded):
            await backend.generate(request(n=3))
        assert len((await backend.generate(request(n=2, max_tokens=2))).candidates) == 2
    finally:
        await backend.close()


async def test_not_started_and_closed_backends_are_unavailable(
    tiny_loaded: LoadedCausalLM,
) -> None:
    backend = LocalTransformersBackend("tiny", loaded=tiny_loaded)
    with pytest.raises(NoHealthyBackend):
        await backend.generate(request())
    await backend.start()
    assert backend.ready
    await backend.close()
    with pytest.raises(NoHealthyBackend):
        await backend.generate(request())


class Broken(torch.nn.Module):
    """A model whose forward fails, like a lost device."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.config = model.config
        self.generation_config = model.generation_config

    def forward(self, **_: Any) -> Any:
        raise RuntimeError("CUDA error: device-side assert")


@pytest.fixture
def broken(tiny_loaded: LoadedCausalLM) -> Iterator[LoadedCausalLM]:
    yield LoadedCausalLM(
        "tiny", Broken(tiny_loaded.model), tiny_loaded.tokenizer, torch.device("cpu"),
        Path("tiny"), "0" * 64, "test",
    )  # fmt: skip


async def test_a_model_failure_is_an_upstream_error(broken: LoadedCausalLM) -> None:
    backend = LocalTransformersBackend("tiny", loaded=broken)
    await backend.start()
    try:
        with pytest.raises(UpstreamError, match="device-side assert"):
            await backend.generate(request())
        with pytest.raises(UpstreamError):
            async for _ in backend.stream(request()):
                pass
        assert backend.ready  # the worker survived
    finally:
        await backend.close()


async def test_concurrent_requests_resolve_on_their_own_loop(
    backend: LocalTransformersBackend,
) -> None:
    generations = await asyncio.gather(*(backend.generate(request(max_tokens=3)) for _ in range(5)))
    assert len({g.candidates[0].text for g in generations}) == 1


async def test_recorded_layers_ride_with_generated_and_streamed_answers(
    backend: LocalTransformersBackend,
) -> None:
    """Asked for, the layers' states come with each candidate and with a stream's last piece;
    a stream cut by max_tokens (its last token fed once more) still ends exactly once, with
    the same text as a generation."""
    assert backend.recorded_layers == frozenset()
    plain = await backend.generate(request(max_tokens=5))
    assert plain.candidates[0].recorded is None
    with pytest.raises(ValueError, match=r"layers 1\.\.2"):
        backend.record_layers("test", frozenset({3}))
    backend.record_layers("test", frozenset({1, 2}))
    try:
        assert backend.recorded_layers == {1, 2}
        generated = await backend.generate(request(max_tokens=5))
        deltas = [delta async for delta in backend.stream(request(max_tokens=5))]
    finally:
        backend.record_layers("test", frozenset())
    assert backend.recorded_layers == frozenset()
    (candidate,) = generated.candidates
    assert candidate.finish_reason == "length"  # the held-back last piece is exercised
    assert candidate.text == plain.candidates[0].text
    assert candidate.recorded is not None and candidate.recorded.missing is None
    assert set(candidate.recorded.layers) == {1, 2}
    assert [d.finish_reason for d in deltas].count(candidate.finish_reason) == 1
    assert deltas[-1].finish_reason is not None and deltas[-1].usage is not None
    assert "".join(d.text for d in deltas) == candidate.text
    assert deltas[-1].recorded is not None
    assert deltas[-1].recorded.token_ids == candidate.recorded.token_ids
