"""Read and write `.sdmkitmodel` v1 directory packages: atomic writes, SHA-256 checksums.

Layout: manifest.json, weights.f32 (W₁, b₁, W₂, b₂ little-endian float32), support.f32
([N, M] float32), support.jsonl ({id, label, predictedLabel, document?}), optionally
calibration.jsonl and, beside it, calibration.f32 (the calibration rows' exemplars, [n, M]).
Every refusal is an :class:`ArtifactError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .adaptor import AdaptorWeights
from .errors import ArtifactError
from .manifest import (
    CALIBRATION_FILE,
    CALIBRATION_VECTORS_FILE,
    CALIBRATION_VECTORS_KEY,
    MANIFEST_FILE,
    SUPPORT_RECORDS_FILE,
    SUPPORT_VECTORS_FILE,
    WEIGHTS_FILE,
    ModelContents,
    Support,
    parse_manifest,
    to_manifest,
)

F32Array = npt.NDArray[np.float32]
_PAYLOADS = (WEIGHTS_FILE, SUPPORT_VECTORS_FILE, SUPPORT_RECORDS_FILE)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _strict_json(text: str, file: Path) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise ArtifactError(file, f"duplicate key {key!r}")
            result[key] = value
        return result

    def constant(token: str) -> Any:
        raise ArtifactError(file, f"non-finite number {token}")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as error:
        raise ArtifactError(file, f"invalid JSON ({error})") from error
    except RecursionError as error:
        raise ArtifactError(file, "invalid JSON (nested too deeply)") from error


def _read_f32(path: Path, count: int) -> F32Array:
    if not path.is_file():
        raise ArtifactError(path, "missing file")
    size = path.stat().st_size
    if size != count * 4:
        kind = "truncated" if size < count * 4 else "oversized"
        raise ArtifactError(path, f"{kind}: {size} bytes, expected {count * 4}")
    values = np.fromfile(path, dtype="<f4", count=count).astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ArtifactError(path, "contains a non-finite value")
    return values


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as error:
        raise ArtifactError(path, f"unreadable ({error})") from error
    for number, line in enumerate(lines, start=1):
        value = _strict_json(line, path) if line.strip() else None
        if not isinstance(value, dict):
            raise ArtifactError(path, f"line {number} must be a JSON object")
        rows.append(value)
    return rows


def _support(path: Path, vectors: F32Array, classes: int) -> Support:
    ids, labels, predictions, documents = [], [], [], []
    for number, row in enumerate(_read_jsonl(path), start=1):
        if not {"id", "label", "predictedLabel"} <= set(row) or not isinstance(row["id"], str):
            raise ArtifactError(path, f"line {number} needs id, label and predictedLabel")
        label, predicted = row["label"], row["predictedLabel"]
        if not isinstance(label, int) or not (label == -99 or 0 <= label < classes):
            raise ArtifactError(path, f"line {number} label {label!r} is not a class")
        if not isinstance(predicted, int) or not 0 <= predicted < classes:
            raise ArtifactError(path, f"line {number} predictedLabel {predicted!r} is not a class")
        ids.append(row["id"])
        labels.append(label)
        predictions.append(predicted)
        documents.append(row.get("document"))
    if len(ids) != vectors.shape[0]:
        raise ArtifactError(path, f"has {len(ids)} records, expected {vectors.shape[0]}")
    if len(set(ids)) != len(ids):
        raise ArtifactError(path, "support ids must be unique")
    return Support(
        vectors=vectors,
        ids=tuple(ids),
        labels=np.asarray(labels, dtype=np.int64),
        predictions=np.asarray(predictions, dtype=np.int64),
        documents=tuple(documents) if any(d is not None for d in documents) else None,
    )


def _calibration_vectors(
    root: Path,
    rows: list[dict[str, Any]] | None,
    metadata: dict[str, Any] | None,
    exemplar_dimension: int,
    verify_checksums: bool,
) -> F32Array | None:
    """calibration.f32, described by ``metadata.calibrationVectors`` (the reference's validator
    wants ``checksums`` to name only its own files, so this file's digest lives there)."""
    path = root / CALIBRATION_VECTORS_FILE
    entry = (metadata or {}).get(CALIBRATION_VECTORS_KEY)
    if entry is None:
        if path.exists():
            raise ArtifactError(path, f"present but metadata.{CALIBRATION_VECTORS_KEY} is absent")
        return None
    if not isinstance(entry, dict) or entry.get("file") != CALIBRATION_VECTORS_FILE:
        raise ArtifactError(
            root / MANIFEST_FILE, f"metadata.{CALIBRATION_VECTORS_KEY} is malformed"
        )
    if rows is None or entry.get("rows") != len(rows):
        raise ArtifactError(path, f"must hold one exemplar per {CALIBRATION_FILE} row")
    if not path.is_file():
        raise ArtifactError(path, "missing file")
    if verify_checksums and sha256_file(path) != entry.get("sha256"):
        raise ArtifactError(path, "checksum mismatch (SHA-256 differs from the manifest)")
    count = len(rows) * exemplar_dimension
    return _read_f32(path, count).reshape(len(rows), exemplar_dimension)


def _verify_checksums(root: Path, checksums: dict[str, str] | None) -> None:
    if checksums is None:
        return
    expected = set(_PAYLOADS) | (
        {CALIBRATION_FILE} if (root / CALIBRATION_FILE).exists() else set()
    )
    if set(checksums) != expected:
        raise ArtifactError(root / MANIFEST_FILE, "checksums must cover exactly the payload files")
    for name, digest in checksums.items():
        target = root / name
        if not target.is_file():
            raise ArtifactError(target, "missing file")
        if sha256_file(target) != digest:
            raise ArtifactError(target, "checksum mismatch (SHA-256 differs from the manifest)")


def read_artifact(path: str | Path, verify_checksums: bool = True) -> ModelContents:
    """Load and validate a package; raises ArtifactError naming the file and the problem
    (never a file's contents: a file that is not UTF-8 or cannot be read is named only)."""
    root = Path(path)
    try:
        return _read_package(root, verify_checksums)
    except UnicodeDecodeError as error:
        raise ArtifactError(root, f"a text file is not UTF-8 (byte {error.start})") from error
    except OSError as error:
        raise ArtifactError(
            root, f"cannot be read ({error.strerror or type(error).__name__})"
        ) from error


def _read_package(root: Path, verify_checksums: bool) -> ModelContents:
    if not root.is_dir():
        raise ArtifactError(root, "not a .sdmkitmodel directory")
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(manifest_path, "missing file")
    parsed = parse_manifest(_strict_json(manifest_path.read_text(encoding="utf-8"), manifest_path))
    if verify_checksums:
        _verify_checksums(root, parsed.checksums)
    cfg = parsed.configuration
    dims = (cfg.embedding_dimension, cfg.exemplar_dimension, cfg.number_of_classes)
    flat = _read_f32(root / WEIGHTS_FILE, AdaptorWeights.element_count(*dims))
    vectors = _read_f32(
        root / SUPPORT_VECTORS_FILE, parsed.support_count * cfg.exemplar_dimension
    ).reshape(parsed.support_count, cfg.exemplar_dimension)
    calibration = root / CALIBRATION_FILE
    rows = _read_jsonl(calibration) if calibration.exists() else None
    return ModelContents(
        configuration=cfg,
        normalization=parsed.normalization,
        representation=parsed.representation,
        weights=AdaptorWeights.from_flat(flat, *dims),
        support=_support(root / SUPPORT_RECORDS_FILE, vectors, cfg.number_of_classes),
        distance_cdfs=parsed.distance_cdfs,
        q_prime_cdfs=parsed.q_prime_cdfs,
        regions=parsed.regions,
        calibration_rows=rows,
        calibration_vectors=_calibration_vectors(
            root, rows, parsed.metadata, cfg.exemplar_dimension, verify_checksums
        ),
        metadata=parsed.metadata,
        model_id=parsed.model_id,
        created_at=parsed.created_at,
        producer=parsed.producer,
    )


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=True, allow_nan=False, separators=(",", ":")))
            stream.write("\n")


