"""Verifier input vectors for answer records, cached per record and per encoder.

The cache is one ``.npz`` store per encoder + feature composition + versions of the libraries
that compute the vectors, keyed by a digest of each record's conversation and answer, so adding
rows to a data set encodes only the new rows. An unreadable store is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from sdm_router.core.provenance import versions_digest
from sdm_router.training.records import AnswerRecord
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.features import FEATURE_COMPOSITION, compose_features

F32Array = npt.NDArray[np.float32]
logger = logging.getLogger(__name__)
# The libraries whose versions can change an encoded vector.
FEATURE_LIBRARIES = ("torch", "transformers", "tokenizers", "numpy")


def record_key(record: AnswerRecord) -> str:
    """Changes whenever what the encoder reads (conversation, answer, logprobs) changes."""
    digest = hashlib.sha256()
    for message in record.messages:
        digest.update(f"{message.role}\x00{message.content}\x00".encode())
    digest.update(record.response.encode())
    if record.token_logprobs is not None:
        digest.update(repr([(t.token, t.logprob) for t in record.token_logprobs]).encode())
    return digest.hexdigest()[:32]


def store_path(cache_dir: Path, encoder: HiddenStateEncoder) -> Path:
    """The store for this encoder and feature composition."""
    libraries = versions_digest(FEATURE_LIBRARIES)
    identity = f"{encoder.fingerprint}|{FEATURE_COMPOSITION}|{libraries}".encode()
    return cache_dir / f"features-{hashlib.sha256(identity).hexdigest()[:16]}.npz"


def _load_store(path: Path) -> dict[str, F32Array]:
    if not path.exists():
        return {}
    try:
        with np.load(path) as data:
            keys, vectors = data["keys"], data["vectors"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        logger.warning("feature store %s is unreadable (%s); encoding again", path, error)
        return {}
    return {str(key): vectors[i] for i, key in enumerate(keys)}


def _save_store(path: Path, store: dict[str, F32Array]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = np.asarray(sorted(store))
    vectors = np.stack([store[key] for key in keys]).astype(np.float32)
    temporary = path.with_name(path.stem + ".tmp.npz")
    np.savez(temporary, keys=keys, vectors=vectors)
    temporary.replace(path)


def _text_length(record: AnswerRecord) -> int:
    """Characters the encoder reads, a proxy for its token count."""
    return len(record.response) + sum(len(message.content) for message in record.messages)


def encode_records(
    records: Sequence[AnswerRecord],
    encoder: HiddenStateEncoder,
    cache_dir: Path | None = None,
    batch_size: int = 256,
    show_progress: bool = True,
    save_every: int = 4096,
) -> F32Array:
    """[hidden state ‖ logprob attributes] for every record, in order.

    Missing rows are encoded shortest first, ``batch_size`` rows per encoder call (which pads
    them into batches), so the padding waste stays small. The store is saved after about every
    ``save_every`` new rows and at the end, so an interrupted encode resumes.
    """
    path = store_path(cache_dir, encoder) if cache_dir is not None else None
    store = _load_store(path) if path is not None else {}
    keys = [record_key(record) for record in records]
    missing = [i for i, key in enumerate(keys) if key not in store]
    # Rows of similar length share padded batches: sort the whole set, not each chunk.
    missing.sort(key=lambda i: _text_length(records[i]))
    bar = tqdm(total=len(missing), desc="encode", unit="row", disable=not show_progress)
    unsaved = 0
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        batch = [records[i].verification_input() for i in chunk]
        for i, vector in zip(chunk, compose_features(encoder.encode(batch), batch), strict=True):
            store[keys[i]] = vector.astype(np.float32)
        bar.update(len(chunk))
        unsaved += len(chunk)
        if path is not None and unsaved >= save_every:
            _save_store(path, store)
            unsaved = 0
    bar.close()
    if path is not None and unsaved:
        _save_store(path, store)
    if not records:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([store[key] for key in keys]).astype(np.float32)
