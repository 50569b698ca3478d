"""The per-record feature cache encodes each distinct answer once."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdm_router.core.generation import Message, TokenLogprob
from sdm_router.core.verdict import VerificationInput
from sdm_router.training.featurize import encode_records
from sdm_router.training.records import AnswerRecord
from sdm_router.verifier.features import ATTRIBUTE_DIMENSION


class CountingEncoder:
    """Encodes a text as [len, vowels] and counts what it was asked to encode."""

    fingerprint = "counting-encoder-v1"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, items: Sequence[VerificationInput]) -> np.ndarray[Any, Any]:
        self.encoded.extend(item.response for item in items)
        return np.asarray(
            [[len(i.response), sum(c in "aeiou" for c in i.response)] for i in items],
            dtype=np.float32,
        )


def record(index: int, response: str) -> AnswerRecord:
    return AnswerRecord(
        id=f"q{index}#greedy",
        item_id=f"q{index}",
        group_id=f"q{index}",
        family="f",
        variant="greedy",
        question="q",
        messages=(Message("user", f"question {index}"),),
        response=response,
        token_logprobs=(TokenLogprob("a", -0.5),),
        label=1,
        check="correct",
        answer="a",
        model="m",
    )


def test_second_call_encodes_only_new_rows(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    first = [record(0, "Paris"), record(1, "Rome")]
    features = encode_records(first, encoder, tmp_path, show_progress=False)  # type: ignore[arg-type]
    assert features.shape == (2, 2 + ATTRIBUTE_DIMENSION)
    assert features[0, 0] == 5.0
    grown = [*first, record(2, "Oslo")]
    again = encode_records(grown, encoder, tmp_path, show_progress=False)  # type: ignore[arg-type]
    assert encoder.encoded == ["Rome", "Paris", "Oslo"]  # shortest first, each new row once
    np.testing.assert_array_equal(again[:2], features)


def test_a_changed_answer_is_encoded_again(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    encode_records([record(0, "Paris")], encoder, tmp_path, show_progress=False)  # type: ignore[arg-type]
    encode_records([record(0, "Lyon")], encoder, tmp_path, show_progress=False)  # type: ignore[arg-type]
    assert encoder.encoded == ["Paris", "Lyon"]


def test_a_corrupt_store_is_encoded_again_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = CountingEncoder()
    encode_records([record(0, "Paris")], encoder, tmp_path, show_progress=False)  # type: ignore[arg-type]
    (store,) = tmp_path.glob("features-*.npz")
    store.write_bytes(b"truncated")
    encode_records([record(0, "Paris")], encoder, tmp_path, show_progress=False)  # type: ignore[arg-type]
    assert encoder.encoded == ["Paris", "Paris"]
    assert "unreadable" in caplog.text


def test_other_library_versions_use_another_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = CountingEncoder()
    encode_records([record(0, "Paris")], encoder, tmp_path, show_progress=False)  # type: ignore[arg-type]
    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "0.0" if name == "torch" else real_version(name)
    )
    encode_records([record(0, "Paris")], encoder, tmp_path, show_progress=False)  # type: ignore[arg-type]
    assert encoder.encoded == ["Paris", "Paris"]
    assert len(list(tmp_path.glob("features-*.npz"))) == 2


class FailingEncoder(CountingEncoder):
    """Fails on its third call, as an interrupted encode would."""

    def encode(self, items: Sequence[VerificationInput]) -> np.ndarray[Any, Any]:
        if len(self.encoded) >= 4:
            raise KeyboardInterrupt
        return super().encode(items)


def test_an_interrupted_encode_resumes_from_its_last_save(tmp_path: Path) -> None:
    rows = [record(i, "x" * (i + 1)) for i in range(6)]
    failing: Any = FailingEncoder()
    with pytest.raises(KeyboardInterrupt):
        encode_records(rows, failing, tmp_path, batch_size=2, show_progress=False, save_every=2)
    resumed = CountingEncoder()
    encode_records(rows, resumed, tmp_path, batch_size=2, show_progress=False)  # type: ignore[arg-type]
    assert resumed.encoded == ["xxxxx", "xxxxxx"]  # the first two batches were saved
