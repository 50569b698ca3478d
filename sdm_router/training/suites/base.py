"""Task items, their prompt styles and the task-family protocol."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from sdm_router.core.generation import Message
from sdm_router.training.suites.checking import Checker, CheckResult

FamilyKind = Literal["factual", "procedural"]
AnswerFormatKind = Literal["plain", "short", "sentence", "labelled"]


@dataclass(frozen=True, slots=True)
class AnswerFormat:
    """An instruction appended to the question that asks for one answer format."""

    kind: AnswerFormatKind
    instruction: str


# Index 0 of each table is "nothing": the bare question, no system prompt, no earlier turn.
# Append new entries at the end only: an item's id names them by index.
ANSWER_FORMATS: tuple[AnswerFormat, ...] = (
    AnswerFormat("plain", ""),
    AnswerFormat("short", "Answer with just the answer."),
    AnswerFormat("short", "Reply with only the answer, no explanation."),
    AnswerFormat("short", "Be brief."),
    AnswerFormat("sentence", "Answer in a full sentence."),
    AnswerFormat("sentence", "Please reply with a complete sentence."),
    AnswerFormat("labelled", "End your reply with a line of the form 'Answer: <your answer>'."),
    AnswerFormat("labelled", 'Give your answer in the format "Answer: ...".'),
)
SYSTEM_PROMPTS: tuple[str, ...] = (
    "",
    "You are a helpful assistant.",
    "You are a concise assistant. Answer accurately.",
    "You are a friendly tutor. Explain briefly, then give the answer.",
    "Answer the user's questions truthfully. If you do not know, say so.",
)
# Earlier turns that have nothing to do with any family's answers (no numbers, places,
# dates, elements or currencies), so that a checker never mistakes them for an answer.
CONTEXT_TURNS: tuple[tuple[str, str], ...] = (
    ("", ""),
    ("Hello!", "Hello! How can I help you?"),
    (
        "Can you suggest a name for a pet goldfish?",
        "How about Bubbles? It is short, cheerful and easy to remember.",
    ),
    ("What colour is a ripe banana?", "A ripe banana is yellow."),
    ("Say something kind.", "You are doing great, and your curiosity is a gift."),
    (
        "What is a synonym for happy?",
        "A common synonym for happy is joyful.",
    ),
    (
        "Give me a tip for staying focused.",
        "Put your phone in another room while you work.",
    ),
)
_FORMAT_KINDS: tuple[AnswerFormatKind, ...] = ("plain", "short", "sentence", "labelled")
_STYLE_CODE = re.compile(r"^p(\d+)(?:f(\d+))?(?:s(\d+))?(?:c(\d+))?$")
SYSTEM_SHARE = 0.5  # of items with a system prompt
CONTEXT_SHARE = 0.3  # of items after an earlier, unrelated turn


@dataclass(frozen=True, slots=True)
class PromptStyle:
    """How an item is put to the model: indexes into ``ANSWER_FORMATS``, ``SYSTEM_PROMPTS``
    and ``CONTEXT_TURNS`` (0: none). The default is the bare question as one user turn."""

    answer_format: int = 0
    system: int = 0
    context: int = 0

    def __post_init__(self) -> None:
        for value, table in (
            (self.answer_format, ANSWER_FORMATS),
            (self.system, SYSTEM_PROMPTS),
            (self.context, CONTEXT_TURNS),
        ):
            if not 0 <= value < len(table):
                raise KeyError(f"no prompt style entry {value}")

    @property
    def code(self) -> str:
        """The suffix of a styled item's id: "f2s1c3"; "" for the plain style."""
        parts = (("f", self.answer_format), ("s", self.system), ("c", self.context))
        return "".join(f"{letter}{value}" for letter, value in parts if value)

    @property
    def format_kind(self) -> AnswerFormatKind:
        """The answer format asked for: plain (none), short, sentence or labelled."""
        return ANSWER_FORMATS[self.answer_format].kind


PLAIN = PromptStyle()


def draw_style(item_id: str, seed: int) -> PromptStyle:
    """The style of ``item_id`` under ``seed``: a function of the two only, so a limited or
    resumed build draws the same. Each format kind is equally likely (then one wording of it);
    ``SYSTEM_SHARE`` of items get a system prompt and ``CONTEXT_SHARE`` an earlier turn."""
    rng = random.Random(f"style:{item_id}:{seed}")
    kind = rng.choice(_FORMAT_KINDS)
    answer_format = rng.choice(
        [index for index, entry in enumerate(ANSWER_FORMATS) if entry.kind == kind]
    )
    system = rng.randrange(1, len(SYSTEM_PROMPTS)) if rng.random() < SYSTEM_SHARE else 0
    context = rng.randrange(1, len(CONTEXT_TURNS)) if rng.random() < CONTEXT_SHARE else 0
    return PromptStyle(answer_format, system, context)


