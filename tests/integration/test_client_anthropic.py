"""The ``anthropic`` client against the gateway: the Anthropic Messages API (``/v1/messages``)
is not built, so its calls are a 404 in the gateway's error envelope and nothing reaches the
upstream. When ``/v1/messages`` is built, these tests and the compatibility table change."""

from __future__ import annotations

import anthropic
import pytest

from tests.integration import test_openai_tools as tools
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration
tools_gateway = tools.tools_gateway  # its gateway


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_is_not_supported(
    tools_gateway: str, upstream: tuple[str, FakeUpstream], stream: bool
) -> None:
    before = len(upstream[1].log.requests)
    client = anthropic.Anthropic(base_url=tools_gateway, api_key="unused", max_retries=0)
    with client, pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(
            model="auto",
            max_tokens=64,
            messages=[{"role": "user", "content": "What is six times seven?"}],
            stream=stream,
        )
    assert caught.value.status_code == 404
    assert len(upstream[1].log.requests) == before  # nothing was sent upstream
