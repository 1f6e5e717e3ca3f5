"""FeatureStore (features on disk) and ImageEncoder.transform_to_store / lazy input."""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest

from classicvision.datasets import load_digits_images
from classicvision.encoding import ImageEncoder
from classicvision.presets import make_preset
from classicvision.store import FeatureStore


def _store(tmp_path, n=10, d=3, **kw):
    return FeatureStore.create(tmp_path / "s", n, d, **kw)


# ----------------------------------------------------------------------------- the store
def test_create_write_read_and_complete(tmp_path):
    X = np.arange(30, dtype=np.float32).reshape(10, 3)
    s = _store(tmp_path, chunk_rows=4)
    assert s.shape == (10, 3) and len(s) == 10 and s.n_chunks == 3 and not s.complete
    assert s.missing_chunks() == [(0, 4), (4, 8), (8, 10)]
    s.write(0, X[:4])
    s.write(4, X[4:])
    assert s.complete and s.missing_chunks() == []
    np.testing.assert_array_equal(s.to_array(), X)
    np.testing.assert_array_equal(s[2:7], X[2:7])
    np.testing.assert_array_equal(s[np.array([9, 0, 5])], X[[9, 0, 5]])
    np.testing.assert_array_equal(s[-1], X[-1])
    np.testing.assert_array_equal(s[X[:, 0] > 10], X[X[:, 0] > 10])
    assert s[0:3].dtype == np.float32
    block = s[0:4]
    block += 1  # a copy: the store is unchanged
    np.testing.assert_array_equal(s[0:4], X[:4])


def test_resume_lists_and_fills_only_missing_chunks(tmp_path):
    X = np.random.RandomState(0).rand(10, 3).astype(np.float32)
    s = _store(tmp_path, chunk_rows=4)
    s.write(0, X[:4])
    s.write(4, X[4:6])  # a chunk cut short: never reported written
    again = FeatureStore.open(tmp_path / "s")
    assert again.missing_chunks() == [(4, 8), (8, 10)]
    with pytest.raises(ValueError, match="not written yet"):
        again[3:6]
    for a, b in again.missing_chunks():
        again.write(a, X[a:b])
    assert again.complete
    np.testing.assert_array_equal(again.to_array(), X)
    # create(exist_ok=True) reopens the same layout, keeping what was written
    same = FeatureStore.create(tmp_path / "s", 10, 3, chunk_rows=4, exist_ok=True)
    assert same.complete


def test_iter_chunks(tmp_path):
    X = np.random.RandomState(1).rand(10, 3).astype(np.float32)
    s = _store(tmp_path, chunk_rows=4)
    s.write(0, X)
    got = list(s.iter_chunks())
    assert [a for a, _ in got] == [0, 4, 8] and [b.shape[0] for _, b in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), X)
    got = list(s.iter_chunks(slice(3, 9), block_rows=5))
    assert [a for a, _ in got] == [0, 5]
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), X[3:9])
    idx = np.array([7, 1, 2])
    np.testing.assert_array_equal(np.concatenate([b for _, b in s.iter_chunks(idx, block_rows=2)]), X[idx])


def test_float16_storage(tmp_path):
    X = (np.random.RandomState(2).rand(8, 5) * 100).astype(np.float32)
    s = _store(tmp_path, n=8, d=5, dtype="float16", chunk_rows=3)
    s.write(0, X)
    assert s.dtype == np.float16
    assert os.path.getsize(tmp_path / "s" / "data.bin") == 8 * 5 * 2
    got = s.to_array()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, X, rtol=2.0**-11)
    with pytest.raises(ValueError, match="float16"):
        s.write(0, np.full((1, 5), 70000.0))


def test_store_is_not_an_implicit_array_and_pickles_as_its_path(tmp_path):
    s = _store(tmp_path)
    s.write(0, np.ones((10, 3)))
    with pytest.raises(TypeError, match="to_array"):
        np.asarray(s)
    t = pickle.loads(pickle.dumps(s))
    assert t.path == s.path and t.complete
    assert len(pickle.dumps(s)) < 500


