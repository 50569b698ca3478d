"""Fixtures: a fake vLLM-like upstream on a real port and gateways in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fakes import FakeRetriever, FakeVerifier
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.servers import serve_in_thread


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, FakeUpstream]]:
    """The fake upstream app and its base URL."""
    app = FakeUpstream()
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def fake_components() -> tuple[FakeVerifier, FakeRetriever]:
    """The verifier and retriever doubles behind the module's gateway."""
    return FakeVerifier(), FakeRetriever()


@pytest.fixture(scope="module")
def gateway_url(
    upstream: tuple[str, FakeUpstream], fake_components: tuple[FakeVerifier, FakeRetriever]
) -> Iterator[str]:
    """A real uvicorn server running the gateway over the fake upstream."""
    verifier, retriever = fake_components
    app = fake_app(upstream[0], verifier=verifier, retriever=retriever)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    """The official OpenAI client pointed at the gateway, without SDK retries."""
    with openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def metrics_gateway_url(gateway_url: str) -> str:
    """A gateway whose route ``auto`` accepts ordinary prompts and abstains on "hard" ones."""
    return gateway_url