def split_style(item_id: str) -> tuple[str, PromptStyle]:
    """``family/params/p<k>f<i>s<j>c<l>`` -> (``family/params/p<k>``, its style)."""
    head, _, last = item_id.rpartition("/")
    match = _STYLE_CODE.match(last)
    if not head or match is None:
        raise KeyError(item_id)
    phrasing, *codes = match.groups()
    style = PromptStyle(*(int(code) if code else 0 for code in codes))
    return f"{head}/p{int(phrasing)}", style


@dataclass(frozen=True, slots=True)
class TaskItem:
    """One question with an exactly checkable answer, in one prompt style.

    ``id`` is ``family/parameters.../p<template index>`` plus the style's code ("p2f1s3") and
    is stable across runs and seeds; ``group_id`` drops the last part so that train /
    calibration splits keep all wordings of one fact together. ``question`` is the filled
    template; ``prompt`` adds the answer-format instruction (the user's turn) and ``messages``
    the system prompt and earlier turn. ``kind`` is the question kind within the family ("" if
    it has one). ``retrieval_key`` names the fact (factual families): a diagnostic of the
    retrieval corpus only, since ``data build`` searches with the user's turn, as serving does.
    """

    id: str
    family: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    checker: Checker = field(compare=False, repr=False)
    retrieval_key: str | None = None
    kind: str = ""
    style: PromptStyle = PLAIN

    @property
    def group_id(self) -> str:
        """The id without its last part: the same fact or computation in any wording."""
        return self.id.rsplit("/", 1)[0]

    @property
    def prompt(self) -> str:
        """The user's turn: the question, then the answer-format instruction if any."""
        instruction = ANSWER_FORMATS[self.style.answer_format].instruction
        return f"{self.question} {instruction}" if instruction else self.question

    @property
    def messages(self) -> tuple[Message, ...]:
        """The conversation put to the model: system prompt, earlier turn, then ``prompt``."""
        messages: list[Message] = []
        if self.style.system:
            messages.append(Message("system", SYSTEM_PROMPTS[self.style.system]))
        if self.style.context:
            question, answer = CONTEXT_TURNS[self.style.context]
            messages.extend((Message("user", question), Message("assistant", answer)))
        messages.append(Message("user", self.prompt))
        return tuple(messages)

    def with_style(self, style: PromptStyle) -> TaskItem:
        """This item in ``style`` (its id gets the style's code)."""
        base, _ = split_style(self.id)
        return replace(self, id=base + style.code, style=style)

    def check(self, response: str) -> CheckResult:
        """The checker's verdict on a free-text ``response``."""
        return self.checker.check(response)

    def is_correct(self, response: str) -> bool:
        """True when ``response`` commits to this item's answer and nothing else."""
        return self.checker.check(response).correct

    def to_record(self) -> dict[str, object]:
        """A JSON-ready dict of the item without its checker (rebuild with ``get_item``)."""
        return {
            "id": self.id,
            "family": self.family,
            "kind": self.kind,
            "question": self.question,
            "prompt": self.prompt,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "answer": self.answer,
            "aliases": list(self.aliases),
            "retrieval_key": self.retrieval_key,
        }


class TaskFamily(Protocol):
    """A family of questions sharing a template set and a checker kind.

    Families make plain items (``PLAIN`` style); ``Suite.generate`` draws each item's style.
    """

    @property
    def name(self) -> str:
        """The family's registry name, also the first part of its items' ids."""
        ...

    @property
    def kind(self) -> FamilyKind:
        """The family kind: "factual" when retrieval can supply the answer, else "procedural"."""
        ...

    def generate(self, seed: int) -> list[TaskItem]:
        """The family's item pool (plain style) in an order shuffled deterministically by
        ``seed``."""
        ...

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild the plain item with this id, ``.../p<k>`` (``KeyError`` for an unknown id)."""
        ...


def family_rng(family: str, seed: int) -> random.Random:
    """A random generator that depends only on the family name and the seed."""
    return random.Random(f"{family}:{seed}")


def split_id(item_id: str, family: str, parts: int) -> tuple[list[str], int]:
    """The parameters and phrasing index of ``family/<parts params>/p<k>``; KeyError if not."""
    pieces = item_id.split("/")
    if len(pieces) != parts + 2 or pieces[0] != family or not pieces[-1].startswith("p"):
        raise KeyError(item_id)
    try:
        return pieces[1:-1], int(pieces[-1][1:])
    except ValueError:
        raise KeyError(item_id) from None


def template(templates: tuple[str, ...], phrasing: int, item_id: str) -> str:
    """``templates[phrasing]``, or ``KeyError(item_id)`` when there is no such template."""
    if not 0 <= phrasing < len(templates):
        raise KeyError(item_id)
    return templates[phrasing]
