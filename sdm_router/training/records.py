"""Labelled answer records: what ``data build`` writes and ``verifier build/evaluate`` read.

One JSON object per line of ``rows.jsonl``::

    {"id": "capitals/france/p0#greedy", "item_id": "capitals/france/p0", "group_id": ...,
     "family": "capitals", "variant": "greedy" | "sampled-<k>" | "retrieval",
     "question": <the suite's prompt>, "messages": [{"role": "user", "content": ...}],
     "response": ..., "token_logprobs": [[token, logprob], ...] | null,
     "label": 1 | 0, "check": <checker outcome>, "answer": <canonical answer>, "model": ...}

``messages`` is exactly what the generator saw (with retrieved context when ``variant`` is
``retrieval``), so the verifier scores the same conversation the gateway will verify.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdm_router.core.generation import Message, TokenLogprob
from sdm_router.core.verdict import VerificationInput

ROWS_FILE = "rows.jsonl"


class RecordError(ValueError):
    """A record file line is malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """One generated answer with its checker label."""

    id: str
    item_id: str
    group_id: str
    family: str
    variant: str
    question: str
    messages: tuple[Message, ...]
    response: str
    token_logprobs: tuple[TokenLogprob, ...] | None
    label: int
    check: str
    answer: str
    model: str

    def verification_input(self) -> VerificationInput:
        """The (conversation, answer) pair the verifier scores."""
        return VerificationInput(self.messages, self.response, self.token_logprobs)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "item_id": self.item_id,
            "group_id": self.group_id,
            "family": self.family,
            "variant": self.variant,
            "question": self.question,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "response": self.response,
            "token_logprobs": None
            if self.token_logprobs is None
            else [[t.token, t.logprob] for t in self.token_logprobs],
            "label": self.label,
            "check": self.check,
            "answer": self.answer,
            "model": self.model,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnswerRecord:
        """Parse one record; raises ``KeyError``/``TypeError``/``ValueError`` on bad data."""
        logprobs = data.get("token_logprobs")
        label = int(data["label"])
        if label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {label}")
        return cls(
            id=str(data["id"]),
            item_id=str(data["item_id"]),
            group_id=str(data.get("group_id", data["item_id"])),
            family=str(data["family"]),
            variant=str(data["variant"]),
            question=str(data["question"]),
            messages=tuple(
                Message(role=m["role"], content=str(m["content"])) for m in data["messages"]
            ),
            response=str(data["response"]),
            token_logprobs=None
            if logprobs is None
            else tuple(TokenLogprob(str(t), float(lp)) for t, lp in logprobs),
            label=label,
            check=str(data.get("check", "")),
            answer=str(data.get("answer", "")),
            model=str(data.get("model", "")),
        )


def read_records(path: Path) -> list[AnswerRecord]:
    """Every record of a JSONL file; a bad line is refused with its file and line number."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(AnswerRecord.from_json(json.loads(line)))
            except (KeyError, TypeError, ValueError) as error:
                raise RecordError(f"{path}:{number}: malformed record ({error!r})") from error
    return records


def write_records(path: Path, records: Iterable[AnswerRecord]) -> int:
    """Write records as JSONL (atomically); returns the count."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with temporary.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            count += 1
    temporary.replace(path)
    return count


def iter_ids(path: Path) -> Iterator[str]:
    """The ids already in a (possibly partial) record file, for resuming."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                yield str(json.loads(line)["id"])
            except (ValueError, KeyError):
                continue  # a torn last line from an interrupted run is skipped and redone


def calibrated_on(
    records: Iterable[AnswerRecord], before: Iterable[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """An artifact's ``calibratedOn`` record: each model identity its support and calibration
    rows came from (``AnswerRecord.model``), with how many rows, added to ``before`` (a parent
    artifact's record). The gateway verifies a route with the artifact only when every model
    the route's tiers serve is listed (rows without a model are not counted)."""
    counts: dict[str, int] = {}
    for entry in before:
        counts[str(entry["model"])] = counts.get(str(entry["model"]), 0) + int(entry.get("rows", 0))
    for record in records:
        if record.model:
            counts[record.model] = counts.get(record.model, 0) + 1
    return [{"model": model, "rows": rows} for model, rows in sorted(counts.items())]
