"""The gateway driven by the official ``openai`` client over real HTTP, against a fake upstream."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionContentPartImageParam, ChatCompletionMessageParam

from sdm_router.config import DEFAULT_ABSTAIN_MESSAGE
from tests.support.fake_upstream import CONFIDENT, UNSURE, FakeUpstream
from tests.support.openai_extra import extra_fields

pytestmark = pytest.mark.integration

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is six times seven?"}
]
HARD: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "A hard question nobody can answer"}
]


def test_non_stream_escalates_then_accepts(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=QUESTION)
    completion = raw.parse()
    assert completion.choices[0].message.content == CONFIDENT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    verification = extra_fields(completion)["verification"]
    assert verification["decision"] == "accept"
    assert verification["reason"] == "verified"
    assert verification["tier"] == 1
    assert [a["action"] for a in verification["attempts"]] == ["escalate", "accept"]
    assert verification["attempts"][0]["reason"] == "predicted_incorrect"
    assert raw.headers["x-sdm-decision"] == "accept"
    assert raw.headers["x-sdm-tier"] == "1"
    assert float(raw.headers["x-sdm-region-alpha"]) == pytest.approx(0.96)
    assert raw.headers["x-request-id"]


def test_abstains_with_the_configured_message(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="auto", messages=HARD)
    assert completion.choices[0].message.content == DEFAULT_ABSTAIN_MESSAGE
    verification = extra_fields(completion)["verification"]
    assert verification["decision"] == "abstain"
    assert verification["reason"] == "predicted_incorrect"
    assert [a["action"] for a in verification["attempts"]] == ["escalate", "abstain"]


def test_best_effort_abstain_returns_the_rejected_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="unsure-best-effort", messages=QUESTION)
    assert completion.choices[0].message.content == UNSURE
    assert extra_fields(completion)["verification"]["decision"] == "abstain"


def test_error_abstain_is_a_422_with_code_abstained(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="unsure-error", messages=QUESTION)
    assert caught.value.status_code == 422
    assert caught.value.code == "abstained"


def test_stream_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CONFIDENT
    assert len({c.id for c in chunks}) == 1
    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None and final.usage.total_tokens > 0
    assert extra_fields(final)["verification"]["decision"] == "accept"
    assert all(c.usage is None for c in chunks[:-1])
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]


def test_stream_without_usage_puts_the_verdict_on_the_last_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="auto", messages=HARD, stream=True))
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert extra_fields(final)["verification"]["decision"] == "abstain"
    assert all(chunk.usage is None for chunk in chunks)  # no usage chunk was asked for


def test_n_choices_from_best_of_n(
    client: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    completion = client.chat.completions.create(model="best-of-3", messages=QUESTION, n=2)
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert upstream[1].log.requests[-1]["n"] == 3
    assert upstream[1].log.requests[-1]["temperature"] == 0.7


def test_logprobs_are_returned_when_asked(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="good", messages=QUESTION, logprobs=True, top_logprobs=2
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    content = logprobs.content
    assert content is not None
    assert "".join(item.token for item in content) == CONFIDENT
    assert all(item.logprob <= 0 for item in content)


def test_sampling_parameters_reach_the_upstream(
    client: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    client.chat.completions.create(
        model="good",
        messages=QUESTION,
        max_completion_tokens=17,
        temperature=0.3,
        top_p=0.9,
        stop=["\n"],
        seed=7,
        user="alice",
        extra_body={"metadata": {"team": "a"}},  # accepted, changes nothing, not forwarded
    )
    sent = upstream[1].log.requests[-1]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (17, 0.3, 0.9)
    assert (sent["stop"], sent["seed"], sent["user"]) == (["\n"], 7, "alice")
    assert sent["logprobs"] is True
    assert "metadata" not in sent


@pytest.mark.parametrize(
    ("stop", "says"),
    [
        (["a", "b", "c", "d", "e"], "stop takes at most 4 sequences; 5 were given"),
        ([1], "stop must be a string or a list of up to 4 strings"),
    ],
)
def test_a_wrong_stop_says_what_stop_takes(client: openai.OpenAI, stop: object, says: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="good", messages=QUESTION, extra_body={"stop": stop})
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "stop"
    assert says in body["message"]
    assert "valid string" not in body["message"]


def test_a_missing_schema_name_names_its_path(client: openai.OpenAI) -> None:
    response_format = {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="good", messages=QUESTION, extra_body={"response_format": response_format}
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "response_format.json_schema.name"


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"])
def test_a_json_body_without_the_json_content_type_says_so(
    gateway_url: str, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    body = b'{"model": "good", "messages": [{"role": "user", "content": "hi"}]}'
    reply = httpx.post(f"{gateway_url}/v1/chat/completions", content=body, headers=headers)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "Content-Type: application/json" in error["message"]
    assert error["code"] == "invalid_content_type"


def test_an_image_part_is_a_400_naming_its_type(client: openai.OpenAI) -> None:
    image: ChatCompletionContentPartImageParam = {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.png"},
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="good", messages=[{"role": "user", "content": [image]}]
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "messages[0].content"
    assert "'image_url' are not supported; only 'text' parts are" in body["message"]


def test_an_unknown_parameter_is_a_400_naming_it(
    client: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    before = len(upstream[1].log.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="good", messages=QUESTION, extra_body={"temprature": 0.2}
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["message"].startswith("Unrecognized request argument supplied: temprature")
    assert (body["param"], body["code"]) == ("temprature", "unrecognized_argument")
    assert len(upstream[1].log.requests) == before  # refused before any backend call


def test_only_what_the_client_sent_reaches_the_upstream(
    client: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    client.chat.completions.create(model="good", messages=QUESTION)
    sent = upstream[1].log.requests[-1]
    # nothing injected: the upstream's own defaults apply (issue 26)
    assert not {"max_tokens", "temperature", "top_p"} & sent.keys()


def test_legacy_completions(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="auto", prompt="What is six times seven?")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == CONFIDENT
    assert extra_fields(completion)["verification"]["decision"] == "accept"


def test_legacy_completions_stream(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(model="auto", prompt="What is 6*7?", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == CONFIDENT
    assert extra_fields(chunks[-1])["verification"]["decision"] == "accept"


def test_models_retrieve_one_and_404_for_an_unknown_id(client: openai.OpenAI) -> None:
    model = client.models.retrieve("auto")
    assert (model.id, model.object, extra_fields(model)["kind"]) == ("auto", "model", "route")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_not_found"
    assert "no-such-model" in body["message"]


def test_models_lists_routes_and_direct_models(client: openai.OpenAI) -> None:
    models = {model.id: extra_fields(model)["kind"] for model in client.models.list()}
    assert models["auto"] == "route"
    assert models["good"] == "direct"


def test_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"n": 0}, "n"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"top_logprobs": 3}, None),
    ],
)
def test_wrong_types_are_400s_naming_the_field(
    client: openai.OpenAI, extra: dict[str, object], param: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", messages=QUESTION, extra_body=extra)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    if param is not None:
        assert body["param"] == param
        assert param in body["message"]


def test_bad_message_role_names_the_path(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[misc, list-item]
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "messages[0].role"


def test_failover_to_the_next_tier_on_upstream_500(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="failover", messages=QUESTION)
    verification = extra_fields(completion)["verification"]
    assert verification["decision"] == "accept"
    assert verification["attempts"][0]["reason"] == "backend_error"
    assert verification["attempts"][0]["action"] == "escalate"


def test_only_failing_backend_is_a_clean_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="only-failing", messages=QUESTION)
    assert caught.value.status_code == 502
    assert "scripted failure 500" in caught.value.message


def test_hanging_backend_is_a_504_within_its_timeout(client: openai.OpenAI) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="only-hanging", messages=QUESTION)
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 10  # the backend's total timeout is 3 s


def test_hanging_tier_escalates_after_its_timeout(
    client: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    completion = client.chat.completions.create(model="hang-then-good", messages=QUESTION)
    assert extra_fields(completion)["verification"]["tier"] == 1
    assert "hang" in upstream[1].log.disconnects


def test_upstream_400_is_the_clients_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fail-400", messages=QUESTION)


def test_broken_json_is_a_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="broken-json", messages=QUESTION)
    assert caught.value.status_code == 502


def test_passthrough_streams_then_reports_the_verdict(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="passthrough", messages=QUESTION, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == CONFIDENT
    assert extra_fields(chunks[-1])["verification"]["decision"] == "accept"


def test_passthrough_cannot_escalate_after_the_first_byte(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="passthrough-unsure", messages=QUESTION, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == UNSURE
    assert extra_fields(chunks[-1])["verification"]["decision"] == "abstain"


@pytest.mark.parametrize("model", ["broken-stream", "stream-error"])
def test_broken_upstream_stream_surfaces_as_api_error(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(model=model, messages=QUESTION, stream=True)
    with pytest.raises(openai.APIError):
        list(stream)


def test_retrieval_regenerates_with_context(
    client: openai.OpenAI, upstream: tuple[str, FakeUpstream]
) -> None:
    completion = client.chat.completions.create(model="retrieving", messages=HARD)
    verification = extra_fields(completion)["verification"]
    assert [a["action"] for a in verification["attempts"]] == ["retrieve", "accept"]
    assert verification["attempts"][1]["retrieved_context"] is True
    last_user = upstream[1].log.requests[-1]["messages"][-1]["content"]
    assert "The answer to hard questions is 42." in last_user


def test_budget_exhaustion_abstains(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="budget-1", messages=QUESTION)
    verification = extra_fields(completion)["verification"]
    assert verification["decision"] == "abstain"
    assert verification["reason"] == "budget_exhausted"


def test_each_request_logs_one_structured_line_without_text(
    client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="sdm_router.api.edge.middleware"):
        client.chat.completions.create(model="auto", messages=QUESTION)
        # the request-log middleware writes the line once the response has ended
        deadline = time.monotonic() + 5
        while not any(r.getMessage() == "request finished" for r in caplog.records):
            assert time.monotonic() < deadline, "no request line"
            time.sleep(0.02)
    (record,) = [r for r in caplog.records if r.getMessage() == "request finished"]
    fields = vars(record)  # the line's fields are attributes the logger added
    assert (fields["route"], fields["decision"], fields["tier"]) == ("auto", "accept", 1)
    assert fields["duration_ms"] > 0
    assert not hasattr(record, "prompt")  # prompt text stays out unless log_prompts is on
