"""A real HTTP server that plays a judge model speaking the OpenAI API, and knows the answers.

It reads the gateway's rubric prompt (``sdm_router.pipeline.rubric``): the user's last question
from the transcript and the answer to grade. It knows the right answer to each question it was
given (``answers``: question -> the text a correct answer contains, case aside) and replies the
way the rubric asks: ``correct`` or ``incorrect`` first, then a short reason, with logprobs
(the verdict word spelt over two tokens, so the gateway has to add them up). ``mode`` changes
at run time:

* ``honest``: the truth; a question it does not know gets "I cannot tell." (unusable);
* ``adversarial``: ``incorrect`` for every answer;
* ``garbage``: a reply that begins with neither word;
* ``down``: HTTP 503 for every call.

``calls`` counts the chat completions it answered (any mode) and ``graded`` records each
(question, answer, verdict) it gave.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.types import Receive, Scope, Send

from tests.support.fake_upstream import send_json

Mode = Literal["honest", "adversarial", "garbage", "down"]
# logprobs of the verdict word's two tokens, so the gateway's sum can be checked
VERDICT_TOKEN_LOGPROBS = (-0.05, -0.01)


def _section(text: str, title: str) -> str:
    """The block after ``title:`` in the rubric's user message, up to the next blank line."""
    start = text.find(f"{title}:\n")
    if start < 0:
        return ""
    rest = text[start + len(title) + 2 :]
    return rest.split("\n\n", 1)[0]


def last_question(transcript: str) -> str:
    """The user's last turn in the rubric's transcript (``role: content`` lines)."""
    question = ""
    for line in transcript.splitlines():
        if line.startswith("user: "):
            question = line.removeprefix("user: ")
    return question.strip()


@dataclass
class OracleJudge:
    """The ASGI app (see the module)."""

    answers: dict[str, str]
    mode: Mode = "honest"
    calls: int = 0
    graded: list[tuple[str, str, str]] = field(default_factory=list)

    def verdict(self, question: str, answer: str) -> str | None:
        """What the oracle knows: correct / incorrect, or None for a question it never saw."""
        expected = self.answers.get(question)
        if expected is None:
            return None
        return "correct" if expected.casefold() in answer.casefold() else "incorrect"

    def reply(self, payload: dict[str, Any]) -> str:
        """The judge's reply to a rubric prompt."""
        prompt = str(payload["messages"][-1]["content"])
        question = last_question(_section(prompt, "Conversation"))
        answer = _section(prompt, "Answer to grade")
        if self.mode == "garbage":
            return "Well, it depends on what you mean."
        verdict = "incorrect" if self.mode == "adversarial" else self.verdict(question, answer)
        if verdict is None:
            return "I cannot tell."
        self.graded.append((question, answer, verdict))
        return f"{verdict}. The expected answer is {self.answers.get(question, '?')}."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload = json.loads(body or b"{}")
        self.calls += 1
        if self.mode == "down":
            error = {"error": {"message": "the judge is down", "type": "server_error"}}
            await send_json(send, 503, error)
            return
        await send_json(send, 200, _completion(str(payload.get("model")), self.reply(payload)))


def _tokens(text: str) -> list[tuple[str, float]]:
    """The reply as tokens: the verdict word in two pieces, then word by word."""
    word, _, rest = text.partition(".")
    if word in ("correct", "incorrect"):
        half = len(word) // 2
        first, second = VERDICT_TOKEN_LOGPROBS
        tokens = [(word[:half], first), (word[half:], second)]
        rest = "." + rest
    else:
        tokens, rest = [], text
    pieces = rest.split(" ")
    tokens += [(piece if i == 0 else " " + piece, -0.2) for i, piece in enumerate(pieces)]
    return [(token, logprob) for token, logprob in tokens if token]


def _completion(model: str, text: str) -> dict[str, Any]:
    tokens = _tokens(text)
    return {
        "id": "chatcmpl-oracle",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": {
                    "content": [
                        {
                            "token": token,
                            "logprob": logprob,
                            "bytes": list(token.encode()),
                            "top_logprobs": [],
                        }
                        for token, logprob in tokens
                    ]
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": len(tokens), "total_tokens": 50},
    }
