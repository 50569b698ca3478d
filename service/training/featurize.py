"""Verifier input vectors for answer records, cached on disk per encoder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from service.training.records import AnswerRecord
from service.verifier.encoder import HiddenStateEncoder
from service.verifier.features import FEATURE_COMPOSITION, compose_features

F32Array = npt.NDArray[np.float32]


def cache_key(records: Sequence[AnswerRecord], encoder: HiddenStateEncoder) -> str:
    """Changes whenever the records, the encoder or the feature composition change."""
    digest = hashlib.sha256()
    digest.update(encoder.fingerprint.encode())
    digest.update(FEATURE_COMPOSITION.encode())
    for record in records:
        digest.update(record.id.encode())
        digest.update(record.response.encode())
        digest.update(record.messages[-1].content.encode())
    return digest.hexdigest()[:24]


def encode_records(
    records: Sequence[AnswerRecord],
    encoder: HiddenStateEncoder,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    show_progress: bool = True,
) -> F32Array:
    """[hidden state ‖ logprob attributes] for every record, in order."""
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"features-{cache_key(records, encoder)}.npy"
        if cache_file.exists():
            cached: F32Array = np.load(cache_file)
            if cached.shape[0] == len(records):
                return cached
    chunks: list[F32Array] = []
    bar = tqdm(total=len(records), desc="encode", unit="row", disable=not show_progress)
    for start in range(0, len(records), batch_size):
        batch = [record.verification_input() for record in records[start : start + batch_size]]
        chunks.append(compose_features(encoder.encode(batch), batch))
        bar.update(len(batch))
    bar.close()
    features = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache_file.with_suffix(".tmp.npy")
        np.save(temporary, features)
        temporary.replace(cache_file)
    return features
