"""Given the same weights and support, our scores equal the reference's (SDM.md §6)."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.verifier.sdm import SDMModel

from .conftest import columns, reference

pytestmark = pytest.mark.conformance


def _compare(ours: Any, theirs: Any) -> None:
    np.testing.assert_array_equal(ours.prediction, columns(theirs, "prediction"))
    np.testing.assert_array_equal(ours.q, columns(theirs, "q"))
    # atol: for exact duplicates both sides get rounding-sized values (~1e-6) or 0.
    np.testing.assert_allclose(ours.d0, columns(theirs, "d0"), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(ours.d, columns(theirs, "d"), atol=1e-6)
    np.testing.assert_allclose(ours.sdm, columns(theirs, "sdm"), atol=1e-5)
    np.testing.assert_allclose(ours.q_prime, columns(theirs, "q_prime"), atol=1e-3)
    np.testing.assert_array_equal(
        ours.effective_sample_sizes, columns(theirs, "effective_sample_sizes")
    )
    np.testing.assert_array_equal(
        ours.centroid_region_alpha, columns(theirs, "centroid_region_alpha")
    )
    np.testing.assert_array_equal(ours.lower_region_alpha, columns(theirs, "lower_region_alpha"))
    np.testing.assert_allclose(ours.d_lower, columns(theirs, "d_lower"), atol=1e-5)
    np.testing.assert_allclose(ours.q_prime_lower, columns(theirs, "q_prime_lower"), atol=1e-3)
    np.testing.assert_array_equal(ours.is_ood, columns(theirs, "is_ood"))


@pytest.mark.parametrize("use_subspace", [True, False])
def test_eval_and_ood_rows_match(
    data: dict[str, Any], reference_model_path: Path, use_subspace: bool
) -> None:
    theirs_model = reference.SDMModel.load(reference_model_path, device="cpu")
    ours_model = SDMModel.load(reference_model_path, device="cpu", use_subspace=use_subspace)
    assert ours_model.uses_subspace == use_subspace  # M = 24 >= 1.5 D: column space applies
    rows = np.concatenate([data["eval"][0], data["ood"]])
    theirs = theirs_model.score(rows, nearest_exemplars=10)
    ours = ours_model.score(rows, nearest_exemplars=10)
    _compare(ours, theirs)
    logits, exemplars = theirs_model.transform(rows)
    our_logits, our_exemplars = ours_model.transform(rows)
    np.testing.assert_allclose(our_logits, logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(our_exemplars, exemplars, atol=1e-5, rtol=1e-5)
    neighbours = np.asarray([[m.support_index for m in s.nearest_support_matches] for s in theirs])
    np.testing.assert_array_equal(ours.nearest_support_indices, neighbours)
    assert (ours.d[-40:] == 0).all()  # far-shifted rows lie beyond the calibration CDFs
    assert ours.is_ood.any() and (ours.is_ood == (ours.q == 0)).all()
    assert (ours.q == 48).any()  # some rows saturate at K
    assert len(ours_model.contents.regions) >= 1


def test_identity_exclusion_with_duplicate_support(
    data: dict[str, Any], reference_model_path: Path
) -> None:
    theirs_model = reference.SDMModel.load(reference_model_path, device="cpu")
    ours_model = SDMModel.load(reference_model_path, device="cpu")
    rows = data["train"][0][185:215]  # includes exact duplicates 190..199 / 200..209
    identities = list(range(185, 215))
    theirs = theirs_model.score(rows, identity_support_indices=identities, nearest_exemplars=3)
    ours = ours_model.score(rows, nearest_exemplars=3, identity_support_indices=np.arange(185, 215))
    _compare(ours, theirs)
    neighbours = np.asarray([[m.support_index for m in s.nearest_support_matches] for s in theirs])
    np.testing.assert_array_equal(ours.nearest_support_indices, neighbours)
    # Each duplicate's twin is its nearest row, at a rounding-sized d₀ (the norm expansion of
    # the dense path, like the reference's, need not give exactly 0).
    twins = np.r_[200:210, 190:200]
    np.testing.assert_array_equal(ours.nearest_support_index[5:25], twins)
    others = np.delete(ours.d0, np.arange(5, 25))
    assert ours.d0[5:25].max() < 1e-3 * others.min()


def test_injected_weights_empty_class_cdf_forces_d_zero(
    data: dict[str, Any], reference_model_path: Path, tmp_path: Path
) -> None:
    base = reference.load_artifact(reference_model_path)
    manifest = dict(base.manifest)
    cfg = manifest["configuration"]
    artifact = reference.build_artifact(
        weights=base.weights, support_vectors=base.support_vectors,
        support_records=list(base.support_records),
        distance_cdfs=[[], manifest["distanceCDFs"][1]],
        rescaled_similarity_cdfs=[np.minimum(c, 8.0) for c in manifest["rescaledSimilarityCDFs"]],
        regions=[r for r in base.regions if r.minimum_rescaled_similarity <= 8.0],
        embedding_dimension=cfg["embeddingDimension"], exemplar_dimension=cfg["exemplarDimension"],
        number_of_classes=2, max_neighbors=8,
        normalization_mean=manifest["normalization"]["mean"],
        normalization_standard_deviation=manifest["normalization"]["standardDeviation"],
    )  # fmt: skip
    path = tmp_path / "injected.sdmkitmodel"
    reference.write_artifact(path, artifact)
    rows = data["eval"][0][:100]
    theirs = reference.SDMModel.load(path, device="cpu").score(rows, nearest_exemplars=0)
    ours = SDMModel.load(path, device="cpu").score(rows)
    _compare(ours, theirs)
    assert (ours.d == 0).all() and (ours.centroid_region_alpha == 0).all()
    assert ours.q.max() == 8  # saturation at the injected K = 8
