"""Tests for classicvision.kernels: additive kernels, kernel maps, kernel and linear SVMs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.kernel_approximation import AdditiveChi2Sampler
from sklearn.metrics.pairwise import additive_chi2_kernel
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from classicvision.kernels import (
    HomogeneousKernelMap,
    KernelSVC,
    LinearSVM,
    PowerNormalizer,
    _svc,
    chi2_kernel,
    clear_kernel_cache,
    hellinger_kernel,
    intersection_kernel,
    kernel_spectrum,
)


# --------------------------------------------------------------------------- helpers
def _histograms(n, d, seed=0, dtype=np.float64, sparsity=0.3):
    rng = np.random.default_rng(seed)
    H = rng.random((n, d))
    H[rng.random((n, d)) < sparsity] = 0.0  # exact zeros, as in real histograms
    H /= np.maximum(H.sum(1, keepdims=True), 1e-12)
    return H.astype(dtype)


def _brute(X, Y, kind):
    x = X.astype(np.float64)[:, None, :]
    y = Y.astype(np.float64)[None, :, :]
    if kind == "intersection":
        return np.minimum(x, y).sum(-1)
    if kind == "chi2":
        s = x + y
        return np.where(s > 0, 2 * x * y / np.where(s > 0, s, 1), 0).sum(-1)
    if kind == "hellinger":
        return np.sqrt(x * y).sum(-1)
    if kind == "jensen_shannon":
        s = x + y
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(x > 0, x / 2 * np.log2(s / np.where(x > 0, x, 1)), 0)
            b = np.where(y > 0, y / 2 * np.log2(s / np.where(y > 0, y, 1)), 0)
        return (a + b).sum(-1)
    raise ValueError(kind)


_FUNCS = {"intersection": intersection_kernel, "chi2": chi2_kernel, "hellinger": hellinger_kernel}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


# --------------------------------------------------------------------------- kernel functions
@pytest.mark.parametrize("kind", list(_FUNCS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_brute_force(kind, dtype):
    X = _histograms(23, 37, seed=1, dtype=dtype)
    Y = _histograms(19, 37, seed=2, dtype=dtype)
    K = _FUNCS[kind](X, Y)
    assert K.shape == (23, 19)
    assert K.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(K, _brute(X, Y, kind), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("kind", ["intersection", "chi2"])
def test_kernel_blocking_and_threads_do_not_change_result(kind):
    X = _histograms(70, 300, seed=3)
    Y = _histograms(150, 300, seed=4)
    ref = _brute(X, Y, kind)
    f = _FUNCS[kind]
    # tiny blocks force tiling over rows of X, rows of Y and features (3 feature blocks)
    np.testing.assert_allclose(f(X[:20], Y[:30], block_elements=100), ref[:20, :30], rtol=1e-12)
    np.testing.assert_allclose(f(X, Y, n_jobs=2), ref, rtol=1e-12)


@pytest.mark.parametrize("kind", list(_FUNCS))
def test_gram_matrix_is_symmetric_psd(kind):
    X = _histograms(30, 12, seed=5)
    K = _FUNCS[kind](X)
    np.testing.assert_allclose(K, K.T, rtol=1e-12)
    assert np.linalg.eigvalsh(K).min() > -1e-10
    # k(x, x) = sum(x) = 1 for all three kernels on L1-normalized histograms
    np.testing.assert_allclose(np.diag(K), 1.0, rtol=1e-12)


def test_chi2_zero_bins_and_relation_to_sklearn():
    X = np.array([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    K = chi2_kernel(X)
    assert np.isfinite(K).all()
    np.testing.assert_allclose(K[0, 1], 2 * 0.5 * 1.0 / 1.5)
    # ours = (sum x + sum y + sklearn's additive_chi2_kernel) / 2
    H = _histograms(10, 8, seed=6)
    G = _histograms(7, 8, seed=7)
    np.testing.assert_allclose(chi2_kernel(H, G), (2 + additive_chi2_kernel(H, G)) / 2, rtol=1e-12)


@pytest.mark.parametrize("kind", list(_FUNCS))
def test_kernel_input_errors(kind):
    f = _FUNCS[kind]
    X = _histograms(4, 5)
    Xn = X.copy()
    Xn[2, 3] = -0.1
    with pytest.raises(ValueError, match="Negative values.*X"):
        f(Xn)
    with pytest.raises(ValueError, match="Negative values.*Y"):
        f(X, Xn)
    with pytest.raises(ValueError, match="Incompatible dimension|features"):
        f(X, _histograms(4, 6))
    Xnan = X.copy()
    Xnan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        f(Xnan)


def test_kernel_bad_options():
    X = _histograms(4, 5)
    with pytest.raises(ValueError, match="block_elements"):
        intersection_kernel(X, block_elements=0)
    with pytest.raises(TypeError, match="n_jobs"):
        chi2_kernel(X, n_jobs="two")


# --------------------------------------------------------------------------- homogeneous kernel map
@pytest.mark.parametrize("kernel", ["chi2", "jensen_shannon"])
@pytest.mark.parametrize("order", [2, 3])
def test_homkermap_approximates_kernel(kernel, order):
    X = _histograms(40, 30, seed=8, sparsity=0.0)
    Y = _histograms(35, 30, seed=9, sparsity=0.0)
    hkm = HomogeneousKernelMap(kernel=kernel, order=order).fit(X)
    A = hkm.transform(X) @ hkm.transform(Y).T
    exact = _brute(X, Y, kernel)
    assert np.max(np.abs(A - exact) / exact) < 0.02


def test_homkermap_intersection_converges_with_order():
    # the intersection signature exp(-|l|/2) has a kink, so it converges slower
    X = _histograms(40, 30, seed=10, sparsity=0.0)
    exact = _brute(X, X, "intersection")
    errs = []
    for order in (1, 3, 10):
        hkm = HomogeneousKernelMap(kernel="intersection", order=order).fit(X)
        P = hkm.transform(X)
        errs.append(np.linalg.norm(P @ P.T - exact) / np.linalg.norm(exact))
    assert errs[0] > errs[1] > errs[2]
    assert errs[1] < 0.03 and errs[2] < 0.012


@pytest.mark.parametrize("order", [0, 1, 2])
def test_homkermap_uniform_equals_sklearn_additive_chi2_sampler(order):
    X = _histograms(12, 9, seed=11)
    interval = 0.4
    ref = AdditiveChi2Sampler(sample_steps=order + 1, sample_interval=interval).fit_transform(X)
    hkm = HomogeneousKernelMap(kernel="chi2", order=order, window="uniform", period=2 * np.pi / interval)
    ours = hkm.fit_transform(X)
    n_out = 2 * order + 1
    # sklearn stacks component-major; we interleave per input feature like VLFeat
    ours_cm = ours.reshape(12, 9, n_out).transpose(0, 2, 1).reshape(12, -1)
    np.testing.assert_allclose(ours_cm, ref, rtol=1e-10, atol=1e-12)


def test_homkermap_shape_dtype_sign_and_zeros():
    X = _histograms(6, 4, seed=12).astype(np.float32)
    X[0, 0] = 0.0
    hkm = HomogeneousKernelMap(kernel="chi2", order=3).fit(X)
    P = hkm.transform(X)
    assert P.shape == (6, 4 * 7) and P.dtype == np.float32
    np.testing.assert_array_equal(P[0, :7], 0.0)
    np.testing.assert_allclose(hkm.transform(-X), -P, rtol=1e-6)
    names = hkm.get_feature_names_out()
    assert names.shape == (28,) and names[0] == "x0_hkm0" and names[-1] == "x3_hkm6"


def test_homkermap_row_blocks_do_not_change_the_map(monkeypatch):
    from classicvision.kernels import _maps

    X = _histograms(50, 9, seed=13).astype(np.float32)
    hkm = HomogeneousKernelMap(kernel="intersection", order=2).fit(X)
    whole = hkm.transform(X)
    monkeypatch.setattr(_maps, "_MAP_BLOCK_ELEMENTS", 20)  # blocks of 2 rows, the last one short
    np.testing.assert_array_equal(hkm.transform(X), whole)


def test_homkermap_vlfeat_default_period_and_spectra():
    hkm = HomogeneousKernelMap(kernel="chi2", order=1).fit(np.ones((1, 2)))
    assert hkm.period_ == pytest.approx(8.80 * np.sqrt(1 + 4.44) - 12.6)
    hkm = HomogeneousKernelMap(kernel="intersection", order=2, window="uniform").fit(np.ones((1, 2)))
    assert hkm.period_ == pytest.approx(2.38 * np.log(2.8) + 5.6)
    # each spectrum integrates to K(0) = 1 (k(x, x) = x for all three kernels)
    w = np.linspace(-200, 200, 400001)
    for kernel in ("intersection", "chi2", "jensen_shannon"):
        assert np.trapezoid(kernel_spectrum(kernel, w), w) == pytest.approx(1.0, abs=2e-3)
    with pytest.raises(ValueError, match="kernel must be"):
        kernel_spectrum("rbf", 0.0)


# --------------------------------------------------------------------------- power normalizer
def test_power_normalizer_values_and_hellinger_map():
    X = np.array([[9.0, -16.0, 0.0], [0.0, 0.0, 0.0]])
    out = PowerNormalizer().fit_transform(X)
    np.testing.assert_allclose(out, [[0.6, -0.8, 0.0], [0.0, 0.0, 0.0]])
    out1 = PowerNormalizer(power=1.0, norm="l1").fit_transform(X)
    np.testing.assert_allclose(out1[0], np.array([9.0, -16.0, 0.0]) / 25)
    H = _histograms(10, 6, seed=13)
    G = _histograms(8, 6, seed=14)
    m = PowerNormalizer(power=0.5, norm=None).fit(H)
    np.testing.assert_allclose(m.transform(H) @ m.transform(G).T, hellinger_kernel(H, G), rtol=1e-12)
    assert PowerNormalizer().fit_transform(H.astype(np.float32)).dtype == np.float32


# --------------------------------------------------------------------------- KernelSVC
def _full_kernel(clf, Xte, Xtr):
    return clf._kernel(np.asarray(Xte, dtype=np.float64), np.asarray(Xtr, dtype=np.float64))


@pytest.mark.parametrize("kernel", ["intersection", "chi2", "hellinger", "rbf", "linear"])
def test_kernel_svc_matches_precomputed_svc(digits, kernel):
    X, y = digits
    Xtr, ytr, Xte = X[:400], y[:400], X[1500:1700]
    clf = KernelSVC(kernel=kernel, C=1.0, cache_kernel=False).fit(Xtr, ytr)
    Kfull = _full_kernel(clf, Xte, Xtr)
    np.testing.assert_allclose(clf.decision_function(Xte), clf.svc_.decision_function(Kfull), atol=1e-8)
    np.testing.assert_array_equal(clf.predict(Xte), clf.svc_.predict(Kfull))
    assert clf.support_vectors_.shape == (len(clf.support_), 64)
    assert len(clf.support_) < 400


def test_kernel_svc_ovo_and_binary(digits):
    X, y = digits
    clf = KernelSVC(decision_function_shape="ovo").fit(X[:300], y[:300])
    K = _full_kernel(clf, X[1500:1600], X[:300])
    dec = clf.decision_function(X[1500:1600])
    assert dec.shape == (100, 45)
    np.testing.assert_allclose(dec, clf.svc_.decision_function(K), atol=1e-8)
    b = np.isin(y, [3, 8])
    Xb, yb = X[b], np.where(y[b] == 3, "three", "eight")
    clf = KernelSVC(kernel="chi2").fit(Xb[:150], yb[:150])
    d = clf.decision_function(Xb[150:])
    assert d.shape == (len(Xb) - 150,)
    np.testing.assert_allclose(d, clf.svc_.decision_function(_full_kernel(clf, Xb[150:], Xb[:150])), atol=1e-8)
    np.testing.assert_array_equal(clf.predict(Xb[150:]), clf.classes_[(d >= 0).astype(int)])
    assert clf.score(Xb[150:], yb[150:]) > 0.95


def test_kernel_svc_one_vs_rest(digits):
    X, y = digits
    clf = KernelSVC(multi_class="ovr", C=10.0, n_jobs=2).fit(X[:300], y[:300])
    Xte = X[1500:1700]
    K = _full_kernel(clf, Xte, X[:300])
    dec = clf.decision_function(Xte)
    assert dec.shape == (200, 10) and clf.dual_coef_.shape == (10, len(clf.support_))
    # one machine per class, on all training samples, scored on the stored support vectors only
    ref = np.stack([m.decision_function(K) for m in clf.svc_.estimators_], axis=1)
    np.testing.assert_allclose(dec, ref, atol=1e-8)
    np.testing.assert_array_equal(clf.predict(Xte), clf.classes_[dec.argmax(1)])
    np.testing.assert_array_equal(clf.predict(Xte), clf.svc_.predict(K))
    assert clf.score(Xte, y[1500:1700]) > 0.8  # 0.85 (one-vs-one: 0.885) on these 300 digits
    assert clf.n_support_.shape == (10,) and clf.intercept_.shape == (10,)
    # two classes: the one machine of either scheme
    b = np.isin(y, [3, 8])
    ovr = KernelSVC(multi_class="ovr").fit(X[b][:150], y[b][:150])
    ovo = KernelSVC().fit(X[b][:150], y[b][:150])
    np.testing.assert_allclose(ovr.decision_function(X[b][150:]), ovo.decision_function(X[b][150:]))
    P = KernelSVC(multi_class="ovr", probability=True).fit(X[:300], y[:300]).predict_proba(Xte)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-10)
    with pytest.raises(ValueError, match="class_weight"):
        KernelSVC(multi_class="ovr", class_weight={0: 2.0}).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="multi_class"):
        KernelSVC(multi_class="crammer").fit(X[:100], y[:100])


def test_kernel_svc_predicts_from_support_vectors_only(digits):
    X, y = digits
    calls = []

    def kernel(A, B):
        calls.append(B.shape[0])
        return intersection_kernel(A, B)

    clf = KernelSVC(kernel=kernel).fit(X[:300], y[:300])
    calls.clear()
    clf.predict(X[300:320])
    assert calls == [len(clf.support_)]
    np.testing.assert_array_equal(clf.predict(X[300:400]), KernelSVC().fit(X[:300], y[:300]).predict(X[300:400]))
    bad = KernelSVC(kernel=lambda A, B: np.ones((2, 2)))
    with pytest.raises(ValueError, match="callable kernel returned shape"):
        bad.fit(X[:30], y[:30])


def test_kernel_svc_cache_reuses_gram(digits, monkeypatch):
    X, y = digits
    clear_kernel_cache()
    a = KernelSVC(C=0.5).fit(X[:200], y[:200])
    assert len(_svc._cache) == 1
    computed = []
    original = intersection_kernel

    def spy(A, B=None, **kw):
        computed.append(A.shape[0])
        return original(A, B, **kw)

    monkeypatch.setitem(_svc._HISTOGRAM_KERNELS, "intersection", spy)
    b = KernelSVC(C=5.0).fit(X[:200], y[:200])  # Gram from the cache
    assert computed == []
    c = KernelSVC(C=5.0, cache_kernel=False).fit(X[:200], y[:200])
    assert computed == [200]
    np.testing.assert_array_equal(b.dual_coef_, c.dual_coef_)
    # C really changed the model (the cache keys on data and kernel, not on C)
    assert len(a.support_) != len(b.support_) or not np.allclose(a.dual_coef_, b.dual_coef_)
    clear_kernel_cache()
    assert len(_svc._cache) == 0


def test_kernel_svc_probability_and_availability(digits):
    X, y = digits
    clf = KernelSVC().fit(X[:200], y[:200])
    assert not hasattr(clf, "predict_proba")
    clf = KernelSVC(probability=True).fit(X[:300], y[:300])
    P = clf.predict_proba(X[1500:1600])
    assert P.shape == (100, 10)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-10)
    assert (clf.classes_[P.argmax(1)] == y[1500:1600]).mean() > 0.85


def test_kernel_svc_errors(digits):
    X, y = digits
    with pytest.raises(ValueError, match="Negative values in data passed to KernelSVC"):
        KernelSVC(kernel="chi2").fit(X[:20] - 0.5, y[:20])
    clf = KernelSVC().fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="Negative values"):
        clf.predict(-X[:3])
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:3, :10])
    KernelSVC(kernel="rbf").fit(X[:50] - 0.5, y[:50])  # signed data is fine for rbf


def test_kernel_svc_in_grid_search_pipeline(digits):
    X, y = digits
    pipe = make_pipeline(PowerNormalizer(power=0.5, norm="l1"), KernelSVC(kernel="intersection"))
    gs = GridSearchCV(pipe, {"kernelsvc__C": [0.1, 10.0]}, cv=3).fit(X[:450], y[:450])
    assert gs.best_score_ > 0.9
    scores = cross_val_score(make_pipeline(HomogeneousKernelMap(kernel="chi2"), LinearSVM(C=1.0)), X[:450], y[:450], cv=3)
    assert scores.mean() > 0.9
    clone_pickled = pickle.loads(pickle.dumps(gs.best_estimator_))
    np.testing.assert_array_equal(clone_pickled.predict(X[1500:]), gs.predict(X[1500:]))


# --------------------------------------------------------------------------- LinearSVM
def _squared_hinge_grad(clf, X, y, C):
    """Gradient of the one-vs-rest objective at the solution, in float64."""
    X = X.astype(np.float64)
    W = clf.coef_.astype(np.float64).T
    b = clf.intercept_.astype(np.float64)
    if W.shape[1] == 1:
        Y = np.where(y == clf.classes_[1], 1.0, -1.0)[:, None]
    else:
        Y = np.where(y[:, None] == clf.classes_[None, :], 1.0, -1.0)
    m = np.maximum(1 - Y * (X @ W + b), 0)
    gW = W - 2 * C * X.T @ (Y * m)
    gb = -2 * C * (Y * m).sum(0)
    g0 = np.sqrt(((2 * C * X.T @ Y) ** 2).sum(0) + (2 * C * Y.sum(0)) ** 2)
    return np.sqrt((gW**2).sum(0) + gb**2) / g0


@pytest.mark.parametrize("solver", ["newton", "liblinear"])
def test_linear_svm_matches_linearsvc_on_digits(digits, solver):
    X, y = digits
    Xtr, ytr, Xte, yte = X[:1200], y[:1200], X[1200:], y[1200:]
    ours = LinearSVM(C=0.1, solver=solver).fit(Xtr, ytr)
    ref = LinearSVC(C=0.1, max_iter=20000).fit(Xtr, ytr)
    assert abs(ours.score(Xte, yte) - ref.score(Xte, yte)) <= 0.01
    assert ours.coef_.shape == (10, 64) and ours.coef_.dtype == np.float32
    assert (_squared_hinge_grad(ours, Xtr, ytr, 0.1) < 5e-3).all()


def test_linear_svm_auto_solver_picks_liblinear_on_small_data(digits):
    X, y = digits
    auto = LinearSVM(C=0.1).fit(X[:500], y[:500])
    assert auto.n_cg_iter_ == 0  # liblinear: no conjugate-gradient steps
    newton = LinearSVM(C=0.1, solver="newton").fit(X[:500], y[:500])
    assert newton.n_cg_iter_ > 0
    # both solve the same problem (liblinear also regularizes the bias): same predictions nearly everywhere
    assert np.mean(auto.predict(X[500:]) == newton.predict(X[500:])) > 0.97


@pytest.mark.parametrize("solver", ["newton", "liblinear"])
def test_linear_svm_synthetic_and_binary(solver):
    X, y = make_classification(n_samples=1500, n_features=200, n_informative=30, n_classes=4,
                               n_clusters_per_class=1, class_sep=0.8, random_state=0)
    ours = LinearSVM(C=0.05, solver=solver).fit(X[:1000], y[:1000])
    ref = LinearSVC(C=0.05, max_iter=20000).fit(X[:1000], y[:1000])
    assert abs(ours.score(X[1000:], y[1000:]) - ref.score(X[1000:], y[1000:])) <= 0.01
    yb = np.where(y > 1, "hi", "lo")
    clf = LinearSVM(C=0.05, solver=solver).fit(X[:1000], yb[:1000])
    d = clf.decision_function(X[1000:])
    assert clf.coef_.shape == (1, 200) and d.shape == (500,)
    np.testing.assert_array_equal(clf.predict(X[1000:]), clf.classes_[(d > 0).astype(int)])
    assert (_squared_hinge_grad(clf, X[:1000], yb[:1000], 0.05) < 5e-3).all()
    bal = LinearSVM(C=0.05, class_weight="balanced", solver=solver).fit(X[:1000], yb[:1000])
    assert not np.allclose(bal.intercept_, clf.intercept_)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_linear_svm_gram_preconditioner_reaches_the_same_solution(fit_intercept):
    X, y = make_classification(n_samples=1200, n_features=60, n_informative=20, n_redundant=30,
                               n_classes=3, class_sep=0.7, random_state=1)
    X = (X - X.mean(0)) / X.std(0)
    kw = dict(C=0.05, solver="newton", fit_intercept=fit_intercept, class_weight="balanced", tol=1e-5)
    jac = LinearSVM(preconditioner="jacobi", **kw).fit(X, y)
    gram = LinearSVM(preconditioner="gram", **kw).fit(X, y)
    assert (jac.preconditioner_, gram.preconditioner_) == ("jacobi", "gram")
    assert LinearSVM(solver="newton", C=0.05).fit(X, y).preconditioner_ == "gram"  # auto: n >= d
    assert LinearSVM(solver="newton", C=0.05).fit(X[:50], y[:50]).preconditioner_ == "nystrom"
    np.testing.assert_allclose(gram.coef_, jac.coef_, rtol=0, atol=2e-3 * np.abs(jac.coef_).max())
    np.testing.assert_allclose(gram.intercept_, jac.intercept_, atol=2e-3)
    # the exact Hessian at w = 0 makes the Gram-preconditioned CG converge in far fewer steps
    assert gram.n_cg_iter_ < jac.n_cg_iter_


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_linear_svm_nystrom_preconditioner_reaches_the_same_solution(fit_intercept):
    # correlated features (20 informative directions mixed into 150): a low-rank
    # preconditioner of rank 30 captures the spectrum that slows Jacobi down
    X, y = make_classification(n_samples=1500, n_features=150, n_informative=20, n_redundant=130,
                               n_classes=3, class_sep=0.7, random_state=2)
    X = X + 0.05 * np.random.default_rng(0).standard_normal(X.shape)
    kw = dict(C=0.05, solver="newton", fit_intercept=fit_intercept, tol=1e-5)
    jac = LinearSVM(preconditioner="jacobi", **kw).fit(X, y)
    nys = LinearSVM(preconditioner="nystrom", nystrom_rank=30, **kw).fit(X, y)
    assert nys.preconditioner_ == "nystrom"
    np.testing.assert_allclose(nys.coef_, jac.coef_, rtol=0, atol=2e-3 * np.abs(jac.coef_).max())
    np.testing.assert_allclose(nys.intercept_, jac.intercept_, atol=2e-3 * max(1, np.abs(jac.intercept_).max()))
    assert nys.n_cg_iter_ < jac.n_cg_iter_ / 2
    # the sketch has a fixed seed: refitting gives the same model
    again = LinearSVM(preconditioner="nystrom", nystrom_rank=30, **kw).fit(X, y)
    np.testing.assert_array_equal(again.coef_, nys.coef_)


def test_linear_svm_verbose_prints_newton_progress(capsys):
    X, y = make_classification(n_samples=400, n_features=30, n_informative=10, n_classes=3,
                               random_state=0)
    clf = LinearSVM(C=0.1, solver="newton", preconditioner="nystrom", nystrom_rank=8, verbose=1).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "LinearSVM: Newton-CG on 400x30 features, 3 one-vs-rest problem(s)"
    assert out[1] == "LinearSVM: building the nystrom preconditioner ..."
    assert out[2].startswith("LinearSVM: nystrom preconditioner of rank 8 built in ")
    iters = [ln for ln in out if ln.startswith("LinearSVM: iteration ")]
    assert len(iters) == clf.n_iter_ + 1 and iters[-1].endswith("converged")
    assert "ETA unknown" in iters[0] and all("ETA " in ln for ln in iters[1:-1])
    LinearSVM(C=0.1, solver="newton").fit(X, y)
    assert capsys.readouterr().out == ""  # quiet by default


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_nystrom_factor_is_exact_at_full_rank_and_on_a_low_rank_gram(fit_intercept):
    import torch

    from classicvision.kernels._linear import _nystrom_factor

    rng = np.random.default_rng(0)
    s = rng.uniform(0.5, 2.0, (300, 1)).astype(np.float32)
    C = 0.01

    def apply(factor, R):
        U, scale, floor = (np.asarray(f, dtype=np.float64) if not isinstance(f, float) else f for f in factor)
        return floor * R + U @ (scale[:, None] * (U.T @ R))

    def hessian(X):
        A = np.hstack([X, np.ones((len(X), 1), np.float32)]) if fit_intercept else X
        return np.eye(A.shape[1]) + 2 * C * (A * s).T.astype(np.float64) @ A

    # rank >= d + 1: the preconditioner is the inverse of the all-active Hessian
    X = rng.standard_normal((300, 25)).astype(np.float32)
    f = _nystrom_factor(torch.from_numpy(X), torch.from_numpy(s), C, fit_intercept, rank=100)
    size = 26 if fit_intercept else 25
    assert f[0].shape == (size, size) and f[1].shape == (size,)
    np.testing.assert_allclose(apply(f, np.eye(size)) @ hessian(X), np.eye(size), atol=2e-4)
    # a Gram matrix of rank 5 (plus the bias): rank 8 recovers it exactly on its range;
    # the complement (eigenvalue 1 of the Hessian) gets the weight 1
    X = (rng.standard_normal((300, 5)) @ rng.standard_normal((5, 40))).astype(np.float32)
    f = _nystrom_factor(torch.from_numpy(X), torch.from_numpy(s), C, fit_intercept, rank=8)
    assert f[2] == pytest.approx(1.0, abs=1e-4)
    size = 41 if fit_intercept else 40
    np.testing.assert_allclose(apply(f, np.eye(size)) @ hessian(X), np.eye(size), atol=2e-3)
    # the Gram matrix of 10 samples has rank <= 10: the sketch is capped there
    f = _nystrom_factor(torch.from_numpy(X[:10]), torch.from_numpy(s[:10]), C, fit_intercept, rank=100)
    assert f[0].shape == (size, 10)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gram_factor_is_the_cholesky_factor_of_the_all_active_hessian(fit_intercept):
    import torch

    from classicvision.kernels._linear import _gram_factor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 25)).astype(np.float32)
    s = rng.uniform(0.5, 2.0, (300, 1)).astype(np.float32)
    L = _gram_factor(torch.from_numpy(X), torch.from_numpy(s), 0.01, fit_intercept).numpy()
    A = np.hstack([X, np.ones((300, 1), np.float32)]) if fit_intercept else X
    H = np.eye(A.shape[1]) + 0.02 * (A * s).T.astype(np.float64) @ A
    if fit_intercept:
        H[-1, -1] = 0.02 * s.sum()  # the bias is not regularized
    assert L.dtype == np.float32 and L.shape == H.shape
    np.testing.assert_array_equal(np.triu(L, 1), 0)
    np.testing.assert_allclose(L.astype(np.float64) @ L.T, H, rtol=1e-5, atol=1e-4)


def test_linear_svm_random_state_makes_liblinear_reproducible():
    # more features than samples: LinearSVC solves the dual, whose coordinate order is random
    X, y = make_classification(n_samples=150, n_features=300, n_informative=20, n_classes=3, random_state=0)
    fits = [LinearSVM(C=1.0, random_state=0).fit(X, y) for _ in range(3)]
    assert all(f.solver_ == "liblinear" for f in fits)
    for f in fits[1:]:
        np.testing.assert_array_equal(f.coef_, fits[0].coef_)
        np.testing.assert_array_equal(f.intercept_, fits[0].intercept_)
    rs = np.random.RandomState(0)
    again = [LinearSVM(C=1.0, random_state=np.random.RandomState(0)).fit(X, y) for _ in range(2)]
    np.testing.assert_array_equal(again[0].coef_, again[1].coef_)
    LinearSVM(random_state=rs).fit(X, y)  # a RandomState instance is accepted
    with pytest.raises(ValueError, match="random_state"):
        LinearSVM(random_state="seed").fit(X, y)


def test_linear_svm_random_state_drives_the_nystrom_sketch(monkeypatch):
    from classicvision.kernels import _linear

    X, y = make_classification(n_samples=400, n_features=30, n_informative=10, n_classes=3, random_state=0)
    kw = dict(C=0.1, solver="newton", preconditioner="nystrom", nystrom_rank=8)
    default = LinearSVM(**kw).fit(X, y)
    # None keeps the historical seed 0 of the sketch: the default Newton fit is unchanged
    np.testing.assert_array_equal(LinearSVM(random_state=0, **kw).fit(X, y).coef_, default.coef_)
    seeded = [LinearSVM(random_state=3, **kw).fit(X, y) for _ in range(2)]
    np.testing.assert_array_equal(seeded[0].coef_, seeded[1].coef_)
    np.testing.assert_allclose(seeded[0].coef_, default.coef_, atol=5e-3 * np.abs(default.coef_).max())
    assert default.solver_ == "newton"
    seeds = []
    original = _linear._nystrom_factor

    def spy(*args, seed=0, **kw):
        seeds.append(seed)
        return original(*args, seed=seed, **kw)

    monkeypatch.setattr(_linear, "_nystrom_factor", spy)
    for rs in (None, 0, 3):
        LinearSVM(random_state=rs, **kw).fit(X, y)
    LinearSVM(random_state=np.random.RandomState(5), **kw).fit(X, y)
    assert seeds[:3] == [0, 0, 3]
    assert seeds[3] == np.random.RandomState(5).randint(np.iinfo(np.int32).max)


def test_linear_svm_publishes_its_solver():
    clf = LinearSVM()
    assert clf.solver_for(10_000) == "liblinear" and clf.solver_for(10_001) == "newton"
    assert clf._solver_for(10_001) == "newton"  # the former private name still works
    assert LinearSVM(solver="newton").solver_for(5) == "newton"
    assert LinearSVM(solver="liblinear").solver_for(10**6) == "liblinear"
    X = np.random.default_rng(0).random((40, 3))
    y = np.arange(40) % 2
    assert LinearSVM().fit(X, y).solver_ == "liblinear"
    assert LinearSVM(solver="newton").fit(X, y).solver_ == "newton"


def test_linear_svm_liblinear_path_does_not_need_torch(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" now raises ImportError
    X = np.random.default_rng(0).random((40, 3))
    y = np.arange(40) % 2
    assert LinearSVM(random_state=0).fit(X, y).solver_ == "liblinear"
    with pytest.raises(ImportError):
        LinearSVM(solver="newton").fit(X, y)


def test_linear_svm_errors():
    X = np.random.default_rng(0).random((10, 3))
    with pytest.raises(ValueError, match="at least 2 classes; got 1 class"):
        LinearSVM().fit(X, np.zeros(10))
    with pytest.raises(ValueError, match="Unknown label type|continuous"):
        LinearSVM().fit(X, np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="invalid device 'warp-drive'"):
        LinearSVM(device="warp-drive", solver="newton").fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="nystrom_rank"):
        LinearSVM(nystrom_rank=0, solver="newton").fit(X, np.arange(10) % 2)


# --------------------------------------------------------------------------- sklearn contract
def _expected_failed_checks(estimator):
    if isinstance(estimator, KernelSVC) and estimator.kernel == "intersection":
        return {
            "check_class_weight_classifiers": (
                "sklearn feeds signed data here despite the positive_only tag; the "
                "intersection kernel rejects negative values by design"
            )
        }
    if isinstance(estimator, KernelSVC) and estimator.multi_class == "ovr":
        return {
            "check_class_weight_classifiers": (
                "one-vs-rest machines take class_weight None or 'balanced' (each balances its own "
                "two classes); a per-class dict is refused with a clear error"
            )
        }
    return {}


@parametrize_with_checks(
    [
        HomogeneousKernelMap(),
        HomogeneousKernelMap(kernel="jensen_shannon", order=2),
        PowerNormalizer(),
        KernelSVC(),
        KernelSVC(kernel="rbf"),
        KernelSVC(kernel="rbf", multi_class="ovr"),
        LinearSVM(),
        LinearSVM(solver="newton"),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_nystroem_map_equals_sklearn_and_is_quiet_on_few_samples():
    import warnings

    from sklearn.kernel_approximation import Nystroem

    from classicvision.kernels import NystroemMap

    X = np.random.default_rng(0).random((50, 6))
    ours = NystroemMap(kernel="rbf", gamma=0.5, n_components=20, random_state=0).fit(X)
    ref = Nystroem(kernel="rbf", gamma=0.5, n_components=20, random_state=0).fit(X)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        few = NystroemMap(kernel="rbf", gamma=0.5, n_components=200, random_state=0).fit(X)
    assert few.components_.shape[0] == 50 and few.n_components == 200