def test_store_errors(tmp_path):
    s = _store(tmp_path, chunk_rows=4)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        s.write(0, np.ones((2, 4)))
    with pytest.raises(ValueError, match="out of range"):
        s.write(8, np.ones((3, 3)))
    with pytest.raises(ValueError, match="non-finite value in row 5"):
        s.write(4, np.r_[np.ones((1, 3)), [[0, np.nan, 0]]])
    with pytest.raises(FileExistsError):
        FeatureStore.create(tmp_path / "s", 10, 3)
    with pytest.raises(ValueError, match="n_features"):
        FeatureStore.create(tmp_path / "s", 10, 4, chunk_rows=4, exist_ok=True)
    with pytest.raises(ValueError, match="dtype"):
        FeatureStore.create(tmp_path / "t", 10, 3, dtype="float64")
    with pytest.raises(ValueError, match="n_rows"):
        FeatureStore.create(tmp_path / "t", 0, 3)
    with pytest.raises(FileNotFoundError, match="no store"):
        FeatureStore.open(tmp_path / "nothing")
    with open(tmp_path / "s" / "data.bin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="damaged"):
        FeatureStore.open(tmp_path / "s")


# ----------------------------------------------------------------------------- the encoder
class _LazyList:
    """A minimal lazy image sequence (as LazyImages): slicing / fancy indexing stay lazy,
    an int decodes one image, ``np.asarray`` refuses, and it counts decodes."""

    def __init__(self, images, idx=None, counter=None):
        self._images = images
        self._idx = np.arange(len(images)) if idx is None else np.asarray(idx)
        self.counter = [0] if counter is None else counter

    def __len__(self):
        return len(self._idx)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            self.counter[0] += 1
            return self._images[self._idx[key]].copy()
        return _LazyList(self._images, self._idx[key], self.counter)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None):
        raise TypeError("lazy: no implicit array")

    def fingerprint(self):
        return f"lazy-{len(self._images)}-{self._idx.tobytes().hex()[:32]}"


@pytest.fixture(scope="module")
def digits32():
    b = load_digits_images()
    imgs = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_LINEAR) for im in b.images[:64]])
    return imgs, b.target[:64]


@pytest.fixture(scope="module")
def fitted(digits32):
    """The fitted encoder and its transform of the list of images."""
    imgs, y = digits32
    enc = _encoder().fit(list(imgs), y)
    return enc, enc.transform(list(imgs))


def _encoder(**kw):
    """The features step of a preset (lazebnik_spm: dense SIFT + VQ + pyramid), small."""
    enc = make_preset("lazebnik_spm", n_words=8, random_state=0)[0]
    assert isinstance(enc, ImageEncoder)
    return enc.set_params(chunk_size=16, fit_images=40, **kw)


def test_transform_to_store_equals_transform(tmp_path, digits32, fitted):
    imgs, y = digits32
    enc, ref = fitted
    store = enc.transform_to_store(list(imgs), tmp_path / "f")
    assert store.complete and store.shape == ref.shape and store.chunk_rows == 16
    np.testing.assert_array_equal(store.to_array(), ref)
    par = clone_fitted(enc, n_jobs=2).transform_to_store(list(imgs), tmp_path / "f2", chunk_rows=32)
    np.testing.assert_array_equal(par.to_array(), ref)


def clone_fitted(enc, **params):
    """A copy of a fitted encoder with other (non-fit) parameters."""
    return pickle.loads(pickle.dumps(enc)).set_params(**params)


