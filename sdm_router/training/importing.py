"""``data import``: labelled answers from any source, or from the decision store, as the rows
``verifier build`` reads (``records.py``; the format is documented in docs/own-verifier.md).

An input line is ``{"messages": [...] | "prompt": "...", "response": "...", "label": ...,
"id"?, "group"?, "family"?, "model"?, "token_logprobs"?}``. ``label`` is 1/0, true/false or
"correct"/"incorrect". ``group`` keeps related rows (paraphrases of one question) in one split;
it defaults to a digest of the conversation, so answers to the same question never straddle
splits. A bad line is refused with its line number and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from sdm_router.config import StorageSettings
from sdm_router.core.decisions import LabelKind
from sdm_router.core.generation import Message, TokenLogprob, conversation
from sdm_router.storage.database import make_engine
from sdm_router.storage.labels import labelled_answer, labelled_answers_query
from sdm_router.training.records import AnswerRecord, RecordError

IMPORTED_FAMILY = "imported"
LABELS: dict[object, int] = {"correct": 1, "incorrect": 0, True: 1, False: 0}  # 1 == True


class _Turn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr


class ImportRow(BaseModel):
    """One labelled answer to import."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: StrictStr | None = Field(None, min_length=1)
    group: StrictStr | None = Field(None, min_length=1)
    family: StrictStr = Field(IMPORTED_FAMILY, min_length=1)
    model: StrictStr = ""
    messages: list[_Turn] | None = Field(None, min_length=1)
    prompt: StrictStr | None = None
    response: StrictStr
    label: StrictStr | StrictBool | StrictInt
    token_logprobs: list[list[StrictStr | float]] | None = None

    @field_validator("label")
    @classmethod
    def _known_label(cls, value: str | bool | int) -> str | bool | int:
        if value not in LABELS or (isinstance(value, int) and value not in (0, 1)):
            raise ValueError("must be 1 or 0, true or false, or 'correct' or 'incorrect'")
        return value

    @field_validator("token_logprobs")
    @classmethod
    def _pairs(cls, value: list[list[str | float]] | None) -> list[list[str | float]] | None:
        for pair in value or ():
            if len(pair) != 2 or not isinstance(pair[0], str) or isinstance(pair[1], str):
                raise ValueError("each entry must be [token, logprob]")
        return value

    @model_validator(mode="after")
    def _one_question(self) -> ImportRow:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages and prompt")
        return self

    def record(self, fallback_id: str) -> AnswerRecord:
        """The row as a labelled answer record."""
        turns = (
            None
            if self.messages is None
            else tuple(Message(role=t.role, content=t.content) for t in self.messages)
        )
        messages = conversation(turns, self.prompt)
        row_id = self.id or fallback_id
        label = LABELS[self.label]
        return AnswerRecord(
            id=row_id,
            item_id=row_id,
            group_id=self.group or conversation_group(messages),
            family=self.family,
            variant="imported",
            question=messages[-1].content,
            messages=messages,
            response=self.response,
            token_logprobs=None
            if self.token_logprobs is None
            else tuple(TokenLogprob(str(token), float(lp)) for token, lp in self.token_logprobs),
            label=label,
            check="correct" if label else "incorrect",
            answer="",
            model=self.model,
        )


def conversation_group(messages: tuple[Message, ...]) -> str:
    """A digest of a conversation: the default group of its answers."""
    text = json.dumps([[m.role, m.content.strip().casefold()] for m in messages])
    return "conversation-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _field(location: tuple[int | str, ...]) -> str:
    path = ""
    # pydantic names the member of a union it tried ("str", "list[...]"): not a field
    members = {"str", "int", "bool", "float", "list", "function-after"}
    for part in location:
        if isinstance(part, str) and ("[" in part or part in members):
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(the row)"


def read_import_file(path: Path) -> list[AnswerRecord]:
    """Every row of a JSONL file; the first bad line raises ``RecordError`` naming it."""
    records: list[AnswerRecord] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = ImportRow.model_validate(json.loads(line))
            except ValueError as error:
                if isinstance(error, ValidationError):
                    first = error.errors()[0]
                    where = _field(tuple(first["loc"]))
                    raise RecordError(f"{path}:{number}: {where}: {first['msg']}") from error
                raise RecordError(f"{path}:{number}: not a JSON object ({error})") from error
            digest = hashlib.sha256(line.encode()).hexdigest()[:12]
            record = row.record(f"{path.stem}-{number}-{digest}")
            if record.id in seen:
                raise RecordError(
                    f"{path}:{number}: id: {record.id!r} is already on line {seen[record.id]}"
                )
            seen[record.id] = number
            records.append(record)
    return records


def labelled_decisions(
    settings: StorageSettings,
    route: str | None = None,
    since: float | None = None,
    kinds: Collection[LabelKind] | None = None,
) -> Iterator[AnswerRecord]:
    """The decisions in the store whose answer (choice 0) carries a current label and whose
    text was kept, oldest first, as labelled answer records. The label is the one that counts
    (``storage/labels.py``): a person's over a judge's; ``kinds`` limits which sources are
    considered (``--sources human`` exports people's labels only). ``model`` is the answer's
    model identity, so that an artifact built from the rows records what it was calibrated
    on."""
    engine = make_engine(settings.sqlalchemy_url())
    query = labelled_answers_query(route=route, since=since, kinds=kinds, with_text=True)
    try:
        with engine.connect() as connection:
            for row in connection.execute(query):
                answer = labelled_answer(row)
                turns = answer.conversation or ()
                yield AnswerRecord(
                    id=answer.request_id,
                    item_id=answer.request_id,
                    group_id=conversation_group(turns),
                    family=answer.route,
                    variant="store",
                    question=turns[-1].content if turns else "",
                    messages=turns,
                    response=answer.answer or "",
                    token_logprobs=answer.answer_logprobs,
                    label=1 if answer.correct else 0,
                    check=answer.label,
                    answer="",
                    model=answer.answer_model or "",
                )
    finally:
        engine.dispose()
