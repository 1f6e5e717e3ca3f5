"""ChunkedStandardScaler: the same statistics as StandardScaler, in bounded memory."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from classicvision.preprocessing import ChunkedStandardScaler


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_standard_scaler(dtype, weighted):
    rng = np.random.default_rng(0)
    X = rng.normal(3, 2, size=(1001, 7)).astype(dtype)
    X[:, 3] = 5.0  # a constant column keeps scale 1
    sw = rng.uniform(0.5, 2, size=1001) if weighted else None
    ref = StandardScaler().fit(X, sample_weight=sw)
    ours = ChunkedStandardScaler(chunk_size=100).fit(X, sample_weight=sw)
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-7)  # float32 x weight rounding
    np.testing.assert_allclose(ours.var_, ref.var_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.scale_, ref.scale_, rtol=1e-6)
    assert ours.scale_[3] == 1.0 and ours.n_features_in_ == 7
    out = ours.transform(X)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref.transform(X), rtol=1e-5, atol=1e-5)


def test_sparse_and_refit():
    X = sp.random(300, 20, density=0.2, format="csc", random_state=0)
    ref = StandardScaler(with_mean=False).fit(X)
    ours = ChunkedStandardScaler(with_mean=False, chunk_size=64).fit(X)
    np.testing.assert_allclose(ours.var_, ref.var_, rtol=1e-10)
    ours.fit(X[:50].toarray())  # fit starts over, as StandardScaler's does
    assert ours.n_samples_seen_ == 50


@parametrize_with_checks([ChunkedStandardScaler(), ChunkedStandardScaler(chunk_size=3)])
def test_sklearn_contract(estimator, check):
    check(estimator)