def test_transform_to_store_resumes_only_missing_chunks(tmp_path, digits32, fitted):
    imgs, y = digits32
    enc, ref = fitted
    path = tmp_path / "f"
    store = enc.transform_to_store(list(imgs), path)
    # a run killed while writing chunk 2: its rows are garbage and it is not marked
    os.remove(path / "written" / "000000002")
    mm = np.memmap(path / "data.bin", dtype=np.float32, mode="r+", shape=store.shape)
    mm[32:48] = -1
    mm[0:16] = -2  # a written chunk: kept as is by the resume
    mm.flush()
    del mm
    assert FeatureStore.open(path).missing_chunks() == [(32, 48)]
    again = enc.transform_to_store(list(imgs), path)
    got = again.to_array()
    np.testing.assert_array_equal(got[16:], ref[16:])
    assert (got[:16] == -2).all()
    # other images: not resumed into the same store
    with pytest.raises(ValueError, match="resume=False"):
        enc.transform_to_store(list(imgs[::-1]), path)
    fresh = enc.transform_to_store(list(imgs), path, resume=False)
    np.testing.assert_array_equal(fresh.to_array(), ref)


def test_transform_to_store_float16_and_errors(tmp_path, digits32, fitted):
    imgs, y = digits32
    enc, ref = fitted
    half = enc.transform_to_store(list(imgs), tmp_path / "h", dtype="float16")
    np.testing.assert_allclose(half.to_array(), ref, rtol=2.0**-11, atol=3e-8)
    with pytest.raises(ValueError, match="multiple of chunk_size"):
        enc.transform_to_store(list(imgs), tmp_path / "x", chunk_rows=20)


def test_lazy_input_equals_list_input(tmp_path, digits32, fitted):
    imgs, y = digits32
    ref_enc, ref = fitted
    lazy = _LazyList(imgs)
    enc = _encoder().fit(lazy, y)
    np.testing.assert_array_equal(enc.fit_indices_, ref_enc.fit_indices_)
    lazy.counter[0] = 0
    np.testing.assert_array_equal(enc.transform(lazy), ref)
    assert lazy.counter[0] == len(imgs)  # each image decoded once, by its chunk
    store = enc.transform_to_store(lazy, tmp_path / "lazy")
    np.testing.assert_array_equal(store.to_array(), ref)
    assert store.attrs["images"].startswith("lazy:")


def test_lazy_images_from_h1_if_present(tmp_path, digits32):
    datasets = pytest.importorskip("classicvision.datasets")
    LazyImages = getattr(datasets, "LazyImages", None)
    if LazyImages is None:
        pytest.skip("classicvision.datasets.LazyImages is not there yet")
    imgs, y = digits32
    paths = []
    for i, im in enumerate(imgs[:48]):
        p = tmp_path / f"{i:03d}.png"
        cv2.imwrite(str(p), im)
        paths.append(str(p))
    lazy = LazyImages(paths)
    decoded = [lazy[i] for i in range(len(lazy))]
    enc = _encoder()
    ref = enc.fit(decoded, y[:48]).transform(decoded)
    lazy_enc = _encoder().fit(lazy, y[:48])
    np.testing.assert_array_equal(lazy_enc.transform(lazy), ref)
    np.testing.assert_array_equal(lazy_enc.transform_to_store(lazy, tmp_path / "s").to_array(), ref)


def _rss_file_kib() -> int:
    """Resident pages of this process that map files (Linux: /proc/self/status RssFile)."""
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status (Linux)")
def test_reading_every_block_keeps_no_pages_of_the_store_resident(tmp_path):
    """A pass over the store must not leave its pages in the reader's RSS: the peak RSS of an
    out-of-core fit would otherwise grow to the store's size (seen: 3.3 GiB at 5,000 rows of
    nec2010 features, 5.1 GiB at 20,000)."""
    store = FeatureStore.create(tmp_path / "s", 16_384, 1024, dtype="float32", chunk_rows=1024)  # 64 MiB
    rng = np.random.RandomState(0)
    for a in range(0, 16_384, 1024):
        store.write(a, rng.rand(1024, 1024).astype(np.float32))
    store = FeatureStore.open(tmp_path / "s")
    before = _rss_file_kib()
    perm = rng.permutation(16_384)
    for a in range(0, 16_384, 1024):
        store[np.sort(perm[a : a + 1024])]  # a random block, as a pass of averaged SGD reads
    for _, _ in store.iter_chunks():
        pass
    store[0:4096]
    assert _rss_file_kib() - before < 16 * 1024  # under a quarter of the 64 MiB read
