"""Session fixtures over the real embedded SmolLM2-135M: one load shared by every test.

The weights come from the user's sdm-router cache ($SDM_ROUTER_CACHE_DIR or
~/.cache/sdm-router): the first run ever dequantizes the GGUF (~25 s), later runs read the
cache (~1 s). Import the fixtures you use into the test module.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.models.causal_lm import LoadedCausalLM, load_causal_lm
from sdm_router.verifier.encoder import HiddenStateEncoder

# Fixed for every test here, so expected outputs do not depend on the caller's settings.
BATCH_SIZE = 8
MAX_NEW_TOKENS = 16


@pytest.fixture(scope="session")
def embedded_loaded() -> LoadedCausalLM:
    """The embedded model loaded once on CPU (never downloads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_causal_lm(None, device="cpu")


@pytest.fixture(scope="session")
def embedded_backend(embedded_loaded: LoadedCausalLM) -> Iterator[LocalTransformersBackend]:
    """A started backend over the shared weights; each test runs on its own event loop."""
    backend = LocalTransformersBackend(
        loaded=embedded_loaded,
        max_batch_size=BATCH_SIZE,
        max_wait_ms=20.0,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="session")
def embedded_encoder(embedded_loaded: LoadedCausalLM) -> HiddenStateEncoder:
    """The hidden-state encoder over the same weights as the backend."""
    return HiddenStateEncoder(embedded_loaded, batch_size=16)
