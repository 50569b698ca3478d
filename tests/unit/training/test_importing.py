"""``data import --input``: rows from any source, validated line by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdm_router.training.importing import read_import_file
from sdm_router.training.records import RecordError


def write(tmp_path: Path, rows: list[Any]) -> Path:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n"
    )
    return path


def test_rows_of_every_shape_become_records(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            {"prompt": "What is 2+2?", "response": "4", "label": "correct", "id": "a"},
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Capital of France?"},
                ],
                "response": "Lyon",
                "label": 0,
                "group": "france",
                "family": "capitals",
                "token_logprobs": [["Ly", -0.5], ["on", -1.0]],
            },
            {"prompt": "What is 2+2?", "response": "5", "label": False},
            {"prompt": "  what is 2+2?", "response": "four", "label": True},
        ],
    )
    first, second, third, fourth = read_import_file(path)
    assert (first.id, first.label, first.messages[0].role) == ("a", 1, "user")
    assert (second.label, second.group_id, second.family) == (0, "france", "capitals")
    assert second.token_logprobs is not None and second.token_logprobs[1].logprob == -1.0
    assert second.messages[0].content == "Be brief."
    assert third.label == 0 and third.id.startswith("labels-3-")
    # answers to the same question share a group: they never straddle splits
    assert first.group_id == third.group_id
    assert fourth.label == 1


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"prompt": "q", "label": 1}, r"labels.jsonl:2: response: Field required"),
        (
            {"messages": [{"role": "robot", "content": "hi"}], "response": "x", "label": 1},
            r":2: messages\[0\]\.role: ",
        ),
        ({"prompt": "q", "response": "x", "label": "maybe"}, r":2: label: "),
        (
            {"prompt": "q", "messages": [{"role": "user", "content": "q"}], "response": "x",
             "label": 1},
            r":2: \(the row\): Value error, give exactly one of messages and prompt",
        ),
        ({"prompt": "q", "response": "x", "label": 1, "colour": "red"}, r":2: colour: "),
        ("{not json", r":2: not a JSON object"),
        ({"prompt": "q", "response": "x", "label": 1, "id": "ok"}, r":2: id: 'ok' is already"),
    ],
)  # fmt: skip
def test_a_bad_row_names_its_line_and_field(tmp_path: Path, row: Any, expected: str) -> None:
    path = write(tmp_path, [{"prompt": "q", "response": "y", "label": 1, "id": "ok"}, row])
    with pytest.raises(RecordError, match=expected):
        read_import_file(path)
