"""CNNClassifier and ``cnn.data.images_to_tensor`` on lazy image sequences (issue 14).

A lazy sequence (``classicvision.datasets.LazyImages``: ``len``, ``x[i]`` decodes one
image, ``np.asarray(x)`` raises) must be read a chunk at a time, never materialized,
and give the results of the same images in a list.
"""

import inspect
import weakref
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
import torch

import cnn.data as cnn_data
from classicvision.datasets import load_digits_images
from cnn import CNNClassifier
from cnn.data import image_shapes, images_to_tensor, is_lazy

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class CountingImages(Sequence):
    """A lazy sequence for the tests: ``x[i]`` "decodes" (copies) image ``i``.

    Counts the accesses per index and how many decoded images are alive at once
    (``max_alive``); ``np.asarray`` raises, as ``LazyImages``'s does.
    """

    def __init__(self, arrays):
        self._arrays = list(arrays)
        self.accesses = Counter()
        self.alive = 0
        self.max_alive = 0

    def __len__(self):
        return len(self._arrays)

    def _dead(self):
        self.alive -= 1

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"CountingImages takes an int index, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        self.accesses[int(i) % len(self)] += 1
        arr = np.array(self._arrays[i], copy=True)
        self.alive += 1
        self.max_alive = max(self.max_alive, self.alive)
        weakref.finalize(arr, self._dead)
        return arr

    def __array__(self, *args, **kwargs):
        raise TypeError("CountingImages is lazy: index or iterate it")


def _mixed_images(rng, n=30):
    """Gray and colour, uint8 and float, of four sizes."""
    out = []
    for i in range(n):
        h, w = [(9, 7), (16, 16), (5, 12), (40, 33)][i % 4]
        if i % 3 == 0:
            out.append(rng.integers(0, 256, (h, w), dtype=np.uint8))
        elif i % 3 == 1:
            out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        else:
            out.append(rng.random((h, w, 3)).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def digits():
    tr = load_digits_images(split="train")
    te = load_digits_images(split="test")
    return list(tr.images[:300]), tr.target[:300], list(te.images[:120]), te.target[:120]


def _quick(**kw):
    params = dict(model="small_convnet", epochs=2, batch_size=50, flip=False, random_state=0, num_threads=1)
    params.update(kw)
    return CNNClassifier(**params)


# ---------------------------------------------------------------- cnn.data
def test_counting_images_is_lazy_and_refuses_asarray():
    x = CountingImages([np.zeros((4, 4), np.uint8)])
    assert is_lazy(x)
    assert not is_lazy([np.zeros((4, 4))]) and not is_lazy(np.zeros((2, 4, 4)))
    with pytest.raises(TypeError, match="lazy"):
        np.asarray(x)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_images_to_tensor_lazy_equals_list_chunk_by_chunk(in_chans):
    images = _mixed_images(np.random.default_rng(0))
    want = images_to_tensor(images, size=12, in_chans=in_chans)
    lazy = CountingImages(images)
    # about 4 images of 40x33 per chunk: several chunks, each image of a chunk resized with its shape group
    chunk = 4 * 4 * 3 * (40 * 33 + 12 * 12)
    got = images_to_tensor(lazy, size=12, in_chans=in_chans, chunk_bytes=chunk)
    assert got.dtype == torch.uint8 and got.shape == (30, in_chans, 12, 12)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert set(lazy.accesses.values()) == {1} and len(lazy.accesses) == 30  # each image read once
    assert lazy.max_alive <= 16 < 30  # never all decoded images at once
    assert lazy.alive == 0


def test_images_to_tensor_auto_channels():
    rng = np.random.default_rng(1)
    gray = [rng.integers(0, 256, (6, 6), dtype=np.uint8) for _ in range(5)]
    got = images_to_tensor(CountingImages(gray), size=4, in_chans=None)
    torch.testing.assert_close(got, images_to_tensor(gray, size=4, in_chans=1), rtol=0, atol=0)
    # the first colour image comes late: the gray ones before it are replicated to 3 channels
    mixed = gray + [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)] + gray[:2]
    got = images_to_tensor(CountingImages(mixed), size=4, in_chans=None, chunk_bytes=1)
    torch.testing.assert_close(got, images_to_tensor(mixed, size=4, in_chans=3), rtol=0, atol=0)
    assert images_to_tensor(mixed, size=4, in_chans=None).shape[1] == 3


def test_images_to_tensor_indices_and_errors():
    images = _mixed_images(np.random.default_rng(2), n=8)
    lazy = CountingImages(images)
    got = images_to_tensor(lazy, size=8, in_chans=3, indices=[6, 1, 3])
    want = images_to_tensor([images[6], images[1], images[3]], size=8, in_chans=3)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert sorted(lazy.accesses) == [1, 3, 6]
    bad = CountingImages([*images[:3], np.zeros((5, 5, 2), np.uint8)])
    with pytest.raises(ValueError, match="image 3"):
        images_to_tensor(bad, size=8, in_chans=3)
    with pytest.raises(ValueError, match="empty"):
        images_to_tensor(CountingImages([]), size=8, in_chans=3)


