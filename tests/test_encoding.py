"""Tests for classicvision.encoding: values against brute-force references and the sklearn contract."""

import pickle

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, sparse_encode
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from classicvision import pooling
from classicvision.base import DescriptorSet
from classicvision.encoding import (
    LLC,
    VLAD,
    BagOfWords,
    DescriptorPCA,
    FisherVector,
    ImageEncoder,
    KMeansTriangle,
    SoftAssignment,
    SoftThreshold,
    SparseCoding,
    SuperVector,
    fista_lasso,
    llc_codes,
    nearest_codeword,
    sample_descriptors,
    squared_distances,
)
from classicvision.encoding import _base as enc_base
from classicvision.pooling import SpatialPyramid

# --------------------------------------------------------------------------- helpers


def make_sets(sizes=(40, 0, 60, 25, 33), d=8, seed=0, n_centers=6):
    """Descriptor sets drawn around a few centres, with random positions."""
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((n_centers, d))
    sets = []
    for n in sizes:
        lab = rng.integers(0, n_centers, n)
        X = (centers[lab] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
        sets.append(DescriptorSet(X, rng.random((n, 2)).astype(np.float32), np.full(n, 8.0)))
    return sets


def brute_cell_masks(positions, pyramid):
    """Boolean mask (n_cells, n) of the descriptors in every cell, one cell at a time."""
    masks = []
    x, y = positions[:, 0], positions[:, 1]
    for rows, cols in pyramid.grids():
        for r in range(rows):
            for c in range(cols):
                cx = np.minimum((x * cols).astype(int), cols - 1)
                cy = np.minimum((y * rows).astype(int), rows - 1)
                masks.append((cx == c) & (cy == r))
    return np.array(masks)


PYR = SpatialPyramid(levels=(1, 2))

ENCODERS = [
    BagOfWords(n_words=6, random_state=0),
    SoftAssignment(n_words=6, knn=3, random_state=0),
    SparseCoding(n_words=6, alpha=0.15, dict_max_iter=2, random_state=0),
    LLC(n_words=6, knn=3, random_state=0),
    FisherVector(n_components=3, max_iter=20, random_state=0),
    VLAD(n_words=4, random_state=0),
    SuperVector(n_words=4, random_state=0),
    KMeansTriangle(n_words=6, whiten=True, random_state=0),
    SoftThreshold(n_words=5, alpha=0.1, random_state=0),
    SoftThreshold(n_words=5, dictionary="patches", split_sign=False, pooling="max", random_state=0),
]
IDS = [type(e).__name__ for e in ENCODERS]


def code_dim(enc, d):
    return {
        "FisherVector": 2 * getattr(enc, "n_components", 0) * d,
        "VLAD": getattr(enc, "n_words", 0) * d,
        "SuperVector": getattr(enc, "n_words", 0) * (d + 1),
        "SoftThreshold": getattr(enc, "n_words", 0) * (2 if getattr(enc, "split_sign", False) else 1),
    }.get(type(enc).__name__, getattr(enc, "n_words", 0))


# ------------------------------------------------------------------ shared contract


@pytest.mark.parametrize("enc", ENCODERS, ids=IDS)
def test_shapes_dtype_empty_rows(enc):
    sets = make_sets()
    enc = clone(enc).set_params(pyramid=PYR)
    Z = enc.fit(sets).transform(sets)
    d = sets[0].n_features
    assert Z.shape == (len(sets), 5 * code_dim(enc, d))
    assert Z.dtype == np.float32
    assert enc.n_features_in_ == d and enc.n_features_out_ == Z.shape[1]
    assert np.all(np.isfinite(Z))
    assert_array_equal(Z[1], 0)  # the empty descriptor set
    assert np.abs(Z[0]).sum() > 0
    names = enc.get_feature_names_out()
    assert len(names) == Z.shape[1] and names[0] == type(enc).__name__.lower() + "0"
    assert enc.__sklearn_tags__().input_tags.two_d_array is False


@pytest.mark.parametrize("enc", ENCODERS, ids=IDS)
def test_contract_clone_pickle_idempotent_reproducible(enc):
    sets = make_sets(seed=1)
    a = clone(enc)
    assert a.get_params() == enc.get_params()
    Za = a.fit(sets).transform(sets)
    assert_array_equal(a.fit(sets).transform(sets), Za)  # fit idempotence
    b = clone(enc).set_params(random_state=0)
    assert_array_equal(b.fit(sets).transform(sets), Za)  # same random_state, same output
    c = pickle.loads(pickle.dumps(a))
    assert_array_equal(c.transform(sets), Za)
    # public parameters untouched by fit
    assert a.get_params() == enc.get_params()


@pytest.mark.parametrize("enc", ENCODERS, ids=IDS)
def test_chunking_and_n_jobs_do_not_change_output(enc, monkeypatch):
    sets = make_sets(sizes=(30, 12, 0, 45, 20, 7), seed=2)
    enc = clone(enc).set_params(pyramid=PYR).fit(sets)
    full = enc.transform(sets)
    one_by_one = np.concatenate([enc.transform([s]) for s in sets])
    assert_allclose(one_by_one, full, rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(enc_base, "_CHUNK_ELEMENTS", 256)  # many tiny chunks
    assert len(enc._chunk_bounds(np.array([len(s) for s in sets]))) > 1
    assert_allclose(enc.transform(sets), full, rtol=1e-4, atol=1e-6)
    with parallel_config(backend="threading"):
        assert_allclose(enc.set_params(n_jobs=2).transform(sets), full, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("enc", ENCODERS, ids=IDS)
def test_input_errors(enc):
    sets = make_sets()
    other = make_sets(d=5)
    enc = clone(enc)
    with pytest.raises(ValueError, match="different dimensions"):
        enc.fit(sets[:2] + other[:1])
    with pytest.raises(TypeError, match="not a DescriptorSet"):
        enc.fit([np.ones((3, 8))])
    with pytest.raises(ValueError, match="empty sequence"):
        enc.fit([])
    with pytest.raises(ValueError, match="all descriptor sets are empty"):
        enc.fit([sets[1]])
    enc.fit(sets)
    with pytest.raises(ValueError, match="fitted on dimension 8"):
        enc.transform(other)
    bad = DescriptorSet(np.full((3, 8), np.nan, np.float32), np.zeros((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        enc.transform([bad])


def test_invalid_parameters():
    sets = make_sets()
    with pytest.raises(ValueError, match="n_words"):
        BagOfWords(n_words=0).fit(sets)
    with pytest.raises(ValueError, match="kmeans"):
        BagOfWords(n_words=3, kmeans="fast").fit(sets)
    with pytest.raises(ValueError, match="pyramid"):
        LLC(n_words=3, pyramid=(1, 2)).fit(sets)
    with pytest.raises(ValueError, match="covariance_type"):
        FisherVector(n_components=2, covariance_type="full").fit(sets)
    with pytest.raises(ValueError, match="cannot fit 500 codewords"):
        BagOfWords(n_words=500).fit(sets)
    with pytest.raises(ValueError, match="must be >= 1"):
        BagOfWords(n_words=3, pyramid=SpatialPyramid(levels=(0,))).fit(sets)


def test_pipeline_gridsearch_and_cross_val():
    rng = np.random.default_rng(0)
    # two classes of images whose descriptors come from different centres
    sets, y = [], []
    centers = rng.standard_normal((4, 6)) * 3
    for i in range(40):
        lab = i % 2
        idx = rng.integers(0, 2, 30) + 2 * lab
        X = (centers[idx] + 0.5 * rng.standard_normal((30, 6))).astype(np.float32)
        sets.append(DescriptorSet(X, rng.random((30, 2)), np.ones(30)))
        y.append(lab)
    y = np.array(y)
    pipe = Pipeline([("enc", BagOfWords(n_words=4, random_state=0)), ("svm", LinearSVC())])
    gs = GridSearchCV(pipe, {"enc__n_words": [4, 8], "enc__pyramid": [None, PYR]}, cv=2)
    gs.fit(sets, y)
    assert gs.best_score_ > 0.9
    assert gs.predict(sets).shape == (40,)
    scores = cross_val_score(Pipeline([("enc", FisherVector(n_components=2, random_state=0)),
                                       ("svm", LinearSVC())]), sets, y, cv=2)
    assert scores.mean() > 0.9


# ---------------------------------------------------------------- sampling / helpers


def test_sample_descriptors_never_stacks_more():
    sets = make_sets(sizes=(100, 0, 50, 70))
    X, P = sample_descriptors(sets, 60, 0)
    assert X.shape == (60, 8) and P.shape == (60, 2) and X.dtype == np.float32
    full = np.concatenate([s.descriptors for s in sets])
    full_p = np.concatenate([s.positions for s in sets])
    # each sampled row is a distinct row of the data, with its own position
    match = (X[:, None, :] == full[None]).all(-1) & (P[:, None, :] == full_p[None]).all(-1)
    assert np.all(match.sum(1) >= 1)
    assert len(np.unique(match.argmax(1))) == 60
    X2, _ = sample_descriptors(sets, 60, 0)
    assert_array_equal(X, X2)
    Xa, _ = sample_descriptors(sets, 1000, 0)
    assert_array_equal(Xa, full)


def test_max_descriptors_limits_the_fit_sample():
    sets = make_sets(sizes=(200, 200))
    a = BagOfWords(n_words=3, max_descriptors=50, random_state=0, kmeans="full").fit(sets)
    X, _ = sample_descriptors(sets, 50, np.random.RandomState(0))
    # same codebook as k-means run directly on that 50-descriptor sample
    b = BagOfWords(n_words=3, random_state=0, kmeans="full").fit(
        [DescriptorSet(X, np.zeros((50, 2)), np.ones(50))]
    )
    assert_allclose(np.sort(a.codebook_, 0), np.sort(b.codebook_, 0), rtol=1e-5)


def test_distances_and_nearest_codeword():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 12)).astype(np.float32)
    C = rng.standard_normal((20, 12)).astype(np.float32)
    ref = ((X[:, None, :].astype(np.float64) - C[None]) ** 2).sum(-1)
    assert_allclose(squared_distances(X, C), ref, rtol=1e-4, atol=1e-4)
    assert_array_equal(nearest_codeword(X, C), ref.argmin(1))


def test_k_smallest_and_sparse_pooling():
    rng = np.random.default_rng(6)
    D = rng.random((50, 30)).astype(np.float32)
    for k in (1, 3, 12):
        D0 = D.copy()
        got = np.sort(enc_base.k_smallest(D, k), 1)
        assert_array_equal(got, np.sort(np.argsort(D, 1)[:, :k], 1))
        assert_array_equal(D, D0)
    # sparse codes pooled == dense codes pooled, including all-negative words
    n, K, k = 40, 10, 3
    index = np.stack([rng.permutation(K)[:k] for _ in range(n)])
    values = rng.standard_normal((n, k)).astype(np.float32)
    values[:4] = -1.0
    index[:4] = [0, 1, 2]  # atom 0 = rows 0..3: words 0..2 always used, negative
    atom = np.sort(np.r_[0, 0, 0, 0, rng.integers(1, 6, n - 4)])
    dense = np.zeros((n, K), np.float32)
    np.put_along_axis(dense, index, values, 1)
    for how in ("sum", "max"):
        ref = pooling.reduce_sorted(dense, atom, 6, how)
        got = pooling.reduce_sparse_codes(values, index, atom, 6, K, how)
        assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    assert_array_equal(pooling.reduce_sparse_codes(values, index, atom, 6, K, "max")[0, :3], -1)


# ---------------------------------------------------------------------- BagOfWords


def test_bag_of_words_known_histograms():
    # three tight clusters; the codebook recovers them, counts are exact
    centers = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    rng = np.random.default_rng(0)
    lab = np.array([0] * 5 + [1] * 3 + [2] * 2)
    X = centers[lab] + 0.01 * rng.standard_normal((10, 2)).astype(np.float32)
    # left half: the five of word 0; right half: the rest
    pos = np.where(lab[:, None] == 0, [0.25, 0.5], [0.75, 0.5]).astype(np.float32)
    s = DescriptorSet(X, pos, np.ones(10))
    enc = BagOfWords(n_words=3, normalize=None, kmeans="full", random_state=0,
                     pyramid=SpatialPyramid(levels=(1, (1, 2))))
    Z = enc.fit([s]).transform([s])[0]
    order = nearest_codeword(centers, enc.codebook_)  # word id of each centre
    global_h = np.zeros(3); global_h[order] = [5, 3, 2]
    left = np.zeros(3); left[order[0]] = 5
    right = np.zeros(3); right[order[1:]] = [3, 2]
    assert_array_equal(Z, np.r_[global_h, left, right])
    assert_array_equal(enc.predict([s])[0], order[lab])
    enc.set_params(normalize="l1", pyramid=SpatialPyramid(levels=(1, (1, 2)), level_weights=[1, 0.5]))
    Z = enc.fit([s]).transform([s])[0]
    ref = np.r_[global_h, 0.5 * left, 0.5 * right]
    assert_allclose(Z, ref / ref.sum(), rtol=1e-6)


# ------------------------------------------------------------------ SoftAssignment


def test_soft_assignment_codes():
    sets = make_sets()
    enc = SoftAssignment(n_words=6, knn=2, sigma=1.5, normalize=None, random_state=0).fit(sets)
    X = sets[0].descriptors
    codes = enc._codes(X.copy())
    assert_allclose(codes.sum(1), 1, rtol=1e-5)
    assert np.all((codes > 0).sum(1) <= 2)
    d2 = ((X[:, None, :].astype(np.float64) - enc.codebook_[None]) ** 2).sum(-1)
    near = np.argsort(d2, 1)[:, :2]
    k = np.take_along_axis(np.exp(-d2 / (2 * 1.5**2)), near, 1)
    ref = np.zeros_like(d2)
    np.put_along_axis(ref, near, k / k.sum(1, keepdims=True), 1)
    assert_allclose(codes, ref, rtol=1e-3, atol=1e-5)
    # sum pooling without normalization: one unit of vote per descriptor
    Z = enc.transform(sets)
    assert_allclose(Z.sum(1), [len(s) for s in sets], rtol=1e-5)
    assert SoftAssignment(n_words=6, random_state=0).fit(sets).sigma_ > 0


# ---------------------------------------------------------------------------- LLC


def test_llc_codes_match_constrained_least_squares():
    rng = np.random.default_rng(4)
    B = rng.standard_normal((15, 6)).astype(np.float32)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    w, idx = llc_codes(X, B, knn=4, beta=1e-4)
    assert_allclose(w.sum(1), 1, rtol=1e-5)
    d2 = ((X[:, None, :] - B[None]) ** 2).sum(-1)
    assert_array_equal(np.sort(idx, 1), np.sort(np.argsort(d2, 1)[:, :4], 1))
    for i in range(5):  # direct per-descriptor solve via the KKT system
        Bk = B[idx[i]].astype(np.float64)
        Z = Bk - X[i]
        C = Z @ Z.T
        C += 1e-4 * np.trace(C) * np.eye(4)
        kkt = np.block([[2 * C, np.ones((4, 1))], [np.ones((1, 4)), np.zeros((1, 1))]])
        sol = np.linalg.solve(kkt, np.r_[np.zeros(4), 1.0])
        assert_allclose(w[i], sol[:4], rtol=1e-3, atol=1e-4)


def test_llc_encoder_uses_only_knn_words_and_max_pools():
    sets = make_sets()
    enc = LLC(n_words=6, knn=2, normalize=None, random_state=0).fit(sets)
    codes = enc._codes(sets[0].descriptors.copy())
    assert np.all((codes != 0).sum(1) <= 2)
    assert_allclose(codes.sum(1), 1, rtol=1e-5)
    assert_allclose(enc.transform(sets[:1])[0], codes.max(0), rtol=1e-6)


# ------------------------------------------------------------------- SparseCoding


def test_fista_matches_lars_lasso():
    rng = np.random.default_rng(5)
    D = rng.standard_normal((20, 10))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = rng.standard_normal((30, 10))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    ref = sparse_encode(X, D, algorithm="lasso_lars", alpha=0.075)
    got = fista_lasso(X.astype(np.float32), D.astype(np.float32), 0.075, max_iter=2000, tol=1e-7)
    assert_allclose(got, ref, atol=2e-3)

    def objective(A):
        return 0.5 * ((X - A @ D) ** 2).sum(1) + 0.075 * np.abs(A).sum(1)

    assert np.all(objective(got) <= objective(ref) + 1e-4)


def test_sparse_coding_encoder():
    sets = make_sets()
    enc = SparseCoding(n_words=6, dict_max_iter=2, normalize=None, max_iter=500, tol=1e-6,
                       random_state=0).fit(sets)
    assert_allclose(np.linalg.norm(enc.codebook_, axis=1), 1, rtol=1e-5)
    Z = enc.transform(sets)
    X = sets[0].descriptors / np.linalg.norm(sets[0].descriptors, axis=1, keepdims=True)
    ref = np.abs(sparse_encode(X.astype(np.float64), enc.codebook_.astype(np.float64),
                               algorithm="lasso_lars", alpha=0.075)).max(0)
    assert_allclose(Z[0], ref, atol=5e-3)
    lars = clone(enc).set_params(algorithm="lasso_lars").fit(sets).transform(sets)
    assert_allclose(lars, Z, atol=5e-3)
    assert np.all(Z >= 0)


# ------------------------------------------------------------------- FisherVector


def test_fisher_one_component_closed_form():
    sets = make_sets(sizes=(50, 30), d=4)
    enc = FisherVector(n_components=1, improved=False, random_state=0).fit(sets)
    X = np.concatenate([s.descriptors for s in sets]).astype(np.float64)
    assert_allclose(enc.means_[0], X.mean(0), rtol=1e-5)
    mu, sig = enc.means_[0], np.sqrt(enc.covariances_[0])
    Z = enc.transform(sets)
    for i, s in enumerate(sets):
        x = s.descriptors.astype(np.float64)
        g_mu = ((x - mu) / sig).mean(0)
        g_sig = (((x - mu) / sig) ** 2 - 1).mean(0) / np.sqrt(2)
        assert_allclose(Z[i], np.r_[g_mu, g_sig], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("improved", [True, False])
@pytest.mark.parametrize("threshold", [0.0, 1e-4])  # dense GEMM path / sparse path
def test_fisher_per_cell_stats_equal_brute_force(improved, threshold):
    sets = make_sets(sizes=(40, 0, 25), d=5)
    pyr = SpatialPyramid(levels=(1, 2), level_weights=[1.0, 0.5])
    enc = FisherVector(n_components=3, improved=improved, pyramid=pyr, posterior_threshold=threshold,
                       random_state=0).fit(sets)
    Z = enc.transform(sets).reshape(len(sets), 5, -1)
    mu, var, w = enc.means_, enc.covariances_, enc.weights_
    for i, s in enumerate(sets):
        x = s.descriptors.astype(np.float64)
        gamma = enc.gmm_.predict_proba(x) if len(x) else np.zeros((0, 3))
        masks = brute_cell_masks(s.positions, pyr)
        for c, m in enumerate(masks):
            if not m.any():
                assert_array_equal(Z[i, c], 0)
                continue
            # per-descriptor 2KD vectors, averaged: the textbook definition
            u = (x[m][:, None, :] - mu) / np.sqrt(var)
            g = gamma[m][:, :, None]
            g_mu = (g * u).mean(0) / np.sqrt(w)[:, None]
            g_sig = (g * (u**2 - 1)).mean(0) / np.sqrt(2 * w)[:, None]
            fv = np.r_[g_mu.ravel(), g_sig.ravel()]
            if improved:
                fv = np.sign(fv) * np.sqrt(np.abs(fv))
                fv /= np.linalg.norm(fv)
            fv *= 1.0 if c == 0 else 0.5
            assert_allclose(Z[i, c], fv, rtol=2e-3, atol=2e-5)


def test_fisher_spatial_and_reference_implementation():
    pytest.importorskip("bench._speed_fisher")
    from bench._speed_fisher import reference_fisher, time_fisher

    sets = make_sets(sizes=(60, 0, 45), d=6)
    enc = FisherVector(n_components=4, random_state=0).fit(sets)
    assert_allclose(enc.transform(sets), reference_fisher(enc, sets), rtol=1e-3, atol=1e-5)
    exact = clone(enc).set_params(posterior_threshold=0.0).fit(sets)
    assert_allclose(exact.transform(sets), reference_fisher(exact, sets), rtol=1e-3, atol=2e-5)
    ours, ref = time_fisher(sets, n_components=2, repeat=1)
    assert ours > 0 and ref > 0
    sp = FisherVector(n_components=4, spatial=True, random_state=0).fit(sets)
    assert sp.means_.shape == (4, 8)
    assert sp.transform(sets).shape == (3, 2 * 4 * 8)
    assert sp.n_features_in_ == 6


# --------------------------------------------------------------------------- VLAD


def test_vlad_matches_brute_force_and_intra_norm():
    sets = make_sets(sizes=(50, 20))
    raw = VLAD(n_words=4, intra_normalize=False, power=None, random_state=0).fit(sets)
    C = raw.codebook_.astype(np.float64)
    for i, s in enumerate(sets):
        x = s.descriptors.astype(np.float64)
        a = ((x[:, None] - C[None]) ** 2).sum(-1).argmin(1)
        V = np.stack([(x[a == k] - C[k]).sum(0) for k in range(4)]).ravel()
        assert_allclose(raw.transform([s])[0], V / np.linalg.norm(V), rtol=1e-4, atol=1e-6)
    intra = clone(raw).set_params(intra_normalize=True).fit(sets)
    blocks = intra.transform(sets).reshape(2, 4, 8)
    norms = np.linalg.norm(blocks, axis=2)
    for row in norms:  # non-empty words share the same norm after intra + global L2
        nz = row[row > 0]
        assert_allclose(nz, 1 / np.sqrt(len(nz)), rtol=1e-5)
    powered = clone(raw).set_params(power=0.5).fit(sets).transform(sets[:1])[0]
    x = raw.transform(sets[:1])[0]
    ref = np.sign(x) * np.sqrt(np.abs(x))
    assert_allclose(powered, ref / np.linalg.norm(ref), rtol=1e-4, atol=1e-6)


# -------------------------------------------------------------------- SuperVector


def test_super_vector_matches_formula():
    sets = make_sets(sizes=(50, 20))
    enc = SuperVector(n_words=4, s=2.0, normalize=None, random_state=0).fit(sets)
    C = enc.codebook_.astype(np.float64)
    for i, s in enumerate(sets):
        x = s.descriptors.astype(np.float64)
        a = ((x[:, None] - C[None]) ** 2).sum(-1).argmin(1)
        N = len(x)
        blocks = []
        for k in range(4):
            p = (a == k).mean()
            if p == 0:
                blocks.append(np.zeros(9))
                continue
            codes = np.zeros((N, 9))
            codes[a == k, 0] = 2.0
            codes[a == k, 1:] = x[a == k] - C[k]
            blocks.append(codes.mean(0) / np.sqrt(p))  # average code weighted by 1/sqrt(p_k)
        assert_allclose(enc.transform([s])[0], np.concatenate(blocks), rtol=1e-4, atol=1e-6)
    l2 = clone(enc).set_params(normalize="l2").fit(sets).transform(sets)
    assert_allclose(np.linalg.norm(l2, axis=1), 1, rtol=1e-5)


# ----------------------------------------------------------------- KMeansTriangle


def test_kmeans_triangle_codes():
    sets = make_sets(sizes=(40, 30))
    enc = KMeansTriangle(n_words=6, random_state=0, pyramid=SpatialPyramid(levels=(2,))).fit(sets)
    assert enc.whitening_matrix_ is None
    Z = enc.transform(sets).reshape(2, 4, 6)
    for i, s in enumerate(sets):
        x = s.descriptors.astype(np.float64)
        z = np.sqrt(((x[:, None] - enc.codebook_[None]) ** 2).sum(-1))
        f = np.maximum(0, z.mean(1, keepdims=True) - z)
        masks = brute_cell_masks(s.positions, SpatialPyramid(levels=(2,)))
        ref = np.stack([f[m].sum(0) for m in masks])
        assert_allclose(Z[i], ref, rtol=1e-3, atol=1e-3)


def test_kmeans_triangle_whitening():
    sets = make_sets(sizes=(300, 300), d=5)
    enc = KMeansTriangle(n_words=4, whiten=True, whiten_eps=0.0, random_state=0).fit(sets)
    X = np.concatenate([s.descriptors for s in sets])
    W = (X - enc.whitening_mean_) @ enc.whitening_matrix_
    assert_allclose(np.cov(W, rowvar=False), np.eye(5), atol=1e-3)
    assert_allclose(enc.whitening_matrix_, enc.whitening_matrix_.T, atol=1e-5)  # ZCA is symmetric


# ------------------------------------------------------------------ SoftThreshold


@pytest.mark.parametrize("split_sign", [True, False])
def test_soft_threshold_codes(split_sign):
    sets = make_sets(sizes=(40, 30))
    pyr = SpatialPyramid(levels=(2,))
    enc = SoftThreshold(n_words=6, alpha=0.3, split_sign=split_sign, random_state=0, pyramid=pyr).fit(sets)
    D = enc.dictionary_.astype(np.float64)
    assert_allclose(np.linalg.norm(D, axis=1), 1, rtol=1e-5)
    k = 12 if split_sign else 6
    Z = enc.transform(sets).reshape(2, 4, k)
    for i, s in enumerate(sets):
        r = s.descriptors.astype(np.float64) @ D.T
        f = np.maximum(0, r - 0.3)
        if split_sign:
            f = np.concatenate([f, np.maximum(0, -r - 0.3)], axis=1)
        masks = brute_cell_masks(s.positions, pyr)
        assert_allclose(Z[i], np.stack([f[m].sum(0) for m in masks]), rtol=1e-4, atol=1e-4)


def test_soft_threshold_patch_dictionary():
    sets = make_sets(sizes=(40, 30))
    X = np.concatenate([s.descriptors for s in sets])
    X[::2] = 0  # zero rows are never drawn as atoms
    rows = np.cumsum([0] + [len(s) for s in sets])
    sets = [DescriptorSet(X[a:b], s.positions, s.scales) for a, b, s in zip(rows, rows[1:], sets)]
    enc = SoftThreshold(n_words=8, dictionary="patches", random_state=0).fit(sets)
    unit = X[np.einsum("ij,ij->i", X, X) > 0]
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    # every atom is one of the normalized non-zero descriptors
    assert np.all(np.abs(enc.dictionary_ @ unit.T).max(axis=1) > 1 - 1e-5)
    with pytest.raises(ValueError, match="cannot draw 40 atoms from 35"):
        SoftThreshold(n_words=40, dictionary="patches").fit(sets)


# ------------------------------------------------------------------ DescriptorPCA


def test_descriptor_pca():
    sets = make_sets(d=10)
    pca = DescriptorPCA(n_components=3, random_state=0).fit(sets)
    out = pca.transform(sets)
    assert isinstance(out, list) and all(isinstance(s, DescriptorSet) for s in out)
    assert [len(s) for s in out] == [len(s) for s in sets]
    assert out[0].descriptors.shape == (40, 3) and out[0].descriptors.dtype == np.float32
    assert_array_equal(out[2].positions, sets[2].positions)
    X = np.concatenate([s.descriptors for s in sets]).astype(np.float64)
    ref = PCA(n_components=3).fit(X)
    got = np.concatenate([s.descriptors for s in out])
    # components are defined up to sign
    signs = np.sign((got * ref.transform(X)).sum(0))
    assert_allclose(got * signs, ref.transform(X), rtol=1e-3, atol=1e-3)
    white = DescriptorPCA(n_components=3, whiten=True, random_state=0).fit(sets).transform(sets)
    assert_allclose(np.var(np.concatenate([s.descriptors for s in white]), axis=0, ddof=1), 1, rtol=1e-3)
    with pytest.raises(ValueError, match="exceeds the descriptor dimension"):
        DescriptorPCA(n_components=11).fit(sets)
    with pytest.raises(ValueError, match="fitted on dimension 10"):
        pca.transform(make_sets(d=4))
    c = pickle.loads(pickle.dumps(clone(pca).fit(sets)))
    assert_array_equal(c.transform(sets)[0].descriptors, out[0].descriptors)
    assert pca.__sklearn_tags__().input_tags.two_d_array is False


# ------------------------------------------------------------------- ImageEncoder


class GridPatches(TransformerMixin, BaseEstimator):
    """Tiny test extractor: raw ``size x size`` patches on a grid, as DescriptorSets."""

    def __init__(self, *, size=4, step=2):
        self.size = size
        self.step = step

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        out = []
        for i, im in enumerate(X):
            im = np.asarray(im, np.float32) / 255.0
            if im.ndim != 2 or min(im.shape) < self.size:
                raise ValueError(f"image {i} is too small or not grayscale")
            win = np.lib.stride_tricks.sliding_window_view(im, (self.size, self.size))
            win = win[:: self.step, :: self.step]
            rows, cols = win.shape[:2]
            desc = win.reshape(rows * cols, -1)
            yy, xx = np.mgrid[0:rows, 0:cols]
            h, w = im.shape
            pos = np.c_[(xx.ravel() * self.step + self.size / 2) / w, (yy.ravel() * self.step + self.size / 2) / h]
            out.append(DescriptorSet(np.ascontiguousarray(desc), pos, np.full(len(desc), self.size), im.shape))
        return out


def _digits():
    d = load_digits()
    images = np.clip(d.images * 16, 0, 255).astype(np.uint8)
    return images, d.target


def test_image_encoder_digits_gridsearch():
    images, y = _digits()
    Xtr, Xte, ytr, yte = train_test_split(images[:600], y[:600], test_size=0.3, random_state=0)
    enc = ImageEncoder(GridPatches(), BagOfWords(n_words=16, random_state=0),
                       fit_descriptors=3000, chunk_size=50, random_state=0)
    pipe = Pipeline([("features", enc), ("svm", LinearSVC(C=10))])
    gs = GridSearchCV(pipe, {"features__encoder__n_words": [16, 32],
                             "features__encoder__pyramid": [SpatialPyramid(levels=(1, 2))]}, cv=2)
    gs.fit(Xtr, ytr)
    assert gs.best_estimator_.named_steps["features"].encoder_.n_words in (16, 32)
    assert gs.score(Xte, yte) > 0.7  # ten classes: chance is 0.1


def test_image_encoder_behaviour():
    images, y = _digits()
    images = images[:60]
    enc = ImageEncoder(GridPatches(), VLAD(n_words=4, random_state=0), reducer=DescriptorPCA(n_components=6),
                       chunk_size=7, random_state=0)
    assert enc.get_params()["encoder__n_words"] == 4
    assert enc.get_params()["extractor__step"] == 2
    enc.set_params(extractor__step=1, encoder__n_words=5)
    assert enc.extractor.step == 1 and enc.encoder.n_words == 5
    Z = enc.fit_transform(images, y[:60])
    assert Z.shape == (60, 5 * 6) and Z.dtype == np.float32
    assert enc.extractor_ is not enc.extractor and enc.encoder_.n_features_in_ == 6
    assert_allclose(enc.transform(images), Z, rtol=1e-5, atol=1e-6)
    assert_allclose(clone(enc).fit(images).transform(images), Z, rtol=1e-5, atol=1e-6)
    # subsampled fit (fewer images, fewer descriptors) -> fit_transform extracts twice, same as fit+transform
    sub = clone(enc).set_params(fit_images=20, fit_descriptors=500)
    Zs = sub.fit_transform(images)
    assert len(sub.fit_indices_) == 20
    assert_allclose(Zs, sub.transform(images), rtol=1e-5, atol=1e-6)
    assert_allclose(pickle.loads(pickle.dumps(sub)).transform(images[:5]), Zs[:5], rtol=1e-5)
    assert len(enc.get_feature_names_out()) == Z.shape[1]
    assert enc.__sklearn_tags__().input_tags.two_d_array is False


def test_image_encoder_reports_bad_image_index():
    images, _ = _digits()
    enc = ImageEncoder(GridPatches(), BagOfWords(n_words=4, random_state=0), random_state=0).fit(images[:20])
    bad = list(images[:5]) + [np.zeros((0, 8), np.uint8)]
    with pytest.raises(ValueError, match="image 5"):
        enc.transform(bad)
    small = list(images[:5]) + [np.zeros((8, 8), np.uint8), np.zeros((3, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"images 5\.\.6: image 1 is too small"):
        enc.set_params(chunk_size=5).transform(small)
    with pytest.raises(TypeError, match="sequence of images"):
        enc.transform(42)


def test_image_encoder_parallel_and_fit_fraction():
    images, _ = _digits()
    images = images[:40]
    enc = ImageEncoder(GridPatches(), LLC(n_words=6, random_state=0), fit_images=0.5, chunk_size=6,
                       random_state=0)
    Z = enc.fit_transform(images)
    assert len(enc.fit_indices_) == 20 and Z.shape == (40, 6)
    with parallel_config(backend="threading"):
        Zp = clone(enc).set_params(n_jobs=2).fit(images).transform(images)
    assert_allclose(Zp, Z, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fit_images"):
        clone(enc).set_params(fit_images=1.5).fit(images)


@pytest.mark.parametrize("how", ["sum", "max"])
def test_the_encoder_chooses_sum_or_max_once_and_pools_as_the_pyramid(how):
    """The pyramid has no pooling of its own (it used to be silently ignored by max-pooling
    encoders): the encoder's ``pooling`` is the one, run by classicvision.pooling."""
    rng = np.random.default_rng(0)
    sets = [DescriptorSet(rng.random((30, 8), dtype=np.float32), rng.random((30, 2)), np.ones(30))
            for _ in range(4)]
    pyr = SpatialPyramid(levels=(1, 2), level_weights=[1.0, 0.5])
    enc = LLC(n_words=4, pooling=how, pyramid=pyr, random_state=0).fit(sets)
    Z = enc.transform(sets)
    for s, z in zip(sets, Z):
        pooled = pyr.pool(enc._codes(s.descriptors), s.positions, how=how).reshape(1, -1)
        assert_allclose(z, enc_base.normalize_rows(pooled, "l2")[0], rtol=1e-5, atol=1e-6)
