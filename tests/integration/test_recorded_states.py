"""No second forward on the embedded default: the decoder records the shipped recipe's layer
(16, ``last+answer``) while it generates, and the verifier reads those states instead of
encoding the answer again. Over the real SmolLM2-135M and the shipped artifact."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.config import EMBEDDED_CONFIG, VerifierSettings
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.core.states import (
    CUT_BY_STOP,
    DISABLED,
    NOT_RECORDED,
    OTHER_LAYER,
    RECORDED,
    TOKENS_DIFFER,
    TRUNCATED,
)
from sdm_router.core.verdict import VerificationInput
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.sdm_verifier import SDMVerifier

pytest_plugins = ["tests.integration.embedded_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHIPPED = (EMBEDDED_CONFIG.parent / "../artifacts/smollm2-135m.sdmkitmodel").resolve()
LAYER = 16  # the shipped artifact's recipe
# Recorded vs encoded: the same float32 model on other batch shapes (left padding, a KV cache,
# one token a step, a running sum): |difference| <= 1e-5 x the largest |value| (~90); measured
# up to ~1e-6 x.
RELATIVE_TOLERANCE = 1e-5
QUESTIONS = [
    "What is the capital of France?",
    "What is 12 + 35?",
    "Name a primary color.",
    "What is the capital of Japan?",
    "Write a haiku about rain.",  # cut by max_tokens (16)
    "Who wrote Hamlet?",
]


class Observer:
    """Counts feature sources and reasons."""

    def __init__(self) -> None:
        self.features: Counter[tuple[str, str]] = Counter()

    def stage(self, stage: str, seconds: float) -> None:
        pass

    def verifier_batch(self, size: int) -> None:
        pass

    def verifier_features(self, source: str, reason: str) -> None:
        self.features[(source, reason)] += 1


async def answers(
    backend: LocalTransformersBackend, stop: tuple[str, ...] = ()
) -> list[VerificationInput]:
    params = SamplingParams(max_tokens=16, temperature=0.0, stop=stop)
    requests = [GenerationRequest((Message("user", q),), None, params) for q in QUESTIONS]
    generations = await asyncio.gather(*(backend.generate(r) for r in requests))
    items = []
    for request, generation in zip(requests, generations, strict=True):
        (candidate,) = generation.candidates
        assert request.messages is not None
        items.append(
            VerificationInput(
                request.messages, candidate.text, candidate.token_logprobs, candidate.recorded
            )
        )
    return items


def unrecorded(items: Sequence[VerificationInput]) -> list[VerificationInput]:
    return [dataclasses.replace(item, recorded=None) for item in items]


async def test_recorded_vectors_and_verdicts_equal_the_encoders(
    embedded_backend: LocalTransformersBackend,
) -> None:
    observer = Observer()
    settings = VerifierSettings(
        artifact=SHIPPED, encoder_backend="smollm2-135m", device="cpu", max_wait_ms=0.0
    )
    verifier = SDMVerifier(settings, embedded_backend, observer)
    await verifier.start()  # asks the backend to record the artifact's layer
    try:
        assert embedded_backend.recorded_layers == {LAYER}
        items = await answers(embedded_backend)
        assert any(item.recorded is not None for item in items)
        encoder = HiddenStateEncoder(
            embedded_backend.loaded, layer=LAYER, pooling="last+answer", owner=embedded_backend
        )
        encoded = await asyncio.to_thread(encoder.encode, unrecorded(items))
        for item, expected in zip(items, encoded, strict=True):
            vector, reason = await asyncio.to_thread(encoder.recorded_vector, item)
            assert reason == RECORDED, (item.response, reason)
            assert vector is not None
            scale = float(np.abs(expected).max())
            assert float(np.abs(vector - expected).max()) <= RELATIVE_TOLERANCE * scale
        recorded_verdicts = await verifier.verify(items)
        assert observer.features == {("recorded", RECORDED): len(items)}
        encoded_verdicts = await verifier.verify(unrecorded(items))
        assert observer.features[("encoded", NOT_RECORDED)] == len(items)
        for ours, theirs in zip(recorded_verdicts, encoded_verdicts, strict=True):
            assert ours.prediction == theirs.prediction
            assert ours.region_alpha == theirs.region_alpha
            assert ours.region_alpha_lower == theirs.region_alpha_lower
            assert ours.is_ood == theirs.is_ood
            assert ours.probability == pytest.approx(theirs.probability, abs=1e-4)
    finally:
        await verifier.close()
        embedded_backend.record_layers("verifier", frozenset())


async def test_each_fallback_encodes_and_names_its_reason(
    embedded_backend: LocalTransformersBackend,
) -> None:
    embedded_backend.record_layers("test", frozenset({LAYER}))
    try:
        items = await answers(embedded_backend)
        cut = await answers(embedded_backend, stop=(" ",))  # every answer has a space
    finally:
        embedded_backend.record_layers("test", frozenset())
    loaded = embedded_backend.loaded
    encoder = HiddenStateEncoder(loaded, layer=LAYER, pooling="last+answer")
    edited = dataclasses.replace(items[0], response=items[0].response + " Indeed.")
    cases = [
        (encoder, cut[0], CUT_BY_STOP),
        (encoder, edited, TOKENS_DIFFER),
        (HiddenStateEncoder(loaded, layer=LAYER, pooling="last+answer", max_length=8), items[0],
         TRUNCATED),
        (HiddenStateEncoder(loaded, layer=20, pooling="last+answer"), items[0], OTHER_LAYER),
        (HiddenStateEncoder(loaded, layer=LAYER), items[0], OTHER_LAYER),  # final+mean
        (encoder, unrecorded(items)[0], NOT_RECORDED),
    ]  # fmt: skip
    for case_encoder, item, reason in cases:
        assert case_encoder.recorded_vector(item) == (None, reason)
    vectors, reasons = encoder.features([items[0], edited, items[1]])
    assert reasons == [RECORDED, TOKENS_DIFFER, RECORDED]
    np.testing.assert_allclose(vectors[1], encoder.encode([edited])[0], rtol=0, atol=0)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-2)


async def test_recorded_states_false_always_encodes(
    embedded_backend: LocalTransformersBackend,
) -> None:
    observer = Observer()
    settings = VerifierSettings(
        artifact=SHIPPED, encoder_backend="smollm2-135m", device="cpu", recorded_states=False
    )
    verifier = SDMVerifier(settings, embedded_backend, observer)
    await verifier.start()
    try:
        assert embedded_backend.recorded_layers == frozenset()  # the verifier asked for none
        embedded_backend.record_layers("test", frozenset({LAYER}))  # another consumer did
        try:
            items = (await answers(embedded_backend))[:2]
        finally:
            embedded_backend.record_layers("test", frozenset())
        assert all(item.recorded is not None for item in items)
        ours = await verifier.verify(items)
        assert observer.features == {("encoded", DISABLED): 2}
        theirs = await verifier.verify(unrecorded(items))
        assert [v.prediction for v in ours] == [v.prediction for v in theirs]
        assert [v.probability for v in ours] == [v.probability for v in theirs]
    finally:
        await verifier.close()
