"""In-memory contents of a `.sdmkitmodel` v1 package and its manifest (de)serialization."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from .adaptor import AdaptorWeights
from .calibration import Region, ladder_alphas
from .errors import ArtifactError, SDMConfigurationError
from .normalization import Normalization

F32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.f32"
SUPPORT_VECTORS_FILE = "support.f32"
SUPPORT_RECORDS_FILE = "support.jsonl"
CALIBRATION_FILE = "calibration.jsonl"
# Optional: the calibration rows' exemplars ([len(calibration.jsonl), M] float32, in row order),
# so that ``verifier update`` can re-match them against a grown support.
CALIBRATION_VECTORS_FILE = "calibration.f32"
CALIBRATION_VECTORS_KEY = "calibrationVectors"  # metadata entry: {file, rows, sha256}
PRODUCER = {"name": "sdm-router", "version": "0.1.0"}
REPRESENTATION_KEYS = ("provider", "model", "revision", "inputTemplate", "fingerprint")
_TOP_REQUIRED = {
    "schemaVersion", "modelID", "createdAt", "producer", "configuration", "normalization",
    "representation", "weights", "support", "distanceCDFs", "rescaledSimilarityCDFs", "regions",
}  # fmt: skip
_CONFIGURATION_KEYS = {
    "numberOfClasses", "classNames", "embeddingDimension", "exemplarDimension", "maxNeighbors",
    "qOffset", "oodLimit", "alphaResolution", "distanceMetric", "neighborTieBreak",
}  # fmt: skip


@dataclass(frozen=True)
class ModelConfiguration:
    """The artifact's ``configuration`` block."""

    number_of_classes: int
    class_names: tuple[str, ...]
    embedding_dimension: int
    exemplar_dimension: int
    max_neighbors: int
    q_offset: float = 2.0
    ood_limit: int = 0
    alpha_resolution: float = 0.05


@dataclass(frozen=True)
class Support:
    """Support exemplars h′ with their ids, true labels and predicted labels."""

    vectors: F32Array
    ids: tuple[str, ...]
    labels: IntArray
    predictions: IntArray
    documents: tuple[str | None, ...] | None = None