def test_image_shapes_one_at_a_time():
    images = _mixed_images(np.random.default_rng(3), n=9)
    lazy = CountingImages(images)
    assert image_shapes(lazy) == [im.shape for im in images] == image_shapes(images)
    assert lazy.max_alive == 1


# ---------------------------------------------------------------- CNNClassifier
def test_fit_predict_lazy_equals_list(digits, monkeypatch):
    X, y, Xt, yt = digits
    ref = _quick().fit(X, y)
    lazy = CountingImages(X)
    clf = _quick().fit(lazy, y)
    # the input size comes from the images (small_convnet): one pass for the sizes, one to convert
    assert set(lazy.accesses.values()) == {2} and len(lazy.accesses) == len(X)
    assert clf.input_size_ == ref.input_size_ == 8 and clf.in_chans_ == ref.in_chans_ == 1
    for k, v in ref.model_.state_dict().items():
        torch.testing.assert_close(clf.model_.state_dict()[k], v, rtol=0, atol=0)
    assert clf.history_[-1]["loss"] == ref.history_[-1]["loss"]
    # predict streams: chunks of 2 batches (CHUNK_BYTES is read at call time)
    monkeypatch.setattr(cnn_data, "CHUNK_BYTES", 2 * 256 * 64)
    lazy_test = CountingImages(Xt)
    np.testing.assert_array_equal(clf.predict_proba(lazy_test), ref.predict_proba(Xt))
    np.testing.assert_array_equal(clf.predict(CountingImages(Xt)), ref.predict(Xt))
    assert set(lazy_test.accesses.values()) == {1}
    assert clf.score(CountingImages(Xt), yt) == ref.score(Xt, yt)


def test_fit_lazy_reads_once_with_input_size_and_validation(digits):
    X, y, Xt, yt = digits
    lazy, lazy_val = CountingImages(X), CountingImages(Xt)
    clf = _quick(input_size=8, epochs=1).fit(lazy, y, validation_data=(lazy_val, yt))
    ref = _quick(input_size=8, epochs=1).fit(X, y, validation_data=(Xt, yt))
    assert set(lazy.accesses.values()) == {1} and set(lazy_val.accesses.values()) == {1}
    assert clf.history_[-1]["test_error"] == ref.history_[-1]["test_error"]
    np.testing.assert_array_equal(clf.predict(Xt), ref.predict(Xt))


def test_fit_lazy_colour_images_auto_channels():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (10, 12), dtype=np.uint8) for _ in range(20)]
    images += [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(20)]
    y = np.repeat([0, 1], 20)
    clf = _quick(epochs=1, batch_size=20, input_size=8).fit(CountingImages(images), y)
    ref = _quick(epochs=1, batch_size=20, input_size=8).fit(images, y)
    assert clf.in_chans_ == ref.in_chans_ == 3 and clf.mean_ == ref.mean_
    np.testing.assert_array_equal(clf.predict_proba(CountingImages(images)), ref.predict_proba(images))


def _lazy_folder_loader():
    try:
        from classicvision.datasets import load_image_folder
    except ImportError:
        return None
    return load_image_folder if "lazy" in inspect.signature(load_image_folder).parameters else None


def test_fit_on_lazy_image_folder(tmp_path):
    """Real files through ``load_image_folder(lazy=True)`` (LazyImages), the same as eager loading."""
    load_image_folder = _lazy_folder_loader()
    if load_image_folder is None:
        pytest.skip("classicvision.datasets.load_image_folder has no lazy=True here")
    from PIL import Image

    rng = np.random.default_rng(5)
    for c, name in enumerate(["bars", "blobs"]):
        (tmp_path / name).mkdir()
        for i in range(12):
            im = rng.integers(0, 80, (14, 18, 3), dtype=np.uint8)
            im[:, c::2] += 150  # a class pattern
            Image.fromarray(im).save(tmp_path / name / f"{i:02d}.png")
    lazy = load_image_folder(tmp_path, lazy=True)
    eager = load_image_folder(tmp_path, cache=False)
    assert is_lazy(lazy.images) and len(lazy.images) == 24
    with pytest.raises(TypeError):
        np.asarray(lazy.images)
    clf = _quick(epochs=1, batch_size=8).fit(lazy.images, lazy.target)
    ref = _quick(epochs=1, batch_size=8).fit(eager.images, eager.target)
    assert clf.input_size_ == ref.input_size_
    np.testing.assert_array_equal(clf.predict_proba(lazy.images), ref.predict_proba(eager.images))
