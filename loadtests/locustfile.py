"""Locust scenario: chat completions, non-streamed and streamed, over a mix of prompts.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000

Any OpenAI-compatible base URL works as ``--host`` (our gateway, another proxy, vLLM itself).
Environment: ``LOCUST_MODEL`` (default ``auto``), ``LOCUST_API_KEY`` (sent as a bearer token),
``LOCUST_MAX_TOKENS`` (default 64). Streamed requests also report time to first content chunk
as a separate ``TTFT`` entry.
"""

from __future__ import annotations

import json
import os
import random
import time

from locust import FastHttpUser, between, task

PROMPTS = (
    "What is the capital of France?",
    "What is six times seven?",
    "Name the chemical symbol of gold.",
    "Explain in one sentence what a hash table is.",
    "This is a hard question: what is the 40th prime number?",
    "Translate 'good morning' into Spanish.",
    "Summarise the plot of Hamlet in two sentences.",
    "Which planet is closest to the sun?",
)
SYSTEM = "You are a concise assistant. Answer in one or two sentences."


def chat_body(stream: bool) -> dict[str, object]:
    """A chat request with a random prompt, sometimes with a system turn."""
    messages = [{"role": "user", "content": random.choice(PROMPTS)}]
    if random.random() < 0.5:
        messages.insert(0, {"role": "system", "content": SYSTEM})
    body: dict[str, object] = {
        "model": os.environ.get("LOCUST_MODEL", "auto"),
        "messages": messages,
        "max_tokens": int(os.environ.get("LOCUST_MAX_TOKENS", "64")),
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class ChatUser(FastHttpUser):
    """One client: three non-streamed requests for every streamed one, short think time."""

    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        """Headers for every request."""
        key = os.environ.get("LOCUST_API_KEY")
        self.headers = {"content-type": "application/json"}
        if key:
            self.headers["authorization"] = f"Bearer {key}"

    @task(3)
    def chat(self) -> None:
        """Non-streamed: a 200 whose body has one choice with content."""
        with self.client.post(
            "/v1/chat/completions",
            data=json.dumps(chat_body(stream=False)),
            headers=self.headers,
            name="chat",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            try:
                content = response.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                response.failure("not a chat.completion")
                return
            if not isinstance(content, str):
                response.failure("choice without text content")

    @task(1)
    def chat_stream(self) -> None:
        """Streamed: SSE ending in ``data: [DONE]``; time to first content chunk is reported."""
        started = time.perf_counter()
        first: float | None = None
        with self.client.post(
            "/v1/chat/completions",
            data=json.dumps(chat_body(stream=True)),
            headers=self.headers,
            name="chat stream",
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            text = b""
            for chunk in response.iter_content(chunk_size=1024, decode_content=False):
                if first is None and b'"content"' in chunk:
                    first = time.perf_counter()
                text += chunk
            if b"data: [DONE]" not in text:
                response.failure("stream ended without [DONE]")
                return
            if b'"error"' in text:
                response.failure("error event in stream")
                return
        if first is not None:
            self.environment.events.request.fire(
                request_type="TTFT",
                name="chat stream",
                response_time=(first - started) * 1000,
                response_length=0,
                exception=None,
                context={},
            )
