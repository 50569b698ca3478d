"""The one rule for text (``api/edge/text.py``), the admin reload's confinement to the artifact
roots and ``Content-Length`` as HTTP reads it: pure functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdm_router.api.edge.middleware import declared_length
from sdm_router.api.edge.text import invalid_text_field, invalid_text_in_body, is_valid_text
from sdm_router.api.operations.admin import confined
from sdm_router.core.errors import InvalidRequest


def test_valid_text_is_every_scalar_value_and_nothing_else() -> None:
    assert is_valid_text("ascii") and is_valid_text("\x00\uffff\U0010ffff\U0001f600")
    assert not is_valid_text("\ud800") and not is_valid_text("a\udfff")
    assert not is_valid_text("\ud83d")  # half of a pair


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"messages": [{"role": "user", "content": "ok"}, {"content": "x\ud800"}]},
         "messages[1].content"),
        ({"a": {"b": [["\udc00"]]}}, "a.b[0][0]"),
        ({"tools": {"\ud800key": 1}}, "tools.\\ud800key"),
        ("\udfff", "<body>"),
        ({"first": "\ud800", "second": "\ud800"}, "first"),  # in document order
        ({"fine": ["\U0001f600", 1, None, 2.5, True]}, None),
    ],
)  # fmt: skip
def test_the_first_invalid_string_is_named_by_its_field(
    document: object, field: str | None
) -> None:
    assert invalid_text_field(document) == field


def test_depth_cannot_exhaust_the_stack() -> None:
    document: object = "\ud800"
    for _ in range(5000):  # past the interpreter's recursion limit
        document = [document]
    assert invalid_text_field(document) == "[0]" * 5000


def test_bodies_orjson_reads_are_not_searched() -> None:
    body = {"content": "\ud800"}
    assert invalid_text_in_body(json.dumps(body).encode()) == "content"
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert invalid_text_in_body(raw) == "content"
    assert invalid_text_in_body(json.dumps(body).encode("utf-16")) == "content"
    assert invalid_text_in_body(json.dumps({"content": "\U0001f600"}).encode()) is None
    assert invalid_text_in_body(b'{"content": "plain"}') is None  # no escape: no parse at all
    assert invalid_text_in_body(b"[" * 100_000) is None  # not JSON: the route says so
    assert invalid_text_in_body(b"") is None


@pytest.mark.parametrize(
    ("value", "length"),
    [(b"49", 49), (b"49 ", 49), (b"\t49\t", 49), (b"0", 0), (b"4 9", None), (b"-1", None),
     (b"", None), (b"49, 49", None), ("٤٩".encode(), None)],
)  # fmt: skip
def test_content_length_is_digits_with_optional_whitespace(
    value: bytes, length: int | None
) -> None:
    assert declared_length(value) == length


def test_an_artifact_is_named_only_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    (root / "v2.sdmkitmodel").mkdir(parents=True)
    (root / "escape.sdmkitmodel").symlink_to("/etc")
    assert confined(str(root / "v2.sdmkitmodel"), [root]) == (root / "v2.sdmkitmodel").resolve()
    assert confined(str(root / "missing"), [root]) == (root / "missing").resolve()
    refusals = set()
    for path in (
        "/etc",
        "/nonexistent",
        str(root / "escape.sdmkitmodel"),
        f"{root}/../x",
        "relative/v2",
        f"{root}/a\x00b",
    ):
        with pytest.raises(InvalidRequest) as caught:
            confined(path, [root])
        assert caught.value.code == "artifact_refused"
        refusals.add(caught.value.message)
    assert len(refusals) == 1  # the same words whether the path exists or not
    with pytest.raises(InvalidRequest, match="longer than 4096") as caught:
        confined(str(root / ("a" * 5000)), [root])
    assert caught.value.code == "artifact_refused"
