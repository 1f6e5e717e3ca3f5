"""Tests of classicvision.datasets: folders, tar archives, CIFAR-10, digits, cache."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import pickle
import re
import struct
import tarfile
import threading
import warnings
import zlib
from collections import Counter, OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.utils import Bunch

from classicvision.datasets import (
    DATASETS,
    dataset_root,
    decode_image,
    get_cache_dir,
    load_cifar10,
    load_dataset,
    load_digits_images,
    load_image_folder,
    load_scene15,
    read_image,
    split_per_class,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty cache folder (never the user's ~/.cache)."""
    cache = tmp_path_factory.mktemp("cvcache")
    monkeypatch.setenv("CLASSICVISION_CACHE", str(cache))
    return cache


# --------------------------------------------------------------------------- helpers
def _write(path: Path, rgb_or_gray: np.ndarray) -> None:
    """Write an RGB(A) or gray array with OpenCV (which wants BGR order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rgb_or_gray
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(path.suffix, arr)
    assert ok
    path.write_bytes(buf.tobytes())


def _rgb(seed: int, shape=(6, 5, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _make_tree(root: Path, classes=("dog", "cat", "bird"), per_class=4, splits=None, shape=(6, 5, 3)):
    """Build <root>[/<split>]/<class>/<i>.png; return {relative path: RGB array}."""
    truth = {}
    seed = 0
    for split in splits or [None]:
        for cls in classes:
            for i in range(per_class):
                rel = f"{cls}/{i:02d}.png" if split is None else f"{split}/{cls}/{i:02d}.png"
                img = _rgb(seed, shape)
                seed += 1
                _write(root / rel, img)
                truth[rel] = img
    return truth


def _tar(src: Path, dest: Path, mode: str, fmt: int = tarfile.DEFAULT_FORMAT) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, mode, format=fmt) as tf:
        for child in sorted(src.iterdir()):
            tf.add(child, arcname=child.name)
    return dest


def _assert_same(a, b):
    assert a.target_names == b.target_names
    np.testing.assert_array_equal(a.target, b.target)
    np.testing.assert_array_equal(a.filenames, b.filenames)
    if isinstance(a.images, np.ndarray):
        np.testing.assert_array_equal(a.images, b.images)
    else:
        assert len(a.images) == len(b.images)
        for x, y in zip(a.images, b.images):
            np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- folders
def test_class_layout_folder(tmp_path):
    truth = _make_tree(tmp_path / "data")
    d = load_image_folder(tmp_path / "data", n_jobs=1)
    assert d.target_names == ["bird", "cat", "dog"]
    assert isinstance(d.images, np.ndarray)
    assert d.images.shape == (12, 6, 5, 3) and d.images.dtype == np.uint8
    assert d.target.dtype == np.int64
    assert sorted(d.filenames) == list(d.filenames)  # class-major, sorted order
    for img, label, rel in zip(d.images, d.target, d.filenames):
        np.testing.assert_array_equal(img, truth[rel])  # PNG is lossless, RGB order kept
        assert d.target_names[label] == rel.split("/")[0]


def test_split_layout_inside_wrapper_folder(tmp_path):
    truth = _make_tree(tmp_path / "ds" / "top", splits=["train", "test"], per_class=3)
    train = load_image_folder(tmp_path / "ds", split="train")
    test = load_image_folder(tmp_path / "ds", split="test")
    assert len(train.images) == 9 and len(test.images) == 9
    assert train.target_names == test.target_names == ["bird", "cat", "dog"]
    assert all(f.startswith("top/train/") for f in train.filenames)
    for img, rel in zip(test.images, test.filenames):
        np.testing.assert_array_equal(img, truth[rel[len("top/"):]])
    pooled = load_image_folder(tmp_path / "ds", split=None)
    assert len(pooled.images) == 18
    assert set(pooled.filenames) == set(train.filenames) | set(test.filenames)


def test_class_names_are_union_over_splits(tmp_path):
    _make_tree(tmp_path, classes=("a", "b"), splits=["train"], per_class=2)
    _make_tree(tmp_path, classes=("b", "c"), splits=["test"], per_class=2)
    train = load_image_folder(tmp_path, "train")
    test = load_image_folder(tmp_path, "test")
    assert train.target_names == test.target_names == ["a", "b", "c"]
    assert set(test.target) == {1, 2}


def test_files_outside_class_folders_and_hidden_files_are_ignored(tmp_path):
    _make_tree(tmp_path, classes=("a", "b"), per_class=2)
    (tmp_path / "README.txt").write_text("not an image")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0junk")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x").write_text("x")
    d = load_image_folder(tmp_path)
    assert len(d.images) == 4


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz"), ("w:gz", ".tgz")])
def test_tar_archives_match_folder(tmp_path, mode, suffix):
    _make_tree(tmp_path / "src" / "wrap", splits=["train", "test"], per_class=3)
    archive = _tar(tmp_path / "src", tmp_path / f"data{suffix}", mode)
    for split in ("train", "test", None):
        _assert_same(
            load_image_folder(archive, split, cache=False),
            load_image_folder(tmp_path / "src", split, cache=False),
        )


def test_tar_class_layout_without_wrapper(tmp_path):
    _make_tree(tmp_path / "src", per_class=2)
    archive = _tar(tmp_path / "src", tmp_path / "flat.tar.gz", "w:gz")
    d = load_image_folder(archive)
    assert d.images.shape == (6, 6, 5, 3)
    assert list(d.filenames[:2]) == ["bird/00.png", "bird/01.png"]


@pytest.mark.parametrize(
    "fmt,mode,fast",
    [
        (tarfile.USTAR_FORMAT, "w:gz", True),  # long paths use the ustar prefix field
        (tarfile.GNU_FORMAT, "w:gz", False),  # "././@LongLink" members
        (tarfile.PAX_FORMAT, "w", False),  # pax extended headers
        (tarfile.PAX_FORMAT, "w:bz2", False),  # compression left to tarfile
    ],
)
def test_fast_tar_reader_and_tarfile_fallback_agree(tmp_path, fmt, mode, fast):
    from classicvision.datasets import _folder

    classes = ("c" * 60, "d" * 60)
    src = tmp_path / "src" / "wrapper_folder"
    for i, cls in enumerate(classes):
        for j in range(2):
            _write(src / "train" / cls / f"{'f' * 40}_{j}.png", _rgb(10 * i + j))
    archive = tmp_path / "long.tar"
    with tarfile.open(archive, mode, format=fmt) as tf:
        tf.add(tmp_path / "src" / "wrapper_folder", arcname="wrapper_folder")
    assert max(len(n) for n in tarfile.open(archive).getnames()) > 100
    if fast:
        paths, _, _ = _folder._scan_tar_fast(archive, lambda parts: True)
        assert len(paths) == 4
    else:
        with pytest.raises(_folder._NeedTarfile):
            _folder._scan_tar_fast(archive, lambda parts: True)
    _assert_same(
        load_image_folder(archive, "train", cache=False),
        load_image_folder(tmp_path / "src", "train", cache=False),
    )


def test_tar_per_class_split_of_class_layout(tmp_path):
    _make_tree(tmp_path / "src" / "wrap", classes=("a", "b"), per_class=5)
    archive = _tar(tmp_path / "src", tmp_path / "d.tar.gz", "w:gz")
    for split in ("train", "test", None):
        kw = dict(train_per_class=2, test_per_class=3, random_state=1, cache=False)
        _assert_same(load_image_folder(archive, split, **kw), load_image_folder(tmp_path / "src", split, **kw))


def test_repeated_tar_member_counts_once_and_last_copy_wins(tmp_path):
    _make_tree(tmp_path / "src", classes=("a",), per_class=2)
    newer = _rgb(50)
    _write(tmp_path / "newer.png", newer)
    archive = tmp_path / "d.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tmp_path / "src" / "a", arcname="a")
        tf.add(tmp_path / "newer.png", arcname="a/00.png")
    d = load_image_folder(archive, cache=False)
    assert list(d.filenames) == ["a/00.png", "a/01.png"]
    np.testing.assert_array_equal(d.images[0], newer)


def test_single_split_folder_is_a_split_not_a_wrapper(tmp_path):
    _make_tree(tmp_path, classes=("a", "b"), splits=["train"], per_class=2)
    assert load_image_folder(tmp_path, "train").target_names == ["a", "b"]
    with pytest.raises(ValueError, match=r"split 'test' not found.*\['train'\]"):
        load_image_folder(tmp_path, "test")


def test_varied_sizes_give_a_list(tmp_path):
    _write(tmp_path / "a" / "0.png", _rgb(0, (4, 7, 3)))
    _write(tmp_path / "a" / "1.png", _rgb(1, (9, 3, 3)))
    d = load_image_folder(tmp_path)
    assert isinstance(d.images, list)
    assert [im.shape for im in d.images] == [(4, 7, 3), (9, 3, 3)]


# --------------------------------------------------------------------------- pixel formats
def test_gray_rgba_16bit_and_jpeg_decoding(tmp_path):
    gray = _rgb(1, (5, 6, 1))[:, :, 0]
    rgba = _rgb(2, (5, 6, 4))
    deep = np.random.default_rng(3).integers(0, 65536, size=(5, 6), dtype=np.uint16)
    deep_rgb = np.random.default_rng(4).integers(0, 65536, size=(5, 6, 3), dtype=np.uint16)
    _write(tmp_path / "g.png", gray)
    _write(tmp_path / "rgba.png", rgba)
    _write(tmp_path / "deep.png", deep)
    _write(tmp_path / "deep_rgb.png", deep_rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), gray)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba[:, :, :3])
    out = read_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.shape == (5, 6)
    np.testing.assert_array_equal(out, np.round(deep / 257.0).astype(np.uint8))
    out = read_image(tmp_path / "deep_rgb.png")
    np.testing.assert_array_equal(out, np.round(deep_rgb / 257.0).astype(np.uint8))
    # JPEG: lossy, but a flat color must come back as that color in RGB order.
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[...] = (200, 40, 90)
    _write(tmp_path / "flat.jpg", flat)
    jpg = read_image(tmp_path / "flat.jpg")
    assert jpg.shape == (16, 16, 3)
    assert np.abs(jpg.astype(int) - flat).max() <= 3


def test_gray_folder_stays_2d_and_mixed_folder_becomes_rgb(tmp_path):
    g0, g1 = _rgb(0, (6, 5, 1))[:, :, 0], _rgb(1, (6, 5, 1))[:, :, 0]
    _write(tmp_path / "gray" / "a" / "0.png", g0)
    _write(tmp_path / "gray" / "b" / "1.png", g1)
    d = load_image_folder(tmp_path / "gray")
    assert d.images.shape == (2, 6, 5)
    color = _rgb(2, (6, 5, 3))
    _write(tmp_path / "mixed" / "a" / "0.png", g0)
    _write(tmp_path / "mixed" / "b" / "1.png", color)
    d = load_image_folder(tmp_path / "mixed")
    assert d.images.shape == (2, 6, 5, 3)
    np.testing.assert_array_equal(d.images[0], np.repeat(g0[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(d.images[1], color)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("content", [b"", b"this is not an image", b"\x89PNG\r\n\x1a\n garbage"])
def test_unreadable_file_raises_naming_it(tmp_path, content):
    _make_tree(tmp_path, classes=("a",), per_class=2)
    (tmp_path / "a" / "bad.png").write_bytes(content)
    with pytest.raises(ValueError, match="bad.png"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="bad.png"):
        decode_image(content, "bad.png")


def test_on_error_skip_warns_and_drops(tmp_path):
    _make_tree(tmp_path / "src", classes=("a", "b"), per_class=2)
    (tmp_path / "src" / "a" / "bad.jpg").write_bytes(b"")
    (tmp_path / "src" / "b" / "notes.txt").write_text("hello")
    archive = _tar(tmp_path / "src", tmp_path / "d.tar", "w")
    for path in (tmp_path / "src", archive):
        with pytest.raises(ValueError, match=r"bad\.jpg.*1 more"):
            load_image_folder(path)
        with pytest.warns(UserWarning, match=r"skipped 2 .*a/bad\.jpg.*b/notes\.txt"):
            d = load_image_folder(path, on_error="skip")
        assert d.images.shape == (4, 6, 5, 3)
        assert "a/bad.jpg" not in d.filenames
        np.testing.assert_array_equal(d.target, [0, 0, 1, 1])
        with pytest.warns(UserWarning, match=r"skipped 2 "):  # again from the cache
            _assert_same(load_image_folder(path, on_error="skip"), d)


def test_missing_path_and_bad_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nothing.tar.gz"):
        load_image_folder(tmp_path / "nothing.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders.*empty"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    _write(tmp_path / "flat" / "x.png", _rgb(0))
    with pytest.raises(ValueError, match="no class subfolders.*flat"):
        load_image_folder(tmp_path / "flat")
    (tmp_path / "file.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="neither a folder nor a tar archive"):
        load_image_folder(tmp_path / "file.tar.gz")
    _make_tree(tmp_path / "ok", classes=("a",), per_class=1)
    with pytest.raises(ValueError, match="no split folders"):
        load_image_folder(tmp_path / "ok", split="train")
    with pytest.raises(ValueError, match="on_error"):
        load_image_folder(tmp_path / "ok", on_error="ignore")
    with pytest.raises(ValueError, match="train_per_class"):
        load_image_folder(tmp_path / "ok", train_per_class=-1)


def test_images_at_mixed_depths_raise(tmp_path):
    _make_tree(tmp_path, classes=("a", "b"), splits=["train"], per_class=2)
    _write(tmp_path / "train" / "a" / "extra" / "deep.png", _rgb(5))
    with pytest.raises(ValueError, match=r"mixed folder depths.*train/a/00\.png"):
        load_image_folder(tmp_path, "train")


def test_truncated_archive_raises(tmp_path):
    _make_tree(tmp_path / "src", per_class=3)
    archive = _tar(tmp_path / "src", tmp_path / "d.tar.gz", "w:gz")
    data = archive.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.tar.gz"):
        load_image_folder(cut, cache=False)


# --------------------------------------------------------------------------- per-class split
def test_split_per_class_is_reproducible_and_correct():
    y = np.repeat(np.arange(4), [10, 7, 12, 8])
    tr1, te1 = split_per_class(y, 5, 2, random_state=3)
    tr2, te2 = split_per_class(y, 5, 2, random_state=3)
    np.testing.assert_array_equal(tr1, tr2)
    np.testing.assert_array_equal(te1, te2)
    assert not set(tr1) & set(te1)
    assert Counter(y[tr1]) == {c: 5 for c in range(4)}
    assert Counter(y[te1]) == {c: 2 for c in range(4)}
    assert np.all(np.diff(tr1) > 0)
    tr3, _ = split_per_class(y, 5, 2, random_state=4)
    assert not np.array_equal(tr1, tr3)
    tr, te = split_per_class(y, 7)
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(y.size))
    tr, te = split_per_class(y, 0, 1)
    assert tr.size == 0 and te.size == 4


def test_split_per_class_errors():
    y = np.array([0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"class 'car' \(label 1\) has only 2"):
        split_per_class(y, 2, 1, target_names=["bike", "car"])
    with pytest.raises(ValueError, match="label 1 has only 2"):
        split_per_class(y, 3)
    with pytest.raises(ValueError, match="train_per_class"):
        split_per_class(y, -1)
    with pytest.raises(ValueError, match="test_per_class"):
        split_per_class(y, 1, 1.5)
    with pytest.raises(ValueError, match="1-D"):
        split_per_class(y.reshape(1, -1), 1)


def test_folder_per_class_split(tmp_path):
    _make_tree(tmp_path, classes=("a", "b", "c"), per_class=6)
    kw = dict(train_per_class=3, test_per_class=2, random_state=7)
    tr = load_image_folder(tmp_path, "train", **kw)
    te = load_image_folder(tmp_path, "test", **kw)
    assert len(tr.images) == 9 and len(te.images) == 6
    assert not set(tr.filenames) & set(te.filenames)
    np.testing.assert_array_equal(tr.filenames, load_image_folder(tmp_path, "train", **kw).filenames)
    both = load_image_folder(tmp_path, None, **kw)
    assert len(both.images) == 15
    np.testing.assert_array_equal(both.filenames[both.train_index], tr.filenames)
    np.testing.assert_array_equal(both.filenames[both.test_index], te.filenames)
    np.testing.assert_array_equal(both.images[both.test_index], te.images)
    (tmp_path / "b" / "00.png").unlink()
    with pytest.raises(ValueError, match=r"class 'b' \(label 1\) has only 5 samples.*none for testing"):
        load_image_folder(tmp_path, "train", train_per_class=5, test_per_class=2)
    with pytest.raises(ValueError, match=r"class 'b' \(label 1\) has only 5 samples.*needs at least 6"):
        load_image_folder(tmp_path, "train", train_per_class=6)
    with pytest.raises(ValueError, match="only 'train' and 'test'"):
        load_image_folder(tmp_path, "val", train_per_class=2)


def test_per_class_subsamples_a_fixed_split(tmp_path):
    _make_tree(tmp_path, classes=("a", "b"), splits=["train", "test"], per_class=5)
    tr = load_image_folder(tmp_path, "train", train_per_class=2, test_per_class=3)
    te = load_image_folder(tmp_path, "test", train_per_class=2, test_per_class=3)
    assert Counter(tr.target) == {0: 2, 1: 2} and all("train/" in f for f in tr.filenames)
    assert Counter(te.target) == {0: 3, 1: 3} and all("test/" in f for f in te.filenames)


# --------------------------------------------------------------------------- cache
def test_cache_hit_returns_equal_data(tmp_path, _private_cache, monkeypatch):
    _make_tree(tmp_path / "src" / "w", splits=["train", "test"], per_class=3)
    archive = _tar(tmp_path / "src", tmp_path / "d.tar.gz", "w:gz")
    first = load_image_folder(archive, "train")
    entries = list((_private_cache / "datasets").iterdir())
    assert len(entries) == 1 and (entries[0] / "images.npy").is_file()
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["filenames"] == list(first.filenames)
    # A hit must not read the archive's members again.
    from classicvision.datasets import _folder

    def _no_scan(*args, **kwargs):
        raise AssertionError("cache hit re-read the archive")

    monkeypatch.setattr(_folder, "_scan_tar", _no_scan)
    second = load_image_folder(archive, "train")
    _assert_same(first, second)
    assert isinstance(second.images, np.ndarray) and second.images.dtype == np.uint8
    assert len(list((_private_cache / "datasets").iterdir())) == 1
    with pytest.raises(AssertionError, match="re-read"):  # a new key is a miss
        load_image_folder(archive, "test")


def test_cache_of_lists_and_index_fields(tmp_path, _private_cache):
    for i, shape in enumerate([(4, 5), (6, 3), (5, 5), (7, 2)]):
        _write(tmp_path / "src" / ("a" if i % 2 else "b") / f"{i}.png", _rgb(i, shape + (1,))[:, :, 0])
    kw = dict(train_per_class=1, test_per_class=1)
    first = load_image_folder(tmp_path / "src", **kw)
    second = load_image_folder(tmp_path / "src", **kw)
    assert isinstance(second.images, list)
    _assert_same(first, second)
    np.testing.assert_array_equal(first.train_index, second.train_index)
    np.testing.assert_array_equal(first.test_index, second.test_index)


def test_cache_disabled_and_invalidated(tmp_path, _private_cache):
    _make_tree(tmp_path / "src", classes=("a",), per_class=2)
    load_image_folder(tmp_path / "src", cache=False)
    assert not (_private_cache / "datasets").exists()
    first = load_image_folder(tmp_path / "src")
    new = _rgb(99)
    _write(tmp_path / "src" / "a" / "00.png", new)
    os.utime(tmp_path / "src" / "a" / "00.png", ns=(1, 1))  # changes the fingerprint
    second = load_image_folder(tmp_path / "src")
    np.testing.assert_array_equal(second.images[0], new)
    assert not np.array_equal(first.images[0], second.images[0])
    assert get_cache_dir() == _private_cache


# --------------------------------------------------------------------------- digits
def test_digits_images_and_fixed_split():
    raw = load_digits()
    d = load_digits_images()
    assert d.images.shape == (1797, 8, 8) and d.images.dtype == np.uint8
    np.testing.assert_array_equal(d.images, np.round(raw.images * 255 / 16).astype(np.uint8))
    assert d.images.max() == 255 and d.target_names == [str(i) for i in range(10)]
    tr, te = load_digits_images(split="train"), load_digits_images(split="test")
    assert tr.images.shape == (1198, 8, 8) and te.images.shape == (599, 8, 8)
    idx_tr = np.array([int(f.split("/")[1]) for f in tr.filenames])
    idx_te = np.array([int(f.split("/")[1]) for f in te.filenames])
    assert np.array_equal(np.sort(np.concatenate([idx_tr, idx_te])), np.arange(1797))
    np.testing.assert_array_equal(tr.images, d.images[idx_tr])
    # Stratified: each class's share of the test part is a third, to one sample.
    counts, test_counts = np.bincount(d.target), np.bincount(te.target)
    assert np.all(np.abs(test_counts - counts / 3) <= 1)
    np.testing.assert_array_equal(load_digits_images(split="test").target, te.target)
    with pytest.raises(ValueError, match="digits has splits"):
        load_digits_images(split="val")


def test_digits_per_class():
    d = load_digits_images(split="train", train_per_class=10)
    assert Counter(d.target) == {c: 10 for c in range(10)}
    both = load_digits_images(train_per_class=5, test_per_class=3)
    assert len(both.train_index) == 50 and len(both.test_index) == 30


# --------------------------------------------------------------------------- CIFAR-10 official format
_CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar_batch(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def _build_cifar(folder: Path, n: int = 20) -> tuple[Path, dict]:
    """Write a tiny cifar-10-python.tar.gz in the official layout; return it and its batches."""
    batches = {f"data_batch_{i}": _cifar_batch(i, n) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(0, n)
    meta = {b"num_cases_per_batch": n, b"label_names": [s.encode() for s in _CIFAR_NAMES], b"num_vis": 3072}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, obj in list(batches.items()) + [("batches.meta", meta)]:
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path, batches


def _check_cifar(d, batches, split):
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    data = np.concatenate([batches[b][b"data"] for b in names])
    assert d.images.shape == (len(data), 32, 32, 3) and d.images.dtype == np.uint8
    # Row layout: 1024 red, then green, then blue values, each a row-major 32x32 plane.
    np.testing.assert_array_equal(d.images[3, :, :, 0].ravel(), data[3, :1024])
    np.testing.assert_array_equal(d.images[3, :, :, 2].ravel(), data[3, 2048:])
    np.testing.assert_array_equal(d.target, sum((batches[b][b"labels"] for b in names), []))
    assert d.target_names == _CIFAR_NAMES
    assert d.filenames[0] == f"{names[0]}/img_{names[0][-1] if split == 'train' else 0}_0.png"


def test_cifar10_official_archive_and_folder(tmp_path):
    archive, batches = _build_cifar(tmp_path / "root")
    for root in (archive, tmp_path / "root"):
        _check_cifar(load_cifar10(root, "train"), batches, "train")
        _check_cifar(load_cifar10(root, "test"), batches, "test")
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "unpacked", filter="data")
    _check_cifar(load_cifar10(tmp_path / "unpacked", "test"), batches, "test")
    _check_cifar(load_cifar10(tmp_path / "unpacked" / "cifar-10-batches-py", "train"), batches, "train")
    both = load_cifar10(archive, None)
    assert len(both.images) == 120
    sub = load_cifar10(archive, "train", train_per_class=2)
    assert len(sub.images) <= 20 and max(Counter(sub.target).values()) == 2
    with pytest.raises(ValueError, match="splits 'train' and 'test'"):
        load_cifar10(archive, "val")
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(tmp_path / "absent")


def test_cifar10_refuses_pickled_objects(tmp_path):
    archive, batches = _build_cifar(tmp_path / "root", n=2)
    bad = dict(batches["test_batch"])
    bad[b"extra"] = OrderedDict(a=1)  # any class other than numpy's array rebuilders
    folder = tmp_path / "bad" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            (folder / Path(m.name).name).write_bytes(tf.extractfile(m).read())
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match="refusing to unpickle global collections.OrderedDict"):
        load_cifar10(folder, "test")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"test_batch.*\(N, 3072\)"):
        load_cifar10(folder, "test")


def test_cifar10_delegates_imagefolder_copies(tmp_path):
    _make_tree(tmp_path / "src" / "cifar10", classes=("cat", "dog"), splits=["train", "test"], per_class=2)
    archive = _tar(tmp_path / "src", tmp_path / "data" / "cifar10.tar.gz", "w:gz")
    expected = load_image_folder(archive, "test", cache=False)
    _assert_same(load_cifar10(archive, "test", cache=False), expected)
    _assert_same(load_cifar10(tmp_path / "data", "test", cache=False), expected)
    _assert_same(load_dataset("cifar10", tmp_path / "data", "test", cache=False), expected)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """Serve a folder over HTTP on 127.0.0.1; yields (folder, base URL)."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # loopback requests must not go to a proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served))
    )
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_cifar10_download_verifies_checksum(tmp_path, http_root):
    served, base = http_root
    archive, batches = _build_cifar(served)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    url = f"{base}/cifar-10-python.tar.gz"
    dest = tmp_path / "downloads"
    d = load_cifar10(dest, "test", download=True, url=url, md5=md5)
    _check_cifar(d, batches, "test")
    assert (dest / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert not list(dest.glob("*.part"))
    # Second call finds (and re-verifies) the archive instead of downloading again.
    served_copy = archive.read_bytes()
    archive.unlink()
    _check_cifar(load_cifar10(dest, "train", download=True, url=url, md5=md5), batches, "train")
    archive.write_bytes(served_copy)

    other = tmp_path / "mismatch"
    with pytest.raises(ValueError, match="checksum mismatch.*deleted"):
        load_cifar10(other, "test", download=True, url=url, md5="0" * 32)
    assert list(other.iterdir()) == []  # no partial or final file left behind
    with pytest.raises(OSError, match="download of .*missing.tar.gz failed"):
        load_cifar10(tmp_path / "m2", "test", download=True, url=f"{base}/missing.tar.gz", md5=md5)
    with pytest.raises(ValueError, match="md5"):
        load_cifar10(dest, "test", download=True, url=url, md5="1" * 32)


# --------------------------------------------------------------------------- registry
def test_load_dataset_names_and_errors(tmp_path):
    assert set(DATASETS) == {"digits", "cifar10", "cifar100", "scene15", "caltech101", "imagenet", "folder"}
    assert all(isinstance(v, str) and v for v in DATASETS.values())
    d = load_dataset("digits", split="test", cache=False, n_jobs=2)
    assert d.images.shape == (599, 8, 8)
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*valid names.*did you mean \['cifar10', 'cifar100'\]"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="needs root"):
        os.environ.pop("CLASSICVISION_DATA", None)
        load_dataset("folder")
    _make_tree(tmp_path / "scene15", classes=("Coast", "Forest"), splits=["train", "test"], per_class=2)
    s = load_dataset("scene15", tmp_path, "test", cache=False)
    assert s.target_names == ["Coast", "Forest"] and len(s.images) == 4
    _assert_same(load_scene15(tmp_path / "scene15", "train"), load_dataset("folder", tmp_path / "scene15"))


@pytest.mark.parametrize("bad", [-1, True, 2.0, "3"])
def test_loaders_refuse_bad_per_class_counts(tmp_path, bad):
    _make_tree(tmp_path / "tree")
    for name in ("train_per_class", "test_per_class"):
        with pytest.raises(ValueError, match=f"{name} must be a non-negative integer or None, got {bad!r}"):
            load_image_folder(tmp_path / "tree", **{name: bad})
        with pytest.raises(ValueError, match=f"{name} must be a non-negative integer or None, got {bad!r}"):
            load_cifar10(tmp_path, **{name: bad})


def test_dataset_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert dataset_root("cifar10", tmp_path / "c.tar") == tmp_path / "c.tar"
    assert dataset_root("cifar10", "~/data") == tmp_path / "data"  # ~ expanded
    monkeypatch.setenv("CLASSICVISION_DATA", "~/shared")
    assert dataset_root("scene15") == tmp_path / "shared"
    monkeypatch.delenv("CLASSICVISION_DATA")
    with pytest.raises(ValueError, match="dataset 'scene15' needs root="):
        dataset_root("scene15")


# --------------------------------------------------------------------------- real archives
@pytest.mark.datasets
def test_real_cifar10(shared_datasets):
    path = shared_datasets / "cifar10.tar.gz"
    train = load_image_folder(path, split="train", cache=False)
    assert train.images.shape == (50000, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.target_names == _CIFAR_NAMES
    assert np.all(np.bincount(train.target) == 5000)
    test = load_cifar10(shared_datasets, "test", cache=False)
    assert test.images.shape == (10000, 32, 32, 3)
    assert np.all(np.bincount(test.target) == 1000)
    assert test.filenames[0] == "cifar10/test/airplane/0000.jpg"


@pytest.mark.datasets
def test_real_scene15(shared_datasets):
    test = load_scene15(shared_datasets, "test", cache=False)
    assert isinstance(test.images, list) and len(test.images) == 2985
    assert len(test.target_names) == 15 and test.target_names == sorted(test.target_names)
    assert all(im.ndim == 2 and im.dtype == np.uint8 for im in test.images)
    assert len({im.shape for im in test.images}) > 1
    train = load_dataset("scene15", shared_datasets, "train", cache=False)
    assert len(train.images) == 1500 and np.all(np.bincount(train.target) == 100)
    assert train.target_names == test.target_names


# --------------------------------------------------------------------------- decompression bombs
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit grayscale PNG of one colour: a few KB that decode to width*height bytes."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, all-black pixels
    comp = zlib.compressobj(9)
    block = row * 256
    idat = b"".join(comp.compress(block) for _ in range(height // 256))
    idat += comp.compress(row * (height % 256)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@pytest.fixture
def no_full_decode(monkeypatch):
    """cv2.imdecode refuses anything over 1,000 pixels: a bomb must be stopped before it."""
    real = cv2.imdecode

    def guarded(buf, flags):
        out = real(buf, flags)
        assert out is None or out.shape[0] * out.shape[1] <= 1000, "a large image was decoded"
        return out

    monkeypatch.setattr(cv2, "imdecode", guarded)


def test_png_bomb_is_refused_from_its_header(tmp_path, no_full_decode):
    bomb = _bomb_png()
    assert len(bomb) < 100_000  # 400 million pixels in under 100 KB
    _make_tree(tmp_path / "src", classes=("a", "b"), per_class=2)
    (tmp_path / "src" / "a" / "bomb.png").write_bytes(bomb)
    archive = _tar(tmp_path / "src", tmp_path / "d.tar.gz", "w:gz")
    message = r"bomb\.png.*20000x20000 = 400,000,000 pixels exceeds the limit of 89,478,485.*max_pixels="
    with pytest.raises(ValueError, match=message):
        decode_image(bomb, "bomb.png")
    with pytest.raises(ValueError, match=message):
        read_image(tmp_path / "src" / "a" / "bomb.png")
    for path in (tmp_path / "src", archive):
        with pytest.raises(ValueError, match=message):
            load_image_folder(path, cache=False)
        with pytest.warns(UserWarning, match=r"skipped 1 unreadable file\(s\).*a/bomb\.png"):
            d = load_image_folder(path, on_error="skip")
        assert d.images.shape == (4, 6, 5, 3) and "a/bomb.png" not in d.filenames
    with pytest.raises(ValueError, match=message):
        load_dataset("folder", tmp_path / "src", None, cache=False)


def test_jpeg_bomb_header_and_other_formats(no_full_decode):
    from classicvision.datasets._decode import header_size

    img = _rgb(3, (7, 9, 3))
    for ext in (".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm"):
        ok, buf = cv2.imencode(ext, img)
        assert ok
        assert header_size(buf.tobytes()) == (9, 7), ext
        with pytest.raises(ValueError, match=rf"x{ext}: image of 9x7 = 63 pixels exceeds the limit of 62 "):
            decode_image(buf.tobytes(), f"x{ext}", max_pixels=62)
        assert decode_image(buf.tobytes(), f"x{ext}", max_pixels=63).shape == (7, 9, 3)
    ok, buf = cv2.imencode(".jpg", img)
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 50000)  # height, width
    assert header_size(bytes(data)) == (50000, 60000)
    with pytest.raises(ValueError, match=r"big\.jpg: image of 50000x60000"):
        decode_image(bytes(data), "big.jpg")


def test_max_pixels_argument_and_module_default(tmp_path, monkeypatch):
    import classicvision.datasets as cvd

    assert cvd.MAX_IMAGE_PIXELS == 89_478_485
    _make_tree(tmp_path, classes=("a",), per_class=2)  # 6x5 = 30 pixels each
    png = (tmp_path / "a" / "00.png").read_bytes()
    for bad in (0, -5, 2.5, True, "10"):
        with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
            decode_image(png, max_pixels=bad)
        with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
            load_image_folder(tmp_path, max_pixels=bad)
        with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
            load_dataset("digits", max_pixels=bad)
    assert read_image(tmp_path / "a" / "00.png", max_pixels=30).shape == (6, 5, 3)
    with pytest.raises(ValueError, match=r"00\.png: image of 5x6"):
        read_image(tmp_path / "a" / "00.png", max_pixels=29)
    first = load_image_folder(tmp_path)  # cached under the default limit ...
    with pytest.raises(ValueError, match=r"a/00\.png: image of 5x6"):
        load_image_folder(tmp_path, max_pixels=29)  # ... which must not serve a smaller one
    with pytest.raises(ValueError, match=r"a/00\.png: image of 5x6"):
        load_dataset("folder", tmp_path, None, max_pixels=29)
    monkeypatch.setattr(cvd, "MAX_IMAGE_PIXELS", 29)
    with pytest.raises(ValueError, match="image of 5x6 = 30 pixels exceeds the limit of 29"):
        decode_image(png)
    with pytest.raises(ValueError, match="image of 5x6"):
        load_image_folder(tmp_path, cache=False)
    _assert_same(load_image_folder(tmp_path, max_pixels=30), first)


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2"])  # fast reader, tarfile fallback
def test_archive_member_over_max_member_bytes_is_refused(tmp_path, mode):
    _make_tree(tmp_path / "src", classes=("a", "b"), per_class=2)
    big = _rgb(7, (40, 40, 3))
    _write(tmp_path / "src" / "b" / "big.png", big)
    size = (tmp_path / "src" / "b" / "big.png").stat().st_size
    assert size > 1000
    archive = _tar(tmp_path / "src", tmp_path / f"d.{mode[2:]}", mode)
    with pytest.raises(ValueError, match=rf"b/big\.png \(in {re.escape(str(archive))}\): archive member "
                                         rf"of {size:,} bytes exceeds max_member_bytes=1,000"):
        load_image_folder(archive, max_member_bytes=1000, cache=False)
    with pytest.warns(UserWarning, match=r"skipped 1 .*b/big\.png"):
        d = load_image_folder(archive, max_member_bytes=1000, on_error="skip", cache=False)
    assert len(d.images) == 4
    d = load_image_folder(archive, cache=False)  # the default (512 MiB) reads it
    np.testing.assert_array_equal(d.images[list(d.filenames).index("b/big.png")], big)
    with pytest.raises(ValueError, match="max_member_bytes must be a positive integer"):
        load_image_folder(archive, max_member_bytes=0)


# --------------------------------------------------------------------------- links
def test_symlinks_outside_the_root_and_loops_are_not_followed(tmp_path):
    _make_tree(tmp_path / "src", classes=("a", "b"), per_class=2)
    outside = tmp_path / "outside"
    _make_tree(outside, classes=("x",), per_class=3)
    src = tmp_path / "src"
    os.symlink(outside / "x", src / "a" / "etc")  # a folder outside the root
    os.symlink(outside / "x" / "00.png", src / "b" / "stolen.png")  # a file outside it
    os.symlink(src / "a", src / "a" / "loop")  # a folder that contains itself
    os.symlink(src / "b" / "ping", src / "b" / "pong")  # two links pointing at each other
    os.symlink(src / "b" / "pong", src / "b" / "ping")
    os.symlink(src / "b" / "01.png", src / "a" / "inside.png")  # stays inside: kept
    os.symlink(src / "b", src / "c")  # a class folder linked inside the root: kept
    with pytest.warns(UserWarning) as record:
        d = load_image_folder(src, cache=False)
    message = " ".join(str(w.message) for w in record)
    assert "ignored 8 symbolic link(s)" in message  # c/ repeats b/'s three bad links
    for link, target in [
        ("a/etc", outside / "x"),
        ("b/stolen.png", outside / "x" / "00.png"),
        ("a/loop", src / "a"),
        ("b/ping", src / "b" / "pong"),
        ("b/pong", src / "b" / "ping"),
    ]:
        assert f"{link} -> {target}" in message
    assert not any("outside" in f or "/etc/" in f for f in d.filenames)
    assert sorted(d.filenames) == [
        "a/00.png", "a/01.png", "a/inside.png", "b/00.png", "b/01.png", "c/00.png", "c/01.png",
    ]
    np.testing.assert_array_equal(
        d.images[list(d.filenames).index("a/inside.png")], d.images[list(d.filenames).index("b/01.png")]
    )


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2"])  # fast reader, tarfile fallback
def test_hard_linked_tar_members_are_read(tmp_path, mode):
    from classicvision.datasets import _folder

    src = tmp_path / "src"
    _make_tree(src / "top", classes=("a", "b"), splits=["train", "test"], per_class=3)
    os.link(src / "top" / "train" / "a" / "00.png", src / "top" / "train" / "b" / "linked.png")
    os.link(src / "top" / "test" / "b" / "02.png", src / "top" / "train" / "a" / "from_test.png")
    archive = _tar(src, tmp_path / f"d.{mode[2:]}", mode, tarfile.USTAR_FORMAT)
    with tarfile.open(archive) as tf:
        assert sum(m.islnk() for m in tf.getmembers()) == 2
    folder = load_image_folder(src, None, cache=False)
    assert len(folder.images) == 14
    for split in (None, "train"):  # "train": a link's target lies in the split not kept
        _assert_same(load_image_folder(archive, split, cache=False), load_image_folder(src, split, cache=False))
    if mode == "w:gz":
        paths, blobs, pending = _folder._scan_tar_fast(archive, lambda parts: parts[1] == "train")
        assert ("top", "train", "b", "linked.png") in blobs
        assert pending == {("top", "train", "a", "from_test.png"): ("top", "test", "b", "02.png")}


def test_hard_link_to_a_missing_member_names_it(tmp_path):
    _make_tree(tmp_path / "src", classes=("a",), per_class=2)
    archive = tmp_path / "d.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tmp_path / "src" / "a", arcname="a")
        info = tarfile.TarInfo("a/dangling.png")
        info.type, info.linkname = tarfile.LNKTYPE, "a/nowhere.png"
        tf.addfile(info)
    with pytest.raises(ValueError, match=r"a/dangling\.png \(in .*d\.tar\): hard link to 'a/nowhere\.png'"):
        load_image_folder(archive, cache=False)


# --------------------------------------------------------------------------- damaged archives, odd names
def test_tar_gz_cut_inside_its_first_header(tmp_path):
    _make_tree(tmp_path / "src", per_class=2)
    data = _tar(tmp_path / "src", tmp_path / "d.tar.gz", "w:gz").read_bytes()
    for cut in (12, 30, 100):
        path = tmp_path / "cut.tar.gz"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"truncated or corrupt archive .*cut\.tar\.gz"):
            load_image_folder(path, cache=False)
        with pytest.raises(ValueError, match=r"truncated or corrupt archive .*cut\.tar\.gz"):
            load_cifar10(path)


@pytest.mark.parametrize("mode,fmt", [
    ("w:gz", tarfile.USTAR_FORMAT),  # fast reader
    ("w:gz", tarfile.PAX_FORMAT),  # tarfile fallback
    ("w:bz2", tarfile.USTAR_FORMAT),
    ("w:xz", tarfile.USTAR_FORMAT),
])
def test_cut_archive_is_an_error_never_a_shorter_dataset(tmp_path, mode, fmt):
    _make_tree(tmp_path / "src", classes=("a", "b"), per_class=3, shape=(40, 40, 3))
    data = _tar(tmp_path / "src", tmp_path / "d.tar", mode, fmt).read_bytes()
    path = tmp_path / f"cut.{mode[2:]}"
    for fraction in (0.5, 0.9, 0.999):  # after some whole members; just before the trailer
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(ValueError, match=rf"truncated or corrupt archive {re.escape(str(path))}"):
            load_image_folder(path, cache=False)


def test_non_utf8_file_names_load_and_cache(tmp_path, _private_cache):
    root = tmp_path / "src"
    _make_tree(root, classes=("a",), per_class=1)
    img, other = _rgb(11), _rgb(12)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    ok2, buf2 = cv2.imencode(".png", cv2.cvtColor(other, cv2.COLOR_RGB2BGR))
    broot = os.fsencode(root)
    with open(os.path.join(broot, b"a", b"caf\xe9.png"), "wb") as fh:
        fh.write(buf.tobytes())
    os.mkdir(os.path.join(broot, b"\xff\xfe"))  # a class folder whose name is not UTF-8 either
    with open(os.path.join(broot, b"\xff\xfe", b"0.png"), "wb") as fh:
        fh.write(buf2.tobytes())
    first = load_image_folder(root)
    assert list(first.filenames) == ["a/00.png", "a/caf\udce9.png", "\udcff\udcfe/0.png"]
    assert first.target_names == ["a", "\udcff\udcfe"]
    np.testing.assert_array_equal(first.images[1], img)
    np.testing.assert_array_equal(first.images[2], other)
    assert len(list((_private_cache / "datasets").iterdir())) == 1
    _assert_same(load_image_folder(root), first)  # from the cache
    np.testing.assert_array_equal(read_image(os.path.join(root, "a", "caf\udce9.png")), img)


# --------------------------------------------------------------------------- cache integrity
def _entries(cache: Path) -> list[Path]:
    root = cache / "datasets"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def _forbid_decoding(monkeypatch):
    from classicvision.datasets import _folder

    def _no_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(_folder, "_decode_file_items", _no_decode)


@pytest.mark.parametrize("damage", ["random_pixels", "swapped_labels", "truncated", "no_marker", "bad_meta"])
def test_damaged_cache_entry_is_deleted_recomputed_and_rewritten(tmp_path, _private_cache, monkeypatch, damage):
    src = tmp_path / "src"
    _make_tree(src, classes=("a", "b"), per_class=2)
    first = load_image_folder(src)
    (entry,) = _entries(_private_cache)
    images, meta = entry / "images.npy", entry / "meta.json"
    if damage == "random_pixels":  # same size, same .npy header, random content
        raw = images.read_bytes()
        images.write_bytes(raw[:128] + np.random.default_rng(0).bytes(len(raw) - 128))
    elif damage == "swapped_labels":
        fields = json.loads(meta.read_text())
        fields["target"] = fields["target"][::-1]
        meta.write_text(json.dumps(fields))
    elif damage == "truncated":
        images.write_bytes(images.read_bytes()[:200])
    elif damage == "no_marker":
        (entry / "CLASSICVISION_ENTRY").unlink()
    else:
        meta.write_text("{")
    deleting = rf"deleting damaged or incomplete dataset cache entry {re.escape(str(entry))}"
    with pytest.warns(RuntimeWarning, match=deleting):
        second = load_image_folder(src)
    _assert_same(second, first)
    assert _entries(_private_cache) == [entry]  # rewritten ...
    _forbid_decoding(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_same(load_image_folder(src), first)  # ... and now served, silently


def test_clear_cache_removes_only_its_own_entries(tmp_path, _private_cache):
    from classicvision.datasets import _cache, clear_cache, is_cache_entry

    _make_tree(tmp_path / "src", classes=("a", "b"), per_class=2)
    load_image_folder(tmp_path / "src")
    load_image_folder(tmp_path / "src", train_per_class=1, test_per_class=1)
    root = _private_cache / "datasets"
    mine = _entries(_private_cache)
    assert len(mine) == 2 and all((e / "CLASSICVISION_ENTRY").is_file() for e in mine)
    user = root / "my_arrays"  # a user's own folder that happens to sit there
    user.mkdir()
    (user / "images.npy").write_bytes(b"precious")
    (user / "meta.json").write_text('{"format_version": 1}')
    lookalike = root / ("0" * 32)  # named like a key, but holds other things
    lookalike.mkdir()
    (lookalike / "notes.txt").write_text("keep me")
    (root / "README.txt").write_text("keep me too")
    legacy = root / ("a" * 32)  # an entry of the first (unmarked) format
    legacy.mkdir()
    np.save(legacy / "images.npy", np.zeros((1, 2, 2), np.uint8))
    (legacy / "meta.json").write_text('{"format_version": 1, "target": [0]}')
    interrupted = root / f".{'b' * 32}-x1y2"  # a write that crashed after its first file
    interrupted.mkdir()
    _cache._write_marker(interrupted, {})
    assert [is_cache_entry(p) for p in (*mine, legacy, interrupted)] == [True] * 4
    assert not any(is_cache_entry(p) for p in (user, lookalike, root / "README.txt", tmp_path / "src"))
    assert clear_cache() == 4
    assert sorted(p.name for p in root.iterdir()) == sorted(["my_arrays", "0" * 32, "README.txt"])
    assert (user / "images.npy").read_bytes() == b"precious"
    assert clear_cache() == 0


def test_cache_load_can_map_the_images(tmp_path, _private_cache):
    from classicvision.datasets import _cache

    _make_tree(tmp_path / "same", classes=("a", "b"), per_class=2)
    for i, shape in enumerate([(4, 5), (6, 3), (5, 5)]):
        _write(tmp_path / "varied" / ("a" if i % 2 else "b") / f"{i}.png", _rgb(i, shape + (1,))[:, :, 0])
    for name in ("same", "varied"):
        before = set(_entries(_private_cache))
        first = load_image_folder(tmp_path / name)
        (entry,) = set(_entries(_private_cache)) - before
        plain, mapped = _cache.load(entry.name), _cache.load(entry.name, mmap=True)
        for hit in (plain, mapped):
            hit.pop("skipped")
            _assert_same(Bunch(**hit), first)
        images = [mapped["images"]] if name == "same" else mapped["images"]
        assert all(not im.flags.writeable for im in images)
        assert all(isinstance(im, np.memmap) or isinstance(im.base, np.memmap) for im in images)
        plain_images = [plain["images"]] if name == "same" else plain["images"]
        assert all(im.flags.writeable and not isinstance(im, np.memmap) for im in plain_images)
    del mapped, images
    (entry,) = [e for e in _entries(_private_cache) if (e / "meta.json").read_text().find('"shapes": null') < 0]
    raw = (entry / "images.npy").read_bytes()
    (entry / "images.npy").write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))  # one flipped bit
    with pytest.warns(RuntimeWarning, match=f"deleting damaged .*{entry.name}.*checksum"):
        assert _cache.load(entry.name, mmap=True) is None
    assert not entry.exists()


# --------------------------------------------------------------------------- up-to test counts
def _reference_split(y, n_train, n_test, seed):
    """The documented protocol, written out: one RandomState, classes in label order."""
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(idx.size)]
        train += list(idx[:n_train])
        test += list(idx[n_train : n_train + n_test])
    return np.sort(train), np.sort(test)


def test_test_per_class_takes_up_to_n_per_class():
    y = np.repeat(np.arange(4), [10, 7, 12, 8])
    train, test = split_per_class(y, 5, 4, random_state=3)
    assert Counter(y[train]) == {c: 5 for c in range(4)}
    assert Counter(y[test]) == {0: 4, 1: 2, 2: 4, 3: 3}  # class 1 gives the 2 it has left
    ref = _reference_split(y, 5, 4, 3)
    np.testing.assert_array_equal(train, ref[0])
    np.testing.assert_array_equal(test, ref[1])
    # Same draws as the strict protocol wherever a class has enough images.
    np.testing.assert_array_equal(split_per_class(y, 5, 2, random_state=3)[1], _reference_split(y, 5, 2, 3)[1])
    # Caltech-101: 30 training and up to 50 test images from classes of 31 to 80.
    y = np.repeat(np.arange(5), [31, 80, 45, 50, 79])
    train, test = split_per_class(y, 30, 50, random_state=0)
    assert list(np.bincount(y[train])) == [30] * 5
    assert list(np.bincount(y[test])) == [1, 50, 15, 20, 49]


def test_test_per_class_errors_name_the_class():
    y = np.array([0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"class 'car' \(label 1\) has only 2 samples; train_per_class=2 "
                                         r"leaves none for testing \(test_per_class=1"):
        split_per_class(y, 2, 1, target_names=["bike", "car"])
    with pytest.raises(ValueError, match=r"class 'bike' \(label 0\) has only 3 samples; train_per_class=4 "
                                         "needs at least 4"):
        split_per_class(y, 4, 10, target_names=["bike", "car"])
    for n_test in (None, 0):  # no test set asked for: a class may be used up by training
        train, test = split_per_class(y, 2, n_test)
        assert train.size == 4 and test.size == (1 if n_test is None else 0)


def test_loaders_take_up_to_test_per_class(tmp_path):
    _make_tree(tmp_path / "pool", classes=("a", "b", "c"), per_class=6)
    for i in range(3):
        (tmp_path / "pool" / "b" / f"0{i}.png").unlink()  # b: 3 images
    kw = dict(train_per_class=2, test_per_class=3, random_state=0, cache=False)
    test = load_image_folder(tmp_path / "pool", "test", **kw)
    assert Counter(test.target) == {0: 3, 1: 1, 2: 3}
    both = load_dataset("folder", tmp_path / "pool", None, **kw)
    assert len(both.train_index) == 6 and len(both.test_index) == 7
    np.testing.assert_array_equal(both.filenames[both.test_index], test.filenames)
    with pytest.raises(ValueError, match=r"class 'b' \(label 1\) has only 3 samples; train_per_class=3 leaves none"):
        load_image_folder(tmp_path / "pool", "test", train_per_class=3, test_per_class=1, cache=False)
    # A fixed test split is subsampled to up to test_per_class per class.
    _make_tree(tmp_path / "fixed", classes=("a", "b"), splits=["train", "test"], per_class=4)
    for i in range(2):
        (tmp_path / "fixed" / "test" / "b" / f"0{i}.png").unlink()
    fixed = load_image_folder(tmp_path / "fixed", "test", train_per_class=3, test_per_class=3, cache=False)
    assert Counter(fixed.target) == {0: 3, 1: 2}
