"""LinearSVM(solver="asgd"), fit_chunked / predict_chunked and to_streaming."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from classicvision.kernels import HomogeneousKernelMap, KernelSVC, LinearSVM, NystroemMap, PowerNormalizer
from classicvision.preprocessing import ChunkedStandardScaler
from classicvision.store import (
    FeatureStore,
    decision_function_chunked,
    fit_chunked,
    predict_chunked,
    to_streaming,
)

# ASGD's test accuracy on the digits is within this of the exact (Newton) solution's
ACCURACY_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(X))
    X, y = X[idx], y[idx]
    return X[:1200], y[:1200], X[1200:], y[1200:]


@pytest.fixture
def store(tmp_path, digits):
    Xtr, _, _, _ = digits
    s = FeatureStore.create(tmp_path / "tr", *Xtr.shape, chunk_rows=256)
    s.write(0, Xtr)
    return s


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge"])
def test_asgd_accuracy_close_to_newton(digits, loss):
    Xtr, ytr, Xte, yte = digits
    exact = LinearSVM(C=0.1, solver="newton").fit(Xtr, ytr).score(Xte, yte)
    asgd = LinearSVM(C=0.1, solver="asgd", loss=loss, n_passes=10, block_rows=256, random_state=0).fit(Xtr, ytr)
    assert asgd.solver_ == "asgd" and asgd.n_iter_ == 10 and len(asgd.pass_seconds_) == 10
    assert asgd.coef_.shape == (10, 64) and asgd.coef_.dtype == np.float32 and asgd.eta0_ > 0
    assert asgd.score(Xte, yte) >= exact - ACCURACY_TOLERANCE


def test_asgd_on_rows_stored_in_class_order(digits, tmp_path):
    # rows, not blocks, are shuffled each pass: a store written class by class still fits
    Xtr, ytr, Xte, yte = digits
    order = np.argsort(ytr, kind="stable")
    s = FeatureStore.create(tmp_path / "sorted", *Xtr.shape, chunk_rows=128)
    s.write(0, Xtr[order])
    exact = LinearSVM(C=0.1, solver="newton").fit(Xtr, ytr).score(Xte, yte)
    asgd = LinearSVM(C=0.1, solver="asgd", loss="hinge", block_rows=128, random_state=0).fit(s, ytr[order])
    assert asgd.score(Xte, yte) >= exact - ACCURACY_TOLERANCE


def test_asgd_binary_and_class_weight(digits):
    Xtr, ytr, Xte, yte = digits
    m = (ytr < 2)
    clf = LinearSVM(solver="asgd", n_passes=3, random_state=0, class_weight="balanced").fit(Xtr[m], ytr[m])
    assert clf.coef_.shape == (1, 64)
    mt = yte < 2
    assert clf.score(Xte[mt], yte[mt]) > 0.95


def test_fit_on_store_equals_fit_on_array(digits, store):
    Xtr, ytr, Xte, _ = digits
    a = LinearSVM(solver="asgd", n_passes=3, block_rows=300, random_state=3).fit(Xtr, ytr)
    b = LinearSVM(solver="asgd", n_passes=3, block_rows=300, random_state=3).fit(store, ytr)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    np.testing.assert_allclose(b.decision_function(store), a.decision_function(Xtr), rtol=1e-12)
    assert b.n_features_in_ == 64


def test_partial_fit(digits):
    Xtr, ytr, Xte, yte = digits
    clf = LinearSVM(solver="asgd", C=0.1, random_state=0)
    with pytest.raises(ValueError, match="needs classes="):
        clf.partial_fit(Xtr[:100], ytr[:100])
    with pytest.raises(ValueError, match="n_samples must be an int"):
        clf.partial_fit(Xtr[:100], ytr[:100], classes=np.arange(10), n_samples=0)
    for _ in range(5):
        for a in range(0, 1200, 400):
            clf.partial_fit(Xtr[a : a + 400], ytr[a : a + 400], classes=np.arange(10), n_samples=1200)
    assert clf.score(Xte, yte) > 0.85
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(Xtr[:2], np.array([0, 11]))
    with pytest.raises(AttributeError, match="partial_fit") as info:
        LinearSVM(solver="newton").partial_fit(Xtr, ytr, classes=np.arange(10), n_samples=1200)
    assert "needs solver='asgd'" in str(info.value.__cause__)
    assert not hasattr(LinearSVM(), "partial_fit")


def test_asgd_errors_and_auto_never_picks_it(digits, store):
    Xtr, ytr, _, _ = digits
    assert LinearSVM().solver_for(10**8) == "newton"
    with pytest.raises(ValueError, match="loss='hinge' needs solver='asgd'"):
        LinearSVM(loss="hinge", solver="newton").fit(Xtr, ytr)
    with pytest.raises(TypeError, match="to_array"):
        LinearSVM(solver="liblinear").fit(store, ytr)
    with pytest.raises(ValueError, match="may not set"):
        LinearSVM(solver="asgd", sgd_params={"alpha": 1.0}).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="does not take"):
        LinearSVM(solver="asgd", sgd_params={"learning_rate": "constant", "bogus": 1}).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearSVM(solver="asgd").fit(Xtr, np.zeros(len(Xtr)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LinearSVM(solver="asgd").fit(store, ytr[:10])
    clf = LinearSVM(solver="asgd", n_passes=1).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="expecting 64 features"):
        clf.decision_function(Xtr[:, :10])


def test_fit_chunked_equals_in_memory_pipeline(digits, store):
    Xtr, ytr, Xte, yte = digits
    svm = dict(solver="asgd", C=0.1, n_passes=4, random_state=0)
    mem = Pipeline([("scale", ChunkedStandardScaler()), ("svm", LinearSVM(**svm, block_rows=256))]).fit(Xtr, ytr)
    pipe = Pipeline([("features", "passthrough"), ("scale", ChunkedStandardScaler()), ("svm", LinearSVM(**svm))])
    fit_chunked(pipe, store, ytr, block_rows=256)
    np.testing.assert_allclose(pipe["scale"].mean_, mem["scale"].mean_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pipe["svm"].coef_, mem["svm"].coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(predict_chunked(pipe, Xte), mem.predict(Xte))
    scores = decision_function_chunked(pipe, store, rows=np.arange(10, 20))
    np.testing.assert_allclose(scores, mem.decision_function(Xtr[10:20]), rtol=1e-4, atol=1e-4)
    # cross-validation style: fit on some rows only (y has a label per row of the store)
    part = fit_chunked(Pipeline([("svm", LinearSVM(**svm))]), store, ytr, rows=np.arange(600), passes=2)
    assert part["svm"].n_iter_ == 2
    assert np.mean(predict_chunked(part, store, rows=np.arange(600, 1200)) == ytr[600:]) > 0.85


def test_fit_chunked_stateless_and_sampled_steps(digits, store):
    Xtr, ytr, Xte, yte = digits
    pipe = Pipeline([("norm", Normalizer()), ("map", NystroemMap(n_components=50, random_state=0)),
                     ("svm", LinearSVM(solver="asgd", n_passes=3, random_state=0))])
    fit_chunked(pipe, store, ytr, sample_rows=300, random_state=0)
    assert pipe["map"].components_.shape == (50, 64)
    assert np.mean(predict_chunked(pipe, Xte) == yte) > 0.8
    with pytest.raises(ValueError, match="cannot be fitted chunk by chunk"):
        fit_chunked(Pipeline([("svm", KernelSVC())]), store, ytr)
    with pytest.raises(ValueError, match="one label per row"):
        fit_chunked(Pipeline([("svm", LinearSVM(solver="asgd"))]), store, ytr[:5])


def test_to_streaming(digits, tmp_path):
    Xtr, ytr, Xte, yte = digits
    Htr, Hte = np.abs(Xtr), np.abs(Xte)  # histogram-like, non-negative
    svc = Pipeline([("features", "passthrough"), ("svm", KernelSVC(kernel="intersection", C=1.0))])
    stream = to_streaming(svc)
    assert [n for n, _ in stream.steps] == ["features", "kernel_map", "svm"]
    assert isinstance(stream["kernel_map"], HomogeneousKernelMap) and stream["kernel_map"].order == 1
    assert stream["svm"].solver == "newton" and stream["svm"].C == 1.0 and stream["svm"].loss == "squared_hinge"
    s = FeatureStore.create(tmp_path / "h", *Htr.shape, chunk_rows=300)
    s.write(0, Htr)
    stream["svm"].set_params(random_state=0)
    fit_chunked(stream, s, ytr)
    # against the exact linear SVM on the same map (the map's own approximation of the
    # kernel, and one-vs-rest instead of libsvm's one-vs-one, are not the out-of-core solver's doing)
    mapped = HomogeneousKernelMap(kernel="intersection", order=1).fit_transform(Htr).astype(np.float32)
    exact = LinearSVM(C=1.0, solver="newton").fit(mapped, ytr)
    exact_acc = exact.score(HomogeneousKernelMap(kernel="intersection", order=1).fit_transform(Hte), yte)
    assert np.mean(predict_chunked(stream, Hte) == yte) >= exact_acc - ACCURACY_TOLERANCE
    assert not hasattr(svc["svm"], "solver")  # the input pipeline is unchanged
    lin = to_streaming(Pipeline([("scale", ChunkedStandardScaler()), ("svm", LinearSVM(C=0.5))]))
    assert lin["svm"].solver == "newton" and lin["svm"].C == 0.5
    # an explicit averaged-SGD solver is kept (a fixed number of passes)
    for solver in ("asgd", "minibatch-asgd"):
        assert to_streaming(Pipeline([("svm", LinearSVM(solver=solver))]))["svm"].solver == solver
    assert to_streaming(Pipeline([("svm", LinearSVM(solver="liblinear"))]))["svm"].solver == "newton"
    hel = to_streaming(Pipeline([("svm", KernelSVC(kernel="hellinger"))]))
    assert isinstance(hel["kernel_map"], PowerNormalizer)
    with pytest.raises(ValueError, match="NystroemMap"):
        to_streaming(Pipeline([("svm", KernelSVC(kernel="rbf"))]))
    with pytest.raises(ValueError, match="no out-of-core version"):
        to_streaming(Pipeline([("svm", Normalizer())]))
    with pytest.raises(TypeError, match="Pipeline"):
        to_streaming(LinearSVM())


# ----------------------------------------------------------------------------- Newton out of core


@pytest.mark.parametrize("preconditioner", ["gram", "nystrom", "jacobi"])
def test_newton_out_of_core_matches_in_memory(digits, store, preconditioner):
    # the same iterations on rows read block by block: the same solution as in memory
    Xtr, ytr, Xte, yte = digits
    # a tight tol: at tol=1e-3 two float32 summation orders stop at points 0.06 apart
    kw = dict(C=0.1, solver="newton", preconditioner=preconditioner, nystrom_rank=32, tol=1e-5)
    mem = LinearSVM(**kw).fit(Xtr, ytr)
    ooc = LinearSVM(**kw, block_rows=100).fit(store, ytr)  # blocks that cut the stored chunks
    assert ooc.solver_ == "newton" and ooc.n_features_in_ == 64 and ooc.coef_.shape == (10, 64)
    # float32 sums in another order: the CG steps may differ by a few, not the solution
    assert abs(ooc.n_iter_ - mem.n_iter_) <= 2
    np.testing.assert_allclose(ooc.coef_, mem.coef_, atol=3e-3 * np.abs(mem.coef_).max())
    np.testing.assert_allclose(ooc.intercept_, mem.intercept_, atol=3e-3 * np.abs(mem.intercept_).max())
    assert np.mean(ooc.predict(Xte) == mem.predict(Xte)) >= 0.995


def test_newton_out_of_core_binary_float16_and_auto(digits, tmp_path):
    Xtr, ytr, Xte, yte = digits
    yb, ybte = (ytr >= 5).astype(int), (yte >= 5).astype(int)
    s = FeatureStore.create(tmp_path / "h", *Xtr.shape, dtype="float16", chunk_rows=500)
    s.write(0, Xtr)
    ooc = LinearSVM(C=0.1, tol=1e-5, block_rows=333).fit(s, yb)  # "auto" on a store: Newton, not liblinear
    assert ooc.solver_ == "newton" and ooc.coef_.shape == (1, 64)
    mem = LinearSVM(C=0.1, tol=1e-5, solver="newton").fit(s.to_array(), yb)
    np.testing.assert_allclose(ooc.coef_, mem.coef_, atol=3e-3 * np.abs(mem.coef_).max())
    assert np.mean(ooc.predict(Xte) == mem.predict(Xte)) >= 0.995
    assert ooc.score(Xte, ybte) > 0.85
    with pytest.raises(ValueError, match="block_rows"):
        LinearSVM(block_rows=0).fit(s, yb)


def test_fit_chunked_with_the_newton_solver(digits, store):
    # a scaler fitted block by block, then the exact solver through the transformed view
    Xtr, ytr, Xte, yte = digits
    pipe = Pipeline([("scale", ChunkedStandardScaler()), ("svm", LinearSVM(C=0.1, solver="newton"))])
    fit_chunked(pipe, store, ytr, block_rows=256, passes=3)  # passes is ASGD's: ignored here
    ref = Pipeline([("scale", StandardScaler()), ("svm", LinearSVM(C=0.1, solver="newton"))]).fit(Xtr, ytr)
    assert pipe["svm"].solver_ == "newton"
    assert np.mean(predict_chunked(pipe, Xte) == ref.predict(Xte)) >= 0.99


# ----------------------------------------------------------------------------- mini-batch ASGD


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge"])
def test_minibatch_asgd_close_to_newton_from_a_store(digits, store, loss):
    Xtr, ytr, Xte, yte = digits
    exact = LinearSVM(C=0.1, solver="newton").fit(Xtr, ytr).score(Xte, yte)
    mb = LinearSVM(C=0.1, solver="minibatch-asgd", loss=loss, n_passes=10, block_rows=300, batch_size=32,
                   random_state=0).fit(store, ytr)
    assert mb.solver_ == "minibatch-asgd" and mb.n_iter_ == 10 and len(mb.pass_seconds_) == 10
    assert mb.coef_.shape == (10, 64) and mb.coef_.dtype == np.float32 and mb.eta0_ > 0
    assert mb.score(Xte, yte) >= exact - ACCURACY_TOLERANCE
    # seeded: the same model again; the same rows from an array give it too
    again = LinearSVM(**mb.get_params()).fit(Xtr, ytr)
    np.testing.assert_allclose(again.coef_, mb.coef_, rtol=1e-5, atol=1e-6)


def test_minibatch_asgd_binary_class_weight_and_objective(digits):
    Xtr, ytr, Xte, yte = digits
    yb = (ytr == 3).astype(int)  # 1 in 10 positive
    kw = dict(C=0.1, solver="minibatch-asgd", n_passes=15, batch_size=16, random_state=0)
    plain = LinearSVM(**kw).fit(Xtr, yb)
    assert plain.coef_.shape == (1, 64) and plain.intercept_.shape == (1,)
    bal = LinearSVM(**kw, class_weight="balanced").fit(Xtr, yb)
    assert bal.predict(Xte).mean() > plain.predict(Xte).mean()  # the rare class gains
    # the averaged iterate approaches the exact squared-hinge objective (~17% above it after
    # 15 passes of 75 steps: small data; 50,000 CIFAR-10 rows give ~200 steps per pass)
    exact = LinearSVM(C=0.1, solver="newton", tol=1e-5).fit(Xtr, yb)

    def objective(m):
        z = Xtr @ m.coef_[0] + m.intercept_[0]
        hinge = np.maximum(0, 1 - (2 * yb - 1) * z)
        return 0.5 * float(m.coef_[0] @ m.coef_[0]) + 0.1 * float((hinge**2).sum())

    assert objective(plain) <= 1.3 * objective(exact)


def test_minibatch_asgd_through_fit_chunked_and_to_streaming(digits, store):
    Xtr, ytr, Xte, yte = digits
    pipe = to_streaming(Pipeline([("scale", ChunkedStandardScaler()),
                                  ("svm", LinearSVM(C=0.1, solver="minibatch-asgd", random_state=0))]))
    assert pipe["svm"].solver == "minibatch-asgd"
    fit_chunked(pipe, store, ytr, block_rows=200, passes=4)
    assert pipe["svm"].n_iter_ == 4 and pipe["svm"].block_rows == 200
    exact = LinearSVM(C=0.1, solver="newton").fit(Xtr, ytr).score(Xte, yte)
    assert np.mean(predict_chunked(pipe, Xte) == yte) >= exact - ACCURACY_TOLERANCE
    assert not hasattr(pipe["svm"], "partial_fit")