@dataclass(frozen=True)
class ModelContents:
    """Everything a v1 package holds."""

    configuration: ModelConfiguration
    normalization: Normalization
    representation: dict[str, str | None]
    weights: AdaptorWeights
    support: Support
    distance_cdfs: list[F32Array]
    q_prime_cdfs: list[F32Array]
    regions: list[Region]
    calibration_rows: list[dict[str, Any]] | None = None
    calibration_vectors: F32Array | None = None
    metadata: dict[str, Any] | None = None
    model_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(
        default_factory=lambda: (
            datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
    )
    producer: dict[str, str] = field(default_factory=lambda: dict(PRODUCER))


def default_representation(overrides: dict[str, Any] | None = None) -> dict[str, str | None]:
    """Representation block with the reference defaults, updated by ``overrides``."""
    value: dict[str, str | None] = {
        "provider": "precomputed", "model": None, "revision": None,
        "inputTemplate": None, "fingerprint": "embedding_v1",
    }  # fmt: skip
    for key, item in (overrides or {}).items():
        if key not in REPRESENTATION_KEYS:
            raise SDMConfigurationError(f"unknown representation field {key!r}")
        value[key] = None if item is None else str(item)
    return value


def to_manifest(contents: ModelContents) -> dict[str, Any]:
    """The manifest dict (without checksums) for ``contents``."""
    cfg = contents.configuration
    manifest: dict[str, Any] = {
        "schemaVersion": 1,
        "modelID": contents.model_id,
        "createdAt": contents.created_at,
        "producer": dict(contents.producer),
        "configuration": {
            "numberOfClasses": cfg.number_of_classes,
            "classNames": list(cfg.class_names),
            "embeddingDimension": cfg.embedding_dimension,
            "exemplarDimension": cfg.exemplar_dimension,
            "maxNeighbors": cfg.max_neighbors,
            "qOffset": cfg.q_offset,
            "oodLimit": cfg.ood_limit,
            "alphaResolution": cfg.alpha_resolution,
            "distanceMetric": "squaredL2",
            "neighborTieBreak": "supportIndexAscending",
        },
        "normalization": {
            "mean": contents.normalization.mean,
            "standardDeviation": contents.normalization.standard_deviation,
        },
        "representation": dict(contents.representation),
        "weights": {
            "file": WEIGHTS_FILE,
            "elementCount": AdaptorWeights.element_count(
                cfg.embedding_dimension, cfg.exemplar_dimension, cfg.number_of_classes
            ),
        },
        "support": {
            "vectorsFile": SUPPORT_VECTORS_FILE,
            "recordsFile": SUPPORT_RECORDS_FILE,
            "count": len(contents.support.ids),
        },
        "distanceCDFs": [[float(x) for x in cdf] for cdf in contents.distance_cdfs],
        "rescaledSimilarityCDFs": [[float(x) for x in cdf] for cdf in contents.q_prime_cdfs],
        "regions": [
            {
                "alpha": r.alpha,
                "minimumRescaledSimilarity": r.minimum_rescaled_similarity,
                "outputThresholds": list(r.output_thresholds),
            }
            for r in contents.regions
        ],
    }
    if contents.metadata is not None:
        manifest["metadata"] = contents.metadata
    return manifest


class _Checker:
    """Small typed accessors that raise ArtifactError naming manifest.json and the field."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, problem: str) -> ArtifactError:
        return ArtifactError(self.file, problem)

    def mapping(
        self,
        value: Any,
        name: str,
        keys: set[str],
        optional: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{name} must be an object")
        missing, extra = keys - set(value), set(value) - keys - set(optional)
        if missing:
            raise self.fail(f"{name} is missing fields {sorted(missing)}")
        if extra:
            raise self.fail(f"{name} has unsupported fields {sorted(extra)}")
        return value

    def integer(self, value: Any, name: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{name} must be an integer >= {minimum}")
        return int(value)

    def number(self, value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{name} must be a number")
        if not math.isfinite(float(value)) or not np.isfinite(np.float32(value)):
            raise self.fail(f"{name} must be a finite float32 number")
        return float(value)

    def cdfs(self, value: Any, name: str, classes: int) -> list[F32Array]:
        if not isinstance(value, list) or len(value) != classes:
            raise self.fail(f"{name} must hold {classes} class arrays")
        result = []
        for c, cdf in enumerate(value):
            if not isinstance(cdf, list):
                raise self.fail(f"{name}[{c}] must be an array")
            array = np.asarray([self.number(x, f"{name}[{c}]") for x in cdf], dtype=np.float32)
            if array.size and (np.any(array < 0) or np.any(np.diff(array) < 0)):
                raise self.fail(f"{name}[{c}] must be non-negative and sorted ascending")
            result.append(array)
        return result


def _configuration(check: _Checker, manifest: dict[str, Any]) -> ModelConfiguration:
    raw = check.mapping(manifest["configuration"], "configuration", _CONFIGURATION_KEYS)
    classes = check.integer(raw["numberOfClasses"], "configuration.numberOfClasses", 2)
    names = raw["classNames"]
    if not isinstance(names, list) or len(names) != classes or len(set(names)) != classes:
        raise check.fail("configuration.classNames must hold one unique name per class")
    if raw["distanceMetric"] != "squaredL2":
        raise check.fail("configuration.distanceMetric must be 'squaredL2'")
    if raw["neighborTieBreak"] != "supportIndexAscending":
        raise check.fail("configuration.neighborTieBreak must be 'supportIndexAscending'")
    q_offset = check.number(raw["qOffset"], "configuration.qOffset")
    if q_offset <= 1.0:
        raise check.fail("configuration.qOffset must be greater than one")
    resolution = check.number(raw["alphaResolution"], "configuration.alphaResolution")
    try:
        ladder_alphas(resolution)
    except SDMConfigurationError as error:
        raise check.fail(f"configuration.alphaResolution: {error}") from error
    return ModelConfiguration(
        number_of_classes=classes,
        class_names=tuple(str(n) for n in names),
        embedding_dimension=check.integer(raw["embeddingDimension"], "embeddingDimension", 1),
        exemplar_dimension=check.integer(raw["exemplarDimension"], "exemplarDimension", 1),
        max_neighbors=check.integer(raw["maxNeighbors"], "configuration.maxNeighbors", 1),
        q_offset=q_offset,
        ood_limit=check.integer(raw["oodLimit"], "configuration.oodLimit", 0),
        alpha_resolution=resolution,
    )


def _regions(check: _Checker, value: Any, cfg: ModelConfiguration) -> list[Region]:
    if not isinstance(value, list):
        raise check.fail("regions must be an array")
    ladder = ladder_alphas(cfg.alpha_resolution)
    regions: list[Region] = []
    for i, raw in enumerate(value):
        keys = {"alpha", "minimumRescaledSimilarity", "outputThresholds"}
        item = check.mapping(raw, f"regions[{i}]", keys)
        alpha = check.number(item["alpha"], f"regions[{i}].alpha")
        if not any(abs(alpha - a) <= 1e-9 for a in ladder):
            raise check.fail(f"regions[{i}].alpha {alpha} is not on the configured ladder")
        if regions and alpha >= regions[-1].alpha:
            raise check.fail("regions must be sorted by strictly descending alpha")
        thresholds = item["outputThresholds"]
        if not isinstance(thresholds, list) or len(thresholds) != cfg.number_of_classes:
            raise check.fail(f"regions[{i}].outputThresholds must hold one value per class")
        regions.append(
            Region(
                alpha,
                check.number(item["minimumRescaledSimilarity"], f"regions[{i}].minimum"),
                tuple(check.number(t, f"regions[{i}].outputThresholds") for t in thresholds),
            )
        )
    return regions


@dataclass(frozen=True)
class ParsedManifest:
    """Validated manifest fields needed to read the payload files."""

    configuration: ModelConfiguration
    normalization: Normalization
    representation: dict[str, str | None]
    support_count: int
    distance_cdfs: list[F32Array]
    q_prime_cdfs: list[F32Array]
    regions: list[Region]
    checksums: dict[str, str] | None
    metadata: dict[str, Any] | None
    model_id: str
    created_at: str
    producer: dict[str, str]


def parse_manifest(manifest: Any) -> ParsedManifest:
    """Validate a v1 manifest strictly (unknown keys refused) and return its parsed fields."""
    check = _Checker(MANIFEST_FILE)
    top = check.mapping(manifest, "manifest", _TOP_REQUIRED, {"checksums", "metadata"})
    if top["schemaVersion"] != 1 or isinstance(top["schemaVersion"], bool):
        raise check.fail(f"unsupported schemaVersion {top['schemaVersion']!r}; expected 1")
    if not isinstance(top["modelID"], str) or not top["modelID"]:
        raise check.fail("modelID must be a non-empty string")
    cfg = _configuration(check, top)
    norm = check.mapping(top["normalization"], "normalization", {"mean", "standardDeviation"})
    normalization = Normalization(
        check.number(norm["mean"], "normalization.mean"),
        check.number(norm["standardDeviation"], "normalization.standardDeviation"),
    )
    if normalization.standard_deviation <= 0:
        raise check.fail("normalization.standardDeviation must be positive")
    representation = check.mapping(
        top["representation"], "representation", set(REPRESENTATION_KEYS)
    )
    weights = check.mapping(top["weights"], "weights", {"file", "elementCount"})
    expected = AdaptorWeights.element_count(
        cfg.embedding_dimension, cfg.exemplar_dimension, cfg.number_of_classes
    )
    if weights["file"] != WEIGHTS_FILE or weights["elementCount"] != expected:
        raise check.fail(f"weights must name {WEIGHTS_FILE} with elementCount {expected}")
    support = check.mapping(top["support"], "support", {"vectorsFile", "recordsFile", "count"})
    if (support["vectorsFile"], support["recordsFile"]) != (
        SUPPORT_VECTORS_FILE,
        SUPPORT_RECORDS_FILE,
    ):
        raise check.fail("support must name support.f32 and support.jsonl")
    checksums = top.get("checksums")
    if checksums is not None and not isinstance(checksums, dict):
        raise check.fail("checksums must be an object")
    metadata = top.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise check.fail("metadata must be an object")
    classes = cfg.number_of_classes
    return ParsedManifest(
        configuration=cfg,
        normalization=normalization,
        representation=dict(representation),
        support_count=check.integer(support["count"], "support.count", 1),
        distance_cdfs=check.cdfs(top["distanceCDFs"], "distanceCDFs", classes),
        q_prime_cdfs=check.cdfs(top["rescaledSimilarityCDFs"], "rescaledSimilarityCDFs", classes),
        regions=_regions(check, top["regions"], cfg),
        checksums=checksums,
        metadata=metadata,
        model_id=top["modelID"],
        created_at=str(top["createdAt"]),
        producer=dict(top["producer"]) if isinstance(top["producer"], dict) else {},
    )
