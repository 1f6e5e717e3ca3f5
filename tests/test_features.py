"""Tests of classicvision.features: reference numbers, invariances, sklearn contract."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from skimage import data
from skimage.feature import hog as sk_hog
from skimage.feature import local_binary_pattern
from sklearn.base import clone

from classicvision.base import DescriptorSet
from classicvision.features import (
    HOG,
    LBP,
    ColorSIFT,
    DenseSIFT,
    RawPatches,
    color_sift,
    color_transform,
    dense_sift,
    hog,
    lbp_codes,
    lbp_n_bins,
    raw_patches,
)
from classicvision.features._lbp import SKIMAGE_METHOD

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def camera():
    return data.camera()


@pytest.fixture(scope="module")
def camera_small():
    return cv2.resize(data.camera(), (128, 128), interpolation=cv2.INTER_AREA)


def _gray_images(n=4, shape=(48, 40), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


# ----------------------------------------------------------------------------- HOG
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(orientations=7, pixels_per_cell=(6, 5), cells_per_block=(3, 2), block_norm="L1"),
        dict(orientations=8, block_norm="L1-sqrt"),
        dict(orientations=12, block_norm="L2", transform_sqrt=True),
    ],
)
def test_hog_matches_skimage_gray(camera, kwargs):
    sk_kwargs = {"cells_per_block": (2, 2), **kwargs}
    for image in (camera, RNG.integers(0, 256, (67, 45), dtype=np.uint8), RNG.random((40, 50))):
        ref = sk_hog(image, **sk_kwargs)
        ours = hog(image, **kwargs)
        assert ours.descriptors.dtype == np.float32
        assert_allclose(ours.descriptors.ravel(), ref, rtol=1e-5, atol=1e-6)


def test_hog_matches_skimage_color():
    image = data.astronaut()[::2, ::2]
    ref = sk_hog(image, cells_per_block=(2, 2), channel_axis=-1)
    assert_allclose(hog(image).descriptors.ravel(), ref, rtol=1e-5, atol=1e-6)
    rnd = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    ref = sk_hog(rnd, orientations=8, cells_per_block=(2, 2), channel_axis=-1)
    assert_allclose(hog(rnd, orientations=8).descriptors.ravel(), ref, rtol=1e-5, atol=1e-6)


def test_hog_vector_and_descriptors(camera_small):
    images = [camera_small, camera_small[::-1].copy(), 255 - camera_small]
    vec = HOG(output="vector").fit_transform(images)
    assert vec.shape == (3, 15 * 15 * 36) and vec.dtype == np.float32
    for row, image in zip(vec, images):
        assert_allclose(row, sk_hog(image, cells_per_block=(2, 2)), rtol=1e-5, atol=1e-6)
    sets = HOG().fit_transform(images)
    assert all(isinstance(s, DescriptorSet) for s in sets)
    s = sets[0]
    assert s.descriptors.shape == (225, 36)
    assert_array_equal(s.descriptors.ravel(), vec[0])
    # block centres: first block covers pixels [0, 16) -> centre 8 / 128
    assert_allclose(s.positions[0], [8 / 128, 8 / 128])
    assert_allclose(s.positions[-1], [120 / 128, 120 / 128])
    assert np.all(s.scales == 16)
    assert s.image_shape == (128, 128)


def test_hog_vector_needs_one_size_or_resize():
    images = [np.zeros((32, 32), np.uint8), np.zeros((40, 32), np.uint8)]
    with pytest.raises(ValueError, match="image 1 is 40x32.*resize"):
        HOG(output="vector").fit(images)
    out = HOG(output="vector", resize=(32, 32)).fit_transform(images)
    assert out.shape == (2, 9 * 36)
    est = HOG(output="vector").fit(images[:1])
    with pytest.raises(ValueError, match="fitted on 32x32"):
        est.transform([np.zeros((48, 48), np.uint8)])


def test_hog_too_small_image_is_named():
    images = [np.zeros((32, 32), np.uint8), np.zeros((32, 10), np.uint8)]
    with pytest.raises(ValueError, match="image 1"):
        HOG().fit(images)
    with pytest.raises(ValueError, match="cat.png"):
        HOG().fit(images, filenames=["dog.png", "cat.png"])


def test_hog_bad_params():
    images = _gray_images(1)
    with pytest.raises(ValueError, match="block_norm"):
        HOG(block_norm="L3").fit(images)
    with pytest.raises(ValueError, match="orientations"):
        HOG(orientations=0).fit(images)
    with pytest.raises(ValueError, match="pixels_per_cell"):
        HOG(pixels_per_cell=(8, -1)).fit(images)


def test_hog_n_jobs_same_output():
    images = _gray_images(6)
    a = HOG(output="vector").fit_transform(images)
    b = HOG(output="vector", n_jobs=2).fit_transform(images)
    assert_array_equal(a, b)


# ------------------------------------------------------------------------ DenseSIFT
def _opencv_dense(image, positions, size):
    """OpenCV SIFT.compute on our centres, same support (kp size = 2 bin / 3)."""
    h, w = image.shape[:2]
    b = size // 4
    kps = [
        cv2.KeyPoint(float(x * w - 0.5), float(y * h - 0.5), 2 * b / 3, 0)
        for x, y in positions
    ]
    kps2, ref = cv2.SIFT_create().compute(image, kps)
    assert len(kps2) == len(kps)
    return ref


@pytest.mark.parametrize("fast", [True, False])
def test_dense_sift_correlates_with_opencv(camera_small, fast):
    # magnification 2.5 = bin 4 / 1.6: the same Gaussian pre-smoothing as OpenCV's base image
    s = dense_sift(camera_small, sizes=(16,), step=8, magnification=4 / 1.6, fast=fast,
                   contrast_threshold=0)
    ref = _opencv_dense(camera_small, s.positions, 16)
    corr = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(s.descriptors, ref)])
    h, w = camera_small.shape
    inner = np.all((s.positions * [w, h] > 16) & (s.positions * [w, h] < [w - 16, h - 16]), axis=1)
    assert np.nanmean(corr) > (0.98 if fast else 0.99)
    assert np.nanmedian(corr[inner]) > (0.99 if fast else 0.999)


def test_dense_sift_layout_and_grid():
    image = RNG.integers(0, 256, (64, 48), dtype=np.uint8)
    s = dense_sift(image, sizes=(16,), step=8)
    # first bin centres at 0, 8, ... while the last bin centre (12 further) fits
    ny, nx = len(range(0, 64 - 12, 8)), len(range(0, 48 - 12, 8))
    assert s.descriptors.shape == (ny * nx, 128) and s.descriptors.dtype == np.float32
    assert_allclose(s.positions[0], [(6 + 0.5) / 48, (6 + 0.5) / 64])
    assert_allclose(s.positions[1], [(14 + 0.5) / 48, (6 + 0.5) / 64])
    assert np.all(s.scales == 16) and s.image_shape == (64, 48)
    norms = np.linalg.norm(s.descriptors, axis=1)
    assert_allclose(norms[norms > 0], 1, atol=1e-5)
    # multi-size: union, all sizes centred on the largest size's grid
    m = dense_sift(image, sizes=(8, 16), step=8)
    assert set(np.unique(m.scales)) == {8, 16}
    c8 = m.positions[m.scales == 8]
    c16 = m.positions[m.scales == 16]
    assert_allclose(c8[0], c16[0])
    assert len(c8) >= len(c16)


def test_dense_sift_other_size_correlates_with_opencv(camera_small):
    for size in (8, 24):
        b = size // 4
        s = dense_sift(camera_small, sizes=(size,), step=6, magnification=b / 1.6,
                       contrast_threshold=0, fast=False)
        ref = _opencv_dense(camera_small, s.positions, size)
        corr = np.array([np.corrcoef(a, r)[0, 1] for a, r in zip(s.descriptors, ref)])
        assert np.nanmedian(corr) > 0.99


def test_dense_sift_invariances(camera_small):
    flat = np.full((40, 40), 77, np.uint8)
    assert not dense_sift(flat).descriptors.any()
    img = 0.75 * camera_small.astype(np.float32) / 255  # img + 0.2 stays in [0, 1]
    a = dense_sift(img, contrast_threshold=0).descriptors
    b = dense_sift(0.5 * img, contrast_threshold=0).descriptors
    c = dense_sift(img + 0.2, contrast_threshold=0).descriptors
    assert_allclose(a, b, atol=2e-5)
    assert_allclose(a, c, atol=2e-5)
    # shifting the image by one grid step shifts the grid: interior descriptors equal
    step = 8
    full = dense_sift(camera_small, step=step, contrast_threshold=0)
    shifted = dense_sift(camera_small[step:, step:], step=step, contrast_threshold=0)
    h, w = camera_small.shape
    nx_full = len(np.unique(full.positions[:, 0]))
    nx_sh = len(np.unique(shifted.positions[:, 0]))
    F = full.descriptors.reshape(-1, nx_full, 128)
    S = shifted.descriptors.reshape(-1, nx_sh, 128)
    # shifted[i, j] == full[i + 1, j + 1], away from the borders
    assert_allclose(S[2:-2, 2:-2], F[3:3 + S.shape[0] - 4, 3:3 + S.shape[1] - 4], atol=1e-5)


def test_dense_sift_contrast_threshold_and_rootsift(camera_small):
    img = camera_small.copy()
    img[:, :64] = 100  # flat left half: zero gradient
    s = dense_sift(img, contrast_threshold=0.005)
    left = s.positions[:, 0] * 128 < 64 - 14
    assert not s.descriptors[left].any() and s.descriptors[~left].any()
    faint = camera_small.astype(np.float32) / 255 * 1e-3  # norms of at most ~0.003
    assert not dense_sift(faint, contrast_threshold=0.005).descriptors.any()
    assert_allclose(
        dense_sift(faint, contrast_threshold=0).descriptors,
        dense_sift(camera_small, contrast_threshold=0).descriptors, atol=2e-3,
    )
    r = dense_sift(camera_small, rootsift=True)
    d = dense_sift(camera_small).descriptors
    nz = d.sum(1) > 0
    assert_allclose(r.descriptors[nz] ** 2, d[nz] / d[nz].sum(1, keepdims=True), atol=1e-6)
    assert_allclose(np.linalg.norm(r.descriptors[nz], axis=1), 1, atol=1e-5)


def test_dense_sift_color_max_size_and_errors(camera_small):
    rgb = np.dstack([camera_small] * 3)
    assert_allclose(dense_sift(rgb).descriptors, dense_sift(camera_small).descriptors, atol=1e-5)
    big = cv2.resize(camera_small, (256, 200))
    s = dense_sift(big, max_size=128)
    assert s.image_shape == (100, 128)
    with pytest.raises(ValueError, match="multiple of 4"):
        DenseSIFT(sizes=(10,)).fit([camera_small])
    with pytest.raises(ValueError, match="image 1 .*smaller"):
        DenseSIFT(sizes=(16,)).fit([camera_small, np.zeros((12, 40), np.uint8)])
    with pytest.raises(ValueError, match="max_size"):
        DenseSIFT(sizes=(32,), max_size=16).fit([camera_small])
    with pytest.raises(ValueError, match="step"):
        DenseSIFT(step=0).fit([camera_small])
    with pytest.raises(TypeError, match="sequence of images"):
        DenseSIFT().fit(5)


# ------------------------------------------------------------------------------ LBP
@pytest.mark.parametrize("method", ["uniform", "riu2", "ror", "default"])
@pytest.mark.parametrize("P,R", [(8, 1), (16, 2), (12, 1.5)])
def test_lbp_codes_match_skimage(method, P, R, camera_small):
    flat = np.full((30, 30), 7, np.uint8)
    flat[10:20, 10:20] = 9  # exact ties with the centre: needs skimage's float arithmetic
    images = [camera_small, RNG.integers(0, 256, (37, 29), dtype=np.uint8), flat,
              RNG.integers(0, 3, (25, 25), dtype=np.uint8)]
    for image in images:
        ref = local_binary_pattern(image, P, R, SKIMAGE_METHOD[method])
        assert_array_equal(lbp_codes(image, P, R, method), ref)


def test_lbp_codes_large_P_riu2():
    image = RNG.integers(0, 256, (30, 30), dtype=np.uint8)
    for method in ("uniform", "riu2"):
        assert_array_equal(
            lbp_codes(image, 24, 3, method), local_binary_pattern(image, 24, 3, SKIMAGE_METHOD[method])
        )
    with pytest.raises(ValueError, match="2\\*\\*24"):
        LBP(P=24, R=3, method="default").fit([image])


def _reference_lbp_hist(image, P, R, method, grid):
    codes = local_binary_pattern(image, P, R, SKIMAGE_METHOD[method])
    n_bins = lbp_n_bins(P, method)
    ey = np.round(np.linspace(0, image.shape[0], grid[0] + 1)).astype(int)
    ex = np.round(np.linspace(0, image.shape[1], grid[1] + 1)).astype(int)
    out = []
    for i in range(grid[0]):
        for j in range(grid[1]):
            h, _ = np.histogram(codes[ey[i]:ey[i + 1], ex[j]:ex[j + 1]], bins=n_bins, range=(0, n_bins))
            out.append(h / h.sum())
    return np.concatenate(out)


def test_lbp_vector_matches_skimage_histograms(camera_small):
    images = [camera_small, RNG.integers(0, 256, (50, 37), dtype=np.uint8)]
    for method, grid in [("uniform", (4, 4)), ("riu2", (3, 2))]:
        est = LBP(method=method, grid=grid)
        out = est.fit_transform(images)
        n_bins = lbp_n_bins(8, method)
        assert out.shape == (2, grid[0] * grid[1] * n_bins) and out.dtype == np.float32
        assert est.n_features_out_ == out.shape[1] and est.n_bins_ == n_bins
        for row, image in zip(out, images):
            assert_allclose(row, _reference_lbp_hist(image, 8, 1, method, grid), atol=1e-6)
    assert lbp_n_bins(8, "uniform") == 59 and lbp_n_bins(8, "riu2") == 10
    assert lbp_n_bins(8, "ror") == 36


def test_lbp_descriptors_cells_and_patches(camera_small):
    s = LBP(output="descriptors", grid=(2, 4)).fit_transform([camera_small])[0]
    assert s.descriptors.shape == (8, 59)
    assert_allclose(s.descriptors.sum(1), 1, atol=1e-5)
    assert_allclose(s.positions[0], [16 / 128, 32 / 128])
    # dense overlapping patches equal the histogram of each patch computed directly
    codes = local_binary_pattern(camera_small, 8, 1, "nri_uniform").astype(int)
    d = LBP(output="descriptors", cell_size=16, step=8, normalize=False).fit_transform([camera_small])[0]
    n = (128 - 16) // 8 + 1
    assert d.descriptors.shape == (n * n, 59)
    for k in (0, 5, n + 3, n * n - 1):
        r, c = divmod(k, n)
        patch = codes[r * 8:r * 8 + 16, c * 8:c * 8 + 16]
        assert_array_equal(d.descriptors[k], np.bincount(patch.ravel(), minlength=59))
    assert_allclose(d.positions[0], [8 / 128, 8 / 128])
    assert np.all(d.scales == 16)
    with pytest.raises(ValueError, match="multiple of step"):
        LBP(output="descriptors", cell_size=16, step=5).fit([camera_small])
    with pytest.raises(ValueError, match="output='descriptors'"):
        LBP(cell_size=16).fit([camera_small])
    with pytest.raises(ValueError, match="image 0"):
        LBP(output="descriptors", cell_size=16).fit([np.zeros((10, 40), np.uint8)])


def test_lbp_rgb_and_method_errors(camera_small):
    rgb = np.dstack([camera_small] * 3)
    assert_allclose(LBP().fit_transform([rgb]), LBP().fit_transform([camera_small]))
    with pytest.raises(ValueError, match="method"):
        LBP(method="var").fit([camera_small])
    with pytest.raises(ValueError, match="R"):
        LBP(R=0).fit([camera_small])


# ------------------------------------------------------------------------ ColorSIFT
def test_color_transform_values():
    rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    f = rgb.astype(np.float32) / 255
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    opp = color_transform(rgb, "opponent")
    assert_allclose(opp[0], (r - g) / np.sqrt(2), atol=1e-6)
    assert_allclose(opp[1], (r + g - 2 * b) / np.sqrt(6), atol=1e-6)
    assert_allclose(opp[2], (r + g + b) / np.sqrt(3), atol=1e-6)
    c = color_transform(rgb, "c")
    assert_allclose(c[0], opp[0] / (opp[2] + 0.01), rtol=1e-5, atol=1e-6)
    t = color_transform(rgb, "transformed_rgb")
    assert_allclose(t.reshape(3, -1).mean(1), 0, atol=1e-5)
    assert_allclose(t.reshape(3, -1).std(1), 1, atol=1e-4)
    hsv = color_transform(rgb, "hsv")
    assert hsv.min() >= 0 and hsv.max() <= 1


def test_color_sift_channels_are_dense_sift():
    rgb = cv2.resize(data.astronaut(), (96, 96), interpolation=cv2.INTER_AREA)
    s = color_sift(rgb, color="rgb", contrast_threshold=0)
    assert s.descriptors.shape[1] == 384 and s.descriptors.dtype == np.float32
    for k in range(3):
        ref = dense_sift(rgb[:, :, k], contrast_threshold=0)
        assert_allclose(s.descriptors[:, 128 * k:128 * (k + 1)], ref.descriptors, atol=1e-5)
        assert_allclose(s.positions, ref.positions)
    # opponent O3 is intensity up to scale: same SIFT as the gray image (scale invariant)
    o = color_sift(rgb, color="opponent", contrast_threshold=0).descriptors[:, 256:]
    gray = (rgb.astype(np.float32).sum(2) / (3 * 255))
    assert_allclose(o, dense_sift(gray, contrast_threshold=0).descriptors, atol=1e-4)
    # gray input is replicated: chromatic opponent channels carry no gradient
    g = ColorSIFT().fit_transform([rgb[:, :, 0]])[0].descriptors
    assert not g[:, :256].any() and g[:, 256:].any()
    with pytest.raises(ValueError, match="color"):
        ColorSIFT(color="lab").fit([rgb])


# ----------------------------------------------------------------------- RawPatches
def test_raw_patches_normalization_and_layout():
    img = RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    s = raw_patches(img, patch_size=4, step=2)
    ny, nx = (10 - 4) // 2 + 1, (12 - 4) // 2 + 1
    assert s.descriptors.shape == (ny * nx, 48) and s.descriptors.dtype == np.float32
    p = img[2:6, 4:8].astype(np.float64).reshape(-1)  # (row, col, channel) order
    expected = (p - p.mean()) / np.sqrt(p.var(ddof=1) + 10)
    assert_allclose(s.descriptors[nx + 2], expected, rtol=1e-5, atol=1e-5)
    assert_allclose(s.positions[0], [2 / 12, 2 / 10])
    raw = raw_patches(img, patch_size=4, step=2, normalize=False)
    assert_array_equal(raw.descriptors[nx + 2], p)


def test_raw_patches_zca_whitening():
    images = RNG.integers(0, 256, (12, 20, 20), dtype=np.uint8)
    images = np.stack([cv2.GaussianBlur(im, (5, 5), 1.5) for im in images])  # correlated pixels
    est = RawPatches(patch_size=5, max_fit_patches=10_000, whiten_eps=1e-6, random_state=0)
    out = est.fit_transform(images)
    X = np.concatenate([s.descriptors for s in out]).astype(np.float64)
    assert X.shape[1] == 25 and est.n_channels_ == 1
    assert est.mean_.shape == (25,) and est.whitening_.shape == (25, 25)
    assert_allclose(est.whitening_, est.whitening_.T, atol=1e-5)
    cov = np.cov(X.T)
    big = np.linalg.eigvalsh(cov) > 0.5  # directions with signal come out unit-variance
    assert big.sum() >= 10
    assert_allclose(np.linalg.eigvalsh(cov)[big], 1, atol=0.05)
    # same random_state: same whitening; different: a different sample
    again = clone(est).fit(images)
    assert_array_equal(again.whitening_, est.whitening_)
    other = clone(est).set_params(random_state=1, max_fit_patches=500).fit(images)
    assert not np.array_equal(other.whitening_, est.whitening_)
    # gray / colour conversions to the fitted channel count
    rgb = np.dstack([images[0]] * 3)
    assert_allclose(est.transform([rgb])[0].descriptors, out[0].descriptors, atol=1e-3)


def test_raw_patches_unfitted_and_errors():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        RawPatches().transform([np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="image 1"):
        RawPatches(patch_size=6).fit([np.zeros((8, 8), np.uint8), np.zeros((4, 8), np.uint8)])
    est = RawPatches(whiten=False).fit([np.zeros((8, 8), np.uint8)])
    assert_array_equal(est.whitening_, np.eye(36))


# ------------------------------------------------------------------ sklearn contract
def _digits_images():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * 15.9).astype(np.uint8), d.target


EXTRACTORS = [
    lambda: DenseSIFT(sizes=(8,), step=4),
    lambda: HOG(pixels_per_cell=(4, 4), cells_per_block=(1, 1)),
    lambda: HOG(output="vector", pixels_per_cell=(4, 4)),
    lambda: LBP(grid=(2, 2)),
    lambda: LBP(output="descriptors", cell_size=4, step=2),
    lambda: ColorSIFT(sizes=(8,), step=4),
    lambda: RawPatches(patch_size=3, random_state=0, max_fit_patches=500),
]


def _as_list(out):
    return [s.descriptors for s in out] if isinstance(out, list) else [out]


@pytest.mark.parametrize("make", EXTRACTORS)
def test_extractor_contract(make):
    images, _ = _digits_images()
    images = images[:12]
    est = make()
    tags = est.__sklearn_tags__()
    assert tags.input_tags.two_d_array is False
    params = est.get_params()
    c = clone(est)
    assert c.get_params() == params
    out1 = est.fit(images).transform(images)
    assert est.get_params() == params  # fit does not touch public parameters
    assert est.n_features_out_ == _as_list(out1)[0].shape[-1]
    out2 = est.fit(images).transform(images)  # fit is idempotent
    for a, b in zip(_as_list(out1), _as_list(out2)):
        assert_array_equal(a, b)
    restored = pickle.loads(pickle.dumps(est))
    for a, b in zip(_as_list(out1), _as_list(restored.transform(images))):
        assert_array_equal(a, b)
    for a, b in zip(_as_list(out1), _as_list(clone(est).fit_transform(images))):
        assert_array_equal(a, b)  # same output from a fresh clone (random_state fixed)
    if isinstance(out1, list):
        assert len(out1) == len(images)
        assert all(s.descriptors.dtype == np.float32 for s in out1)
        assert all(((s.positions >= 0) & (s.positions <= 1)).all() for s in out1)
    par = clone(est).set_params(n_jobs=2).fit(images)
    for a, b in zip(_as_list(out1), _as_list(par.transform(images))):
        assert_allclose(a, b, atol=1e-6)


def test_extractors_in_pipeline_grid_search():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import Pipeline

    images, y = _digits_images()
    images, y = images[:300], y[:300]
    pipe = Pipeline([
        ("features", HOG(output="vector", pixels_per_cell=(2, 2), cells_per_block=(2, 2))),
        ("clf", LogisticRegression(max_iter=500)),
    ])
    scores = cross_val_score(pipe, images, y, cv=3)
    assert scores.mean() > 0.6  # chance is 0.1
    pipe = Pipeline([("features", LBP(grid=(2, 2), method="riu2")),
                     ("clf", LogisticRegression(max_iter=500))])
    search = GridSearchCV(pipe, {"features__R": [1, 2]}, cv=2).fit(images, y)
    assert search.best_params_["features__R"] in (1, 2)
    assert search.best_score_ > 0.3


# ----------------------------------------------------------------------- bench speed
def test_bench_speed_smoke(tmp_path):
    import json

    from bench import speed

    out = tmp_path / "speed.json"
    assert speed.main(["--n-images", "2", "--repeat", "1", "--no-cifar", "--size", "64",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("dense_sift_vs_opencv", "hog_vs_skimage", "lbp_vs_skimage", "fisher_vs_sklearn"):
        assert key in result
    for key in ("dense_sift_vs_opencv", "hog_vs_skimage", "lbp_vs_skimage"):
        assert result[key] > 0
    d = result["details"]
    assert d["hog_vs_skimage"]["max_abs_diff"] < 1e-5
    assert d["lbp_vs_skimage"]["max_abs_diff"] < 1e-6
    assert d["dense_sift_vs_opencv"]["mean_correlation"] > 0.6  # different pre-smoothing
    assert d["threads"]["opencv"] == 1


def test_dense_sift_stacked_small_images_equal_one_by_one():
    """Small same-size images are processed stacked; results must not change."""
    from classicvision.features._sift import _dense_sift_set

    cam = data.camera()
    rng = np.random.default_rng(3)
    for shape, kw in [((32, 32), {}), ((40, 36), dict(sizes=(8, 12), step=5, rootsift=True))]:
        images = [cv2.resize(cam[y:y + 100, x:x + 100], shape[::-1]) for y, x in rng.integers(0, 400, (9, 2))]
        images[2] = np.full(shape, 9, np.uint8)
        images.append(cv2.resize(cam, (70, 50)))  # a different shape in the same batch
        est = DenseSIFT(**kw).fit(images)
        for s, image in zip(est.transform(images), images):
            ref = _dense_sift_set(image, est._sizes, est.step, est.contrast_threshold,
                                  est.rootsift, est.magnification, True, None)
            assert_allclose(s.descriptors, ref.descriptors, atol=1e-6)
            assert_array_equal(s.positions, ref.positions)
            assert s.image_shape == ref.image_shape


def test_hog_batches_mixed_shapes_and_colors():
    images = [RNG.integers(0, 256, (40, 48), dtype=np.uint8),
              RNG.integers(0, 256, (32, 32), dtype=np.uint8),
              RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8),
              RNG.integers(0, 256, (40, 48), dtype=np.uint8)]
    sets = HOG(orientations=8).fit_transform(images)
    for s, image in zip(sets, images):
        kw = {"channel_axis": -1} if image.ndim == 3 else {}
        ref = sk_hog(image, orientations=8, cells_per_block=(2, 2), **kw)
        assert_allclose(s.descriptors.ravel(), ref, rtol=1e-5, atol=1e-6)


def test_color_sift_stacked_small_images_equal_one_by_one():
    from classicvision.features._color import _color_sift_set

    ast = data.astronaut()
    rng = np.random.default_rng(4)
    images = [cv2.resize(ast[y:y + 120, x:x + 120], (32, 32)) for y, x in rng.integers(0, 380, (7, 2))]
    images.append(images[0][:, :, 0])  # gray, replicated into 3 channels
    for color in ("opponent", "hsv"):
        est = ColorSIFT(color=color, sizes=(8, 16), step=4).fit(images)
        for s, image in zip(est.transform(images), images):
            ref = _color_sift_set(image, color, est._sizes, est.step, est.contrast_threshold,
                                  est.rootsift, est.magnification, True, None)
            assert s.descriptors.shape == ref.descriptors.shape
            assert_allclose(s.descriptors, ref.descriptors, atol=1e-6)
            assert_array_equal(s.positions, ref.positions)


# ------------------------------------------------------------------ size bound (max_size)
@pytest.mark.parametrize("make", [
    lambda: HOG(output="vector", max_size=100),
    lambda: HOG(output="descriptors", max_size=100),
    lambda: LBP(grid=(3, 3), max_size=100),
    lambda: LBP(output="descriptors", cell_size=16, step=8, max_size=100),
    lambda: RawPatches(patch_size=6, step=4, max_size=100, random_state=0),
])
def test_max_size_extracts_from_the_downscaled_image(make, camera):
    from classicvision.features._common import bounded_shape, resize_max_side

    big = np.ascontiguousarray(camera[:300, :200])  # 300 x 200 -> 100 x 67
    small = resize_max_side(big, 100)
    assert small.shape == bounded_shape(big.shape, 100) == (100, 67)
    bounded = make().fit([big])
    reference = clone(bounded).set_params(max_size=None).fit([small])
    within = make().fit([small])  # an image within the bound is untouched

    def rows(extractor, image):
        out = extractor.transform([image])
        if isinstance(out, np.ndarray):
            return out
        assert tuple(out[0].image_shape) == (100, 67)  # positions refer to the downscaled image
        return np.hstack([out[0].descriptors, out[0].positions])

    ref = rows(reference, small)
    assert_array_equal(rows(bounded, big), ref)
    assert_array_equal(rows(within, small), ref)


def test_max_size_smaller_than_the_support_is_an_error(camera_small):
    with pytest.raises(ValueError, match="HOG max_size=8 is smaller than one HOG block"):
        HOG(max_size=8).fit([camera_small])
    with pytest.raises(ValueError, match="LBP max_size=8 is smaller than cell_size=16"):
        LBP(output="descriptors", cell_size=16, max_size=8).fit([camera_small])
    with pytest.raises(ValueError, match="RawPatches max_size=4 is smaller than patch_size=6"):
        RawPatches(max_size=4).fit([camera_small])


def test_hog_vector_shapes_are_compared_after_max_size():
    a, b = np.zeros((200, 100), np.uint8), np.zeros((100, 50), np.uint8)
    assert HOG(output="vector", max_size=100).fit([a, b]).image_shape_ == (100, 50)
    with pytest.raises(ValueError, match=r"one size \(after max_size=100\).*image 1 is 50x100"):
        HOG(output="vector", max_size=100).fit([a, b.T])


# ------------------------------------------------------------------------ feature names
def test_hog_and_lbp_vector_feature_names(camera_small):
    from sklearn.pipeline import Pipeline

    images = [camera_small, camera_small[::-1]]
    h = HOG(output="vector", pixels_per_cell=(16, 16), cells_per_block=(2, 2), orientations=4).fit(images)
    names = h.get_feature_names_out()
    assert len(names) == h.n_features_out_ == h.transform(images).shape[1]
    nbr, nbc = h.blocks_shape_
    assert names[0] == "hog_block0_0_cell0_0_ori0" and names[3] == "hog_block0_0_cell0_0_ori3"
    assert names[4] == "hog_block0_0_cell0_1_ori0" and names[-1] == f"hog_block{nbr - 1}_{nbc - 1}_cell1_1_ori3"
    assert len(set(names)) == len(names)
    # agrees with skimage's flattened order: the block of names[16 * k] is block k
    assert names[16 * (nbc + 1)] == "hog_block1_1_cell0_0_ori0"
    lb = LBP(grid=(2, 3)).fit(images)
    lnames = lb.get_feature_names_out()
    assert len(lnames) == lb.transform(images).shape[1] == 6 * 59
    assert lnames[0] == "lbp_cell0_0_bin0" and lnames[59] == "lbp_cell0_1_bin0" and lnames[-1] == "lbp_cell1_2_bin58"
    # the sklearn machinery: set_output and a pipeline's names
    pipe = Pipeline([("hog", HOG(output="vector", pixels_per_cell=(16, 16))), ("id", "passthrough")])
    pipe.set_output(transform="default")
    pipe.fit(images)
    assert list(pipe.get_feature_names_out()) == list(pipe.named_steps["hog"].get_feature_names_out())
    with pytest.raises(ValueError, match="no input feature names"):
        h.get_feature_names_out(["a"])
    # descriptor output is no 2-D array: no names, no set_output
    assert not hasattr(HOG(output="descriptors"), "get_feature_names_out")
    assert not hasattr(LBP(output="descriptors", cell_size=8), "set_output")


def test_hog_transform_keeps_the_fitted_geometry(camera_small):
    images = [camera_small, camera_small[::-1]]
    h = HOG(output="vector", pixels_per_cell=(8, 8)).fit(images)
    assert h.cell_size_ == (8, 8) and h.block_size_ == (2, 2) and h.orientations_ == 9
    before = h.transform(images)
    h.set_params(pixels_per_cell=(16, 16), cells_per_block=3, orientations=6)
    after = h.transform(images)
    assert after.shape == before.shape == (2, h.n_features_out_)
    assert_array_equal(after, before)
    refit = h.fit(images)  # a new fit takes the new parameters
    assert refit.cell_size_ == (16, 16) and refit.transform(images).shape[1] < before.shape[1]
    assert HOG(output="vector", pixels_per_cell=(16, 16)).transform(images).shape[1] > 0  # unfitted works


def test_hog_transform_keeps_the_fitted_resize():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 48), dtype=np.uint8), rng.integers(0, 256, (20, 30), dtype=np.uint8)]
    h = HOG(output="vector", resize=(32, 32)).fit(images)
    before = h.transform(images)
    h.set_params(resize=None)
    tiny = [rng.integers(0, 256, (8, 8), dtype=np.uint8)]  # smaller than a block: fine once resized
    assert h.transform(tiny).shape == (1, h.n_features_out_)
    assert_array_equal(h.transform(images), before)
