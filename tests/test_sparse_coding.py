"""Tests for the exact working-set lasso solver of classicvision.encoding._sparse."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.decomposition import sparse_encode

from classicvision.base import DescriptorSet
from classicvision.encoding import SparseCoding, fista_lasso
from classicvision.encoding._sparse import learn_dictionary, working_set_lasso


def unit_rows(A):
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def problem(n=60, K=48, d=12, seed=0):
    """Unit-norm data and dictionary, plus a row of zeros and a row whose code is zero."""
    rng = np.random.default_rng(seed)
    D = unit_rows(rng.standard_normal((K, d)))
    X = unit_rows(rng.standard_normal((n, d)))
    X[3] = 0.0
    X[7] = 1e-3 * X[7]  # max |<d_j, x>| < lam: the zero code
    return X, D


def objective(X, D, A, lam):
    X, D, A = (np.asarray(a, np.float64) for a in (X, D, A))
    return 0.5 * ((X - A @ D) ** 2).sum(1) + lam * np.abs(A).sum(1)


@pytest.mark.parametrize("lam", [0.02, 0.075, 0.3])
@pytest.mark.parametrize("working_set", [4, 12, 100])
def test_working_set_matches_lars_and_fista(lam, working_set):
    X, D = problem()
    ref = sparse_encode(X, D, algorithm="lasso_lars", alpha=lam)
    got = working_set_lasso(X.astype(np.float32), D.astype(np.float32), lam, working_set=working_set)
    assert got.dtype == np.float32 and got.shape == ref.shape
    f_got, f_ref = objective(X, D, got, lam), objective(X, D, ref, lam)
    assert np.all(f_got <= f_ref * (1 + 1e-4) + 1e-7)
    assert_allclose(got, ref, atol=2e-3)
    assert_array_equal(got[3], 0)
    assert_array_equal(got[7], 0)
    fista = fista_lasso(X.astype(np.float32), D.astype(np.float32), lam, max_iter=3000, tol=1e-8)
    assert_allclose(got, fista, atol=2e-3)


def test_working_set_must_grow():
    # Supports of ~27 atoms on a 4-atom working set: atoms enter from the KKT
    # check and the working sets are widened (4 -> 8 -> 16 -> 32).
    X, D = problem(n=40, K=96, d=32, seed=1)
    lam = 0.03
    ref = sparse_encode(X, D, algorithm="lasso_lars", alpha=lam)
    support = ref != 0
    top4 = np.argsort(-np.abs(X @ D.T), axis=1)[:, :4]
    in_top4 = np.zeros_like(support)
    np.put_along_axis(in_top4, top4, True, 1)
    coded = support.any(1)
    assert coded.sum() >= 38 and (support & ~in_top4)[coded].sum(1).min() > 0  # atoms from outside
    assert support.sum(1).max() > 16  # and more than two widenings' worth of slots
    got = working_set_lasso(X, D, lam, working_set=4)
    assert_allclose(got, ref, atol=2e-3)
    assert np.all(objective(X, D, got, lam) <= objective(X, D, ref, lam) * (1 + 1e-4) + 1e-7)
    # The support is compared where it does not hang on the last bits of one BLAS kernel:
    # every coefficient clearly nonzero in LARS's solution is nonzero here with its sign,
    # and the coefficients LARS leaves at zero are at most rounding-sized here.
    clear = np.abs(ref) > 1e-3
    assert_array_equal(np.sign(got[clear]), np.sign(ref[clear]))
    assert np.abs(got[~support]).max() < 1e-3


def test_working_set_kkt_certificate_and_determinism():
    X, D = problem(n=200, K=96, d=24, seed=2)
    lam, tol = 0.05, 1e-4
    got = working_set_lasso(X, D, lam, working_set=8, batch_size=64, tol=tol)
    grad = (X - got @ D) @ D.T  # <d_j, r>
    nz = got != 0
    assert np.all(np.abs(grad[~nz]) <= lam * (1 + tol) + 1e-6)
    assert np.all(np.abs(grad[nz] - lam * np.sign(got[nz])) <= lam * tol + 1e-6)
    assert_array_equal(working_set_lasso(X, D, lam, working_set=8, batch_size=64, tol=tol), got)


def test_working_set_general_dictionary():
    # atoms of any norm, including a zero atom, and float64 input
    X, D = problem(n=50, K=30, d=10, seed=3)
    D = D * np.linspace(0.5, 2.0, len(D))[:, None]
    D[5] = 0.0
    lam = 0.05
    ref = sparse_encode(X, D, algorithm="lasso_lars", alpha=lam)
    got = working_set_lasso(X, D, lam, working_set=6)
    assert_array_equal(got[:, 5], 0)
    assert np.all(objective(X, D, got, lam) <= objective(X, D, ref, lam) * (1 + 1e-4) + 1e-7)
    assert_allclose(got, ref, atol=2e-3)


def test_working_set_fallback_to_lars():
    # with a single sweep allowed, unfinished rows are handed to LARS
    X, D = problem(n=30, K=40, d=10, seed=4)
    lam = 0.05
    ref = sparse_encode(X, D, algorithm="lasso_lars", alpha=lam)
    got = working_set_lasso(X, D, lam, working_set=6, max_iter=1)
    assert_allclose(got, ref, atol=2e-3)
    assert np.all(objective(X, D, got, lam) <= objective(X, D, ref, lam) * (1 + 1e-4) + 1e-6)


def test_working_set_empty_and_zero_input():
    _, D = problem(K=20, d=8)
    assert working_set_lasso(np.zeros((0, 8)), D, 0.1).shape == (0, 20)
    assert_array_equal(working_set_lasso(np.zeros((5, 8)), D, 0.1), 0)


@pytest.mark.parametrize("algorithm", ["working_set", "fista"])
def test_sparse_coding_algorithms_agree_with_lars(algorithm):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    sets = [DescriptorSet(X[:180], rng.random((180, 2)).astype(np.float32), np.full(180, 8.0)),
            DescriptorSet(X[180:], rng.random((120, 2)).astype(np.float32), np.full(120, 8.0))]
    enc = SparseCoding(n_words=32, dict_max_iter=2, normalize=None, algorithm=algorithm, random_state=0)
    if algorithm == "fista":
        enc.set_params(max_iter=3000, tol=1e-8)
    Z = enc.fit(sets).transform(sets)
    assert SparseCoding().algorithm == "working_set"
    lars = SparseCoding(n_words=32, dict_max_iter=2, normalize=None, algorithm="lasso_lars", random_state=0)
    assert_allclose(Z, lars.fit(sets).transform(sets), atol=2e-3)


def test_learn_dictionary_lowers_the_objective():
    # samples from a sparse model: 3 of 24 unit atoms in 12 dimensions
    rng = np.random.default_rng(7)
    D_true = unit_rows(rng.standard_normal((24, 12)))
    codes = np.zeros((600, 24))
    for row in codes:
        row[rng.choice(24, 3, replace=False)] = rng.standard_normal(3)
    X = unit_rows(codes @ D_true + 0.01 * rng.standard_normal((600, 12)))
    lam = 0.05

    def mean_objective(D):
        return objective(X, D, working_set_lasso(X, D, lam), lam).mean()

    D1 = learn_dictionary(X, 24, lam, n_epochs=1, batch_size=200, random_state=0)
    D3 = learn_dictionary(X, 24, lam, n_epochs=3, batch_size=200, random_state=0)
    assert D3.shape == (24, 12)
    assert_allclose(np.linalg.norm(D3, axis=1), 1, rtol=1e-6)
    assert_array_equal(D1, learn_dictionary(X, 24, lam, n_epochs=1, batch_size=200, random_state=0))
    samples = unit_rows(X[np.random.default_rng(0).choice(len(X), 24, replace=False)])
    f_true, f_samples, f1, f3 = (mean_objective(D) for D in (D_true, samples, D1, D3))
    assert f3 < f1 < f_samples
    assert f3 - f_true < 0.4 * (f_samples - f_true)  # most of the way from random samples to the truth


def test_learn_dictionary_few_and_zero_samples():
    # fewer samples than atoms, and zero samples: every atom still has unit norm
    rng = np.random.default_rng(8)
    X = np.zeros((10, 6))
    X[:6] = unit_rows(rng.standard_normal((6, 6)))
    D = learn_dictionary(X, 16, 0.05, n_epochs=2, random_state=0)
    assert np.all(np.isfinite(D))
    assert_allclose(np.linalg.norm(D, axis=1), 1, rtol=1e-6)
