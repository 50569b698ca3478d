"""The real embedded model refuses what it cannot honour (tools, response_format, logit_bias,
penalties) with a 400 naming the parameter, before generating, and honours seed and stop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from sdm_router.config import load_settings
from sdm_router.main import build_app
from tests.support.servers import serve_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ASK: Any = [{"role": "user", "content": "What is the capital of France?"}]
TOOL: Any = {"type": "function", "function": {"name": "get_capital", "parameters": {}}}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    store = tmp_path_factory.mktemp("store") / "decisions.sqlite3"
    settings = load_settings(storage={"path": str(store)})
    with (
        serve_in_thread(build_app(settings)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=600) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [TOOL]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ],
)
@pytest.mark.parametrize("model", ["auto", "smollm2-135m"])
@pytest.mark.parametrize("stream", [False, True])
def test_what_the_local_model_cannot_honour_is_a_400(
    embedded: openai.OpenAI, fields: dict[str, Any], param: str, model: str, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        embedded.chat.completions.create(
            model=model, messages=ASK, stream=stream, extra_body=fields
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == (param, "unsupported_parameter")
    assert "smollm2-135m" in body["message"]


def test_seed_and_stop_are_honoured(embedded: openai.OpenAI) -> None:
    def ask() -> str:
        completion = embedded.chat.completions.create(
            model="smollm2-135m",
            messages=ASK,
            seed=7,
            temperature=1.0,
            max_tokens=8,
            stop=["\n"],
            user="someone",
            presence_penalty=0,  # neutral: accepted
            response_format={"type": "text"},
        )
        return completion.choices[0].message.content or ""

    first = ask()
    assert first == ask()  # the same seed samples the same answer
    assert "\n" not in first
