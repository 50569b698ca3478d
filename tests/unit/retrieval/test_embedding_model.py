"""Locating the packaged embedding model (no model is loaded here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdm_router.retrieval.embedding_model import (
    EmbeddingModelNotFound,
    locate_embedding_model,
    model_fingerprint,
)


def test_the_packaged_model_folder_is_found() -> None:
    folder = locate_embedding_model()
    assert (folder / "modules.json").is_file()
    assert folder.name == "model"


def test_a_missing_folder_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelNotFound, match=r"modules\.json"):
        locate_embedding_model(tmp_path / "nowhere")
    assert issubclass(EmbeddingModelNotFound, FileNotFoundError)


def test_fingerprint_is_stable_and_changes_with_the_config(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text("[]")
    (tmp_path / "config.json").write_text('{"hidden_size": 384}')
    first = model_fingerprint(tmp_path)
    assert first == model_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 768}')
    assert model_fingerprint(tmp_path) != first