def _support_rows(support: Support) -> list[dict[str, Any]]:
    rows = []
    for i, identifier in enumerate(support.ids):
        row: dict[str, Any] = {
            "id": identifier,
            "label": int(support.labels[i]),
            "predictedLabel": int(support.predictions[i]),
        }
        if support.documents is not None and support.documents[i] is not None:
            row["document"] = support.documents[i]
        rows.append(row)
    return rows


def _stage(directory: Path, contents: ModelContents) -> None:
    np.asarray(contents.weights.flatten(), dtype="<f4").tofile(directory / WEIGHTS_FILE)
    np.asarray(contents.support.vectors, dtype="<f4").tofile(directory / SUPPORT_VECTORS_FILE)
    _write_jsonl(directory / SUPPORT_RECORDS_FILE, _support_rows(contents.support))
    files = list(_PAYLOADS)
    if contents.calibration_rows is not None:
        _write_jsonl(directory / CALIBRATION_FILE, contents.calibration_rows)
        files.append(CALIBRATION_FILE)
    if contents.calibration_vectors is not None:
        if contents.calibration_rows is None:
            raise ArtifactError(directory, "calibration vectors need calibration rows")
        vectors = np.asarray(contents.calibration_vectors, dtype="<f4")
        vectors.tofile(directory / CALIBRATION_VECTORS_FILE)
    manifest = to_manifest(contents)
    metadata = dict(manifest.get("metadata") or {})
    metadata.pop(CALIBRATION_VECTORS_KEY, None)
    if contents.calibration_vectors is not None:
        metadata[CALIBRATION_VECTORS_KEY] = {
            "file": CALIBRATION_VECTORS_FILE,
            "rows": int(contents.calibration_vectors.shape[0]),
            "sha256": sha256_file(directory / CALIBRATION_VECTORS_FILE),
        }
    if metadata:
        manifest["metadata"] = metadata
    manifest["checksums"] = {name: sha256_file(directory / name) for name in files}
    text = json.dumps(manifest, ensure_ascii=True, indent=2, allow_nan=False) + "\n"
    (directory / MANIFEST_FILE).write_text(text, encoding="utf-8")
    extra = [CALIBRATION_VECTORS_FILE] if contents.calibration_vectors is not None else []
    for name in [*files, *extra, MANIFEST_FILE]:
        with (directory / name).open("rb") as stream:
            os.fsync(stream.fileno())


def write_artifact(path: str | Path, contents: ModelContents, overwrite: bool = False) -> Path:
    """Stage in a sibling temporary directory, re-read and verify, then rename into place."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise ArtifactError(target, "already exists (pass overwrite=True to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    backup: Path | None = None
    try:
        _stage(staging, contents)
        read_artifact(staging, verify_checksums=True)
        if target.exists():
            read_artifact(target, verify_checksums=False)  # only replace a real package
            backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
            target.rename(backup)
        staging.rename(target)
    except BaseException:
        if backup is not None and not target.exists():
            backup.rename(target)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
        if backup is not None and backup.exists():
            shutil.rmtree(backup)
    return target
