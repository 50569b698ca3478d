"""litellm as a client (``litellm.completion`` with ``api_base`` at the gateway) over real HTTP,
against the fake upstream that records every body it receives (the ``tools_gateway`` of
test_openai_tools).

litellm runs in a child process, as a client application would: imported into the test process,
its logging setup silenced the gateway's request log for the tests that ran after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.integration import test_openai_tools as tools
from tests.support.fake_upstream import CONFIDENT, FakeUpstream

pytestmark = pytest.mark.integration
tools_gateway, sent = tools.tools_gateway, tools.sent  # its gateway and helper

QUESTION = [{"role": "user", "content": "What is six times seven?"}]

CLIENT = """
import json, sys
import litellm
call, options = sys.argv[1], json.loads(sys.argv[2])
common = dict(model="openai/auto", api_key="unused", max_retries=0)
if call == "responses":
    result = litellm.responses(**common, **options)
    print(json.dumps(result.model_dump(mode="json")))
elif options.get("stream"):
    chunks = litellm.completion(**common, **options)
    print(json.dumps([chunk.model_dump(mode="json") for chunk in chunks]))
else:
    print(json.dumps(litellm.completion(**common, **options).model_dump(mode="json")))
"""


def run_litellm(call: str, **options: Any) -> Any:
    """What litellm returned, as JSON, from a child process (no network: the local cost map)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, call, json.dumps(options)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def complete(gateway: str, **options: Any) -> Any:
    return run_litellm("completion", api_base=f"{gateway}/v1", messages=QUESTION, **options)


def assert_nothing_injected(body: dict[str, Any]) -> None:
    for key in ("max_tokens", "max_completion_tokens", "temperature", "top_p"):
        assert key not in body


def test_litellm_completion(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    response = complete(tools_gateway)
    assert response["choices"][0]["message"]["content"] == CONFIDENT
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["usage"]["total_tokens"] > 0
    body = sent(upstream)
    assert body["messages"] == QUESTION
    assert_nothing_injected(body)


def test_litellm_completion_stream(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    chunks = complete(tools_gateway, stream=True)
    choices = [chunk["choices"][0] for chunk in chunks if chunk["choices"]]
    text = "".join(choice["delta"].get("content") or "" for choice in choices)
    assert text == CONFIDENT
    assert [c["finish_reason"] for c in choices if c["finish_reason"]] == ["stop"]
    body = sent(upstream)
    assert body["messages"] == QUESTION
    assert_nothing_injected(body)


def test_litellm_completion_sampling_parameters(
    tools_gateway: str, upstream: tuple[str, FakeUpstream]
) -> None:
    response = complete(tools_gateway, max_tokens=17, temperature=0.3)
    assert response["choices"][0]["message"]["content"] == CONFIDENT
    body = sent(upstream)
    assert (body["max_tokens"], body["temperature"]) == (17, 0.3)
    assert "top_p" not in body


def test_litellm_responses(tools_gateway: str, upstream: tuple[str, FakeUpstream]) -> None:
    response = run_litellm(
        "responses", input="What is six times seven?", api_base=f"{tools_gateway}/v1"
    )
    assert response["output"][0]["content"][0]["text"] == CONFIDENT
    body = sent(upstream)
    assert body["messages"] == QUESTION
    assert_nothing_injected(body)
