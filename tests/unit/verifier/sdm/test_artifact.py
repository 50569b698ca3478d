"""Round trip and refusal of corrupt, truncated or mismatched `.sdmkitmodel` packages."""

import json
from pathlib import Path

import numpy as np
import pytest

from sdm_router.verifier.sdm import ArtifactError, SDMModel
from sdm_router.verifier.sdm.adaptor import AdaptorWeights
from sdm_router.verifier.sdm.artifact import read_artifact, write_artifact


def test_round_trip_and_forward(tiny_contents, tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "m.sdmkitmodel", tiny_contents)
    loaded = read_artifact(path)
    np.testing.assert_array_equal(loaded.weights.flatten(), tiny_contents.weights.flatten())
    np.testing.assert_array_equal(loaded.support.vectors, tiny_contents.support.vectors)
    assert loaded.regions == tiny_contents.regions
    assert loaded.representation["fingerprint"] == "fp-1"
    assert loaded.metadata == {"sdmRouter": {"featureComposition": "embedding"}}
    model = SDMModel.load(path, device="cpu")
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    w = tiny_contents.weights
    h = ((x - 0.5) / 2.0) @ w.projection_weight.T + w.projection_bias
    logits, exemplars = model.transform(x)
    np.testing.assert_allclose(exemplars, h, rtol=1e-6)
    np.testing.assert_allclose(logits, h @ w.classifier_weight.T + w.classifier_bias, rtol=1e-6)
    assert not list(tmp_path.glob(".*tmp*"))  # staging directory removed


def test_flat_weights_order() -> None:
    w = AdaptorWeights(
        np.arange(6, dtype=np.float32).reshape(2, 3), np.array([6, 7], np.float32),
        np.array([[8, 9]], np.float32), np.array([10], np.float32),
    )  # fmt: skip
    np.testing.assert_array_equal(w.flatten(), np.arange(11, dtype=np.float32))
    back = AdaptorWeights.from_flat(w.flatten(), 3, 2, 1)
    np.testing.assert_array_equal(back.projection_weight, w.projection_weight)


def test_refuses_to_overwrite_without_flag(tiny_contents, tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "m.sdmkitmodel", tiny_contents)
    with pytest.raises(ArtifactError, match="already exists"):
        write_artifact(path, tiny_contents)
    write_artifact(path, tiny_contents, overwrite=True)
    assert read_artifact(path).model_id == tiny_contents.model_id


def test_checksum_mismatch_names_the_file(tiny_contents, tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "m.sdmkitmodel", tiny_contents)
    data = bytearray((path / "weights.f32").read_bytes())
    data[0] ^= 0x01
    (path / "weights.f32").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"weights\.f32: checksum mismatch"):
        read_artifact(path)


def test_truncated_support_is_refused(tiny_contents, tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "m.sdmkitmodel", tiny_contents)
    (path / "support.f32").write_bytes((path / "support.f32").read_bytes()[:-4])
    with pytest.raises(ArtifactError, match=r"support\.f32: checksum mismatch"):
        read_artifact(path)
    with pytest.raises(ArtifactError, match=r"support\.f32: truncated: 92 bytes, expected 96"):
        read_artifact(path, verify_checksums=False)


def _edit_manifest(path: Path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_mismatched_and_unknown_manifest_fields(tiny_contents, tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "m.sdmkitmodel", tiny_contents)
    _edit_manifest(path, lambda m: m["weights"].update(elementCount=1))
    with pytest.raises(ArtifactError, match=r"manifest\.json: weights must name"):
        read_artifact(path)
    _edit_manifest(path, lambda m: m.update(extra=1))
    with pytest.raises(ArtifactError, match=r"manifest\.json: manifest has unsupported"):
        read_artifact(path)


def test_missing_payload_and_bad_support_record(tiny_contents, tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "m.sdmkitmodel", tiny_contents)
    lines = (path / "support.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"predictedLabel":1', '"predictedLabel":7')
    (path / "support.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtifactError, match=r"support\.jsonl: line 3 predictedLabel 7"):
        read_artifact(path, verify_checksums=False)
    (path / "weights.f32").unlink()
    with pytest.raises(ArtifactError, match=r"weights\.f32: missing file"):
        read_artifact(path)


def test_calibration_exemplars_round_trip_and_corruption_is_refused(
    tiny_contents, tmp_path: Path
) -> None:
    from dataclasses import replace

    rows = [{"id": f"c{i}", "label": i % 2, "zPrime": [0.0, 1.0]} for i in range(3)]
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    contents = replace(tiny_contents, calibration_rows=rows, calibration_vectors=vectors)
    path = write_artifact(tmp_path / "m.sdmkitmodel", contents)
    loaded = read_artifact(path)
    assert loaded.calibration_vectors is not None
    np.testing.assert_array_equal(loaded.calibration_vectors, vectors)
    manifest = json.loads((path / "manifest.json").read_text())
    # the reference's validator wants `checksums` to name only its own files
    assert "calibration.f32" not in manifest["checksums"]
    assert manifest["metadata"]["calibrationVectors"]["rows"] == 3
    assert manifest["metadata"]["sdmRouter"] == {"featureComposition": "embedding"}
    flipped = bytearray((path / "calibration.f32").read_bytes())
    flipped[0] ^= 0xFF
    (path / "calibration.f32").write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match=r"calibration\.f32.*checksum mismatch"):
        read_artifact(path)
    (path / "calibration.f32").write_bytes(bytes(flipped[:-4]))
    with pytest.raises(ArtifactError, match="calibration"):
        read_artifact(path)
    del manifest["metadata"]["calibrationVectors"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="calibrationVectors is absent"):
        read_artifact(path, verify_checksums=False)


def test_unreadable_manifests_are_artifact_errors_without_their_contents(tmp_path: Path) -> None:
    """What an admin reload may point at: each is refused by name, never a crash."""
    cases = {
        "not-utf8": b'{"schemaVersion": "\xff\xfe secret"}',
        "deep": b"[" * 100_000 + b"]" * 100_000,
    }
    for name, manifest in cases.items():
        folder = tmp_path / f"{name}.sdmkitmodel"
        folder.mkdir()
        (folder / "manifest.json").write_bytes(manifest)
        with pytest.raises(ArtifactError) as caught:
            read_artifact(folder)
        assert "secret" not in str(caught.value)
    with pytest.raises(ArtifactError, match="cannot be read"):
        read_artifact(tmp_path / ("a" * 300))  # a name too long for the file system
