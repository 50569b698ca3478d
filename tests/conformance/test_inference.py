"""Given the same weights and support, our scores equal the reference's (SDM.md §6)."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdm_router.verifier.sdm import SDMModel
from sdm_router.verifier.sdm.distance import distance_quantiles

from .conftest import columns, reference

pytestmark = pytest.mark.conformance


D_DEPENDENT = (
    "sdm", "q_prime", "effective_sample_sizes", "centroid_region_alpha", "lower_region_alpha",
    "d_lower", "q_prime_lower",
)  # fmt: skip


def assert_d_matches(ours: Any, theirs_d: Any, cdfs: list[np.ndarray]) -> None:
    """d equal to the reference's, except on near-tie rows (our float64 rule, ``distance.py``):
    there the two may differ only by the calibration entries within the tie window, 1/n_c each.
    """
    theirs_d = np.asarray(theirs_d, dtype=np.float32)
    settled = np.asarray(ours.d_settled)
    np.testing.assert_allclose(ours.d[~settled], theirs_d[~settled], atol=1e-6)
    for row in np.flatnonzero(settled):
        step = max(1.0 / cdf.size for cdf in cdfs if cdf.size)
        window = sum(int(np.sum(np.isclose(cdf, ours.d0[row], rtol=1e-4))) for cdf in cdfs)
        gap = abs(float(ours.d[row]) - float(theirs_d[row]))
        assert gap <= max(window, 1) * step + 1e-6, (row, ours.d[row], theirs_d[row], window)


def _compare(ours: Any, theirs: Any, cdfs: list[np.ndarray]) -> None:
    np.testing.assert_array_equal(ours.prediction, columns(theirs, "prediction"))
    np.testing.assert_array_equal(ours.q, columns(theirs, "q"))
    # atol: for exact duplicates both sides get rounding-sized values (~1e-6) or 0.
    np.testing.assert_allclose(ours.d0, columns(theirs, "d0"), rtol=1e-4, atol=2e-5)
    assert_d_matches(ours, columns(theirs, "d"), cdfs)
    same = ~np.asarray(ours.d_settled)  # d-dependent columns follow d on settled rows
    exact = {"effective_sample_sizes", "centroid_region_alpha", "lower_region_alpha"}
    tolerances = {"sdm": 1e-5, "q_prime": 1e-3, "d_lower": 1e-5, "q_prime_lower": 1e-3}
    for name in D_DEPENDENT:
        mine, reference_column = getattr(ours, name)[same], columns(theirs, name)[same]
        if name in exact:
            np.testing.assert_array_equal(mine, reference_column, err_msg=name)
        else:
            np.testing.assert_allclose(mine, reference_column, atol=tolerances[name], err_msg=name)
    np.testing.assert_array_equal(ours.is_ood, columns(theirs, "is_ood"))


def test_the_d_comparison_fails_on_a_real_discrepancy(
    data: dict[str, Any], reference_model_path: Path
) -> None:
    """The near-tie allowance is not a blanket one: a d off by one rank elsewhere fails."""
    model = SDMModel.load(reference_model_path, device="cpu")
    ours = model.score(data["eval"][0])
    cdfs = model.contents.distance_cdfs
    assert_d_matches(ours, ours.d, cdfs)  # equal to itself
    assert ours.d_settled is not None
    row = int(np.flatnonzero(~ours.d_settled & (ours.d > 0.1))[0])
    perturbed = ours.d.copy()
    perturbed[row] -= 1.0 / max(cdf.size for cdf in cdfs)  # one calibration rank
    with pytest.raises(AssertionError):
        assert_d_matches(ours, perturbed, cdfs)


def test_near_tie_rows_get_one_d_whatever_path_computed_their_d0(
    data: dict[str, Any], reference_model_path: Path
) -> None:
    """Calibration rows tie with their own CDF entries: the hardest case for a strict ``<``.
    Column-space screening or not, batched or one row at a time (different float32 roundings
    of d₀, as another BLAS kernel would give), d is the same."""
    rows = data["calibration"][0][:120]
    results = []
    for use_subspace in (True, False):
        model = SDMModel.load(reference_model_path, device="cpu", use_subspace=use_subspace)
        results.append(model.score(rows))
        singles = [model.score(rows[i : i + 1]) for i in range(rows.shape[0])]
        results.append(
            type(results[0])(
                **{
                    **vars(results[0]),
                    "d0": np.concatenate([s.d0 for s in singles]),
                    "d": np.concatenate([s.d for s in singles]),
                    "d_settled": np.concatenate([s.d_settled for s in singles]),
                }
            )
        )
    assert all(result.d_settled is not None and result.d_settled.any() for result in results)
    for result in results[1:]:
        np.testing.assert_array_equal(result.d, results[0].d)
    cdfs = SDMModel.load(reference_model_path, device="cpu").contents.distance_cdfs
    strict = [distance_quantiles(result.d0, cdfs) for result in results]
    # the strict rule on the float32 d₀ alone would not agree across these paths
    assert any(not np.array_equal(s, strict[0]) for s in strict[1:])


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
    _compare(ours, theirs, ours_model.contents.distance_cdfs)
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
    _compare(ours, theirs, ours_model.contents.distance_cdfs)
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
    ours_model = SDMModel.load(path, device="cpu")
    ours = ours_model.score(rows)
    _compare(ours, theirs, ours_model.contents.distance_cdfs)
    assert (ours.d == 0).all() and (ours.centroid_region_alpha == 0).all()
    assert ours.q.max() == 8  # saturation at the injected K = 8
