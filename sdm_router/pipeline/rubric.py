"""The judge's rubric: the prompt a judge model is asked with, and how its reply becomes a label.

The judge is asked whether an answer correctly and completely answers the user's last
message (kind ``judge``), or, given the route's strongest tier's own answer as a reference,
whether the answer is correct in its light (kind ``reference``). Its reply must **begin with
the word** ``correct`` or ``incorrect`` (case, leading spaces and markdown emphasis aside; a
short reason may follow); anything else is unusable and is not a label. When the judge's
backend returns logprobs, the label carries the judge's log-probability of that word (the sum
over the tokens that spell it). docs/labeling.md prints the prompts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdm_router.core.decisions import FeedbackLabel
from sdm_router.core.generation import Message, TokenLogprob

JUDGE_SYSTEM = (
    "You grade the answers of an AI assistant. Decide whether the assistant's answer correctly "
    "and completely answers the user's last message. Reply with one word first: correct or "
    "incorrect. Then you may give one short sentence of reason."
)
REFERENCE_SYSTEM = (
    "You grade the answers of an AI assistant against a reference answer written by a stronger "
    "model. Decide whether the assistant's answer correctly and completely answers the user's "
    "last message; where the two answers disagree, the reference is usually right. Reply with "
    "one word first: correct or incorrect. Then you may give one short sentence of reason."
)
QUESTION = "Is the answer correct and complete? Begin your reply with correct or incorrect."

_VERDICT = re.compile(r"\s*[*_`\"'(\[]*\s*(correct|incorrect)(?![A-Za-z0-9])", re.IGNORECASE)


def _transcript(conversation: tuple[Message, ...]) -> str:
    return "\n".join(f"{message.role}: {message.content}" for message in conversation)


def judge_messages(
    conversation: tuple[Message, ...], answer: str, reference: str | None = None
) -> tuple[Message, ...]:
    """The judge's prompt for ``answer`` to ``conversation`` (with a ``reference`` answer for
    the ``reference`` kind)."""
    parts = [f"Conversation:\n{_transcript(conversation)}", f"Answer to grade:\n{answer}"]
    if reference is not None:
        parts.append(f"Reference answer:\n{reference}")
    parts.append(QUESTION)
    system = JUDGE_SYSTEM if reference is None else REFERENCE_SYSTEM
    return (
        Message(role="system", content=system),
        Message(role="user", content="\n\n".join(parts)),
    )


@dataclass(frozen=True, slots=True)
class JudgeReply:
    """What a judge said: the label (None: unusable), its logprob of the verdict word (None
    without logprobs), and the reply text."""

    label: FeedbackLabel | None
    logprob: float | None
    text: str


def _word_logprob(
    text: str, span: tuple[int, int], tokens: tuple[TokenLogprob, ...] | None
) -> float | None:
    """The sum of the logprobs of the tokens that spell ``text[span]``; None when there are
    none or they do not spell the reply."""
    if not tokens or "".join(token.token for token in tokens) != text:
        return None
    total, offset = 0.0, 0
    for token in tokens:
        end = offset + len(token.token)
        if end > span[0] and offset < span[1]:
            total += token.logprob
        offset = end
    return total


def read_reply(text: str, tokens: tuple[TokenLogprob, ...] | None = None) -> JudgeReply:
    """The label a judge's reply gives (see the module)."""
    match = _VERDICT.match(text)
    if match is None:
        return JudgeReply(None, None, text)
    word = match.group(1).lower()
    label: FeedbackLabel = "correct" if word == "correct" else "incorrect"
    return JudgeReply(label, _word_logprob(text, match.span(1), tokens), text)
