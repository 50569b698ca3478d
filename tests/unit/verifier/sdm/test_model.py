"""SDMModel facade on a tiny hand-built model."""

import numpy as np
import pytest

from sdm_router.verifier.sdm import DatasetError, SDMModel


def test_score_columns_rows_and_validation(tiny_contents) -> None:
    model = SDMModel(tiny_contents, device="cpu")
    assert model.device == "cpu" and model.embedding_dimension == 3
    assert model.class_names == ("no", "yes") and model.representation["fingerprint"] == "fp-1"
    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    scores = model.score(x, nearest_exemplars=2)
    assert len(scores) == 5 and scores.sdm.shape == (5, 2)
    np.testing.assert_allclose(scores.sdm.sum(axis=1), 1.0, rtol=1e-6)
    assert (scores.q_prime <= scores.q).all() and (scores.is_ood == (scores.q == 0)).all()
    assert (scores.lower_region_alpha <= scores.centroid_region_alpha).all()
    row = scores.row(0)
    assert row.nearest_exemplars[0].id == row.nearest_support_id
    assert row.to_dict()["qPrime"] == pytest.approx(float(scores.q_prime[0]))
    single = model.score(x[3:4])
    assert single.q[0] == scores.q[3] and single.prediction[0] == scores.prediction[3]
    assert len(model.score(np.empty((0, 3), np.float32))) == 0
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(DatasetError, match="row 2: contains a NaN"):
        model.score(bad)
    with pytest.raises(DatasetError, match="one support index"):
        model.score(x[:2], identity_support_indices=np.array([0, 6]))
    with pytest.raises(DatasetError, match=r"expected shape \[n, 3\]"):
        model.score(np.ones((1, 4), np.float32))
