"""load_cifar100 on a small archive in the official cifar-100-python format, built here."""

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from classicvision.datasets import CIFAR100_MD5, CIFAR100_URL, DATASETS, load_cifar100, load_dataset

FINE = [f"fine_{i}" for i in range(100)]
COARSE = [f"coarse_{i}" for i in range(20)]


def _split(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    fine = rng.integers(0, 100, n)
    return {
        b"batch_label": f"split {seed}".encode(),
        b"fine_labels": [int(v) for v in fine],
        b"coarse_labels": [int(v) // 5 for v in fine],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def _add(tf: tarfile.TarFile, name: str, obj) -> None:
    data = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(f"cifar-100-python/{name}")
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _build(folder: Path, n_train: int = 30, n_test: int = 12, meta=None) -> tuple[Path, dict]:
    """Write a tiny cifar-100-python.tar.gz: train, test and meta pickles, as Python 2 wrote them."""
    splits = {"train": _split(1, n_train), "test": _split(2, n_test)}
    meta = meta or {b"fine_label_names": [s.encode() for s in FINE],
                    b"coarse_label_names": [s.encode() for s in COARSE]}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, obj in [*splits.items(), ("meta", meta)]:
            _add(tf, name, obj)
    return path, splits


def _check(d, raw: dict, label: str, split: str) -> None:
    data = raw[b"data"]
    assert d.images.shape == (len(data), 32, 32, 3) and d.images.dtype == np.uint8
    np.testing.assert_array_equal(d.images[2, :, :, 0].ravel(), data[2, :1024])  # red plane
    np.testing.assert_array_equal(d.images[2, :, :, 2].ravel(), data[2, 2048:])  # blue plane
    np.testing.assert_array_equal(d.target, raw[f"{label}_labels".encode()])
    assert d.target.dtype == np.int64
    assert d.target_names == (FINE if label == "fine" else COARSE)
    assert d.filenames[0] == f"{split}/img_{1 if split == 'train' else 2}_0.png"
    assert d.split == split and d.label == label


def test_archive_folder_and_registry(tmp_path):
    archive, raw = _build(tmp_path / "root")
    for root in (archive, archive.parent):
        _check(load_cifar100(root, "train"), raw["train"], "fine", "train")
        _check(load_cifar100(root, "test", label="coarse"), raw["test"], "coarse", "test")
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "unpacked", filter="data")
    _check(load_cifar100(tmp_path / "unpacked", "test"), raw["test"], "fine", "test")
    _check(load_cifar100(tmp_path / "unpacked" / "cifar-100-python", "train", "coarse"),
           raw["train"], "coarse", "train")
    both = load_cifar100(archive, None)
    assert len(both.target) == 42 and both.filenames[-1].startswith("test/")
    assert "cifar100" in DATASETS
    _check(load_dataset("cifar100", archive, "test", label="coarse", max_pixels=10), raw["test"], "coarse", "test")


def test_per_class_subsampling(tmp_path):
    archive, raw = _build(tmp_path, n_train=200)
    d = load_cifar100(archive, "train", label="coarse", train_per_class=2, random_state=0)
    counts = np.bincount(d.target, minlength=20)
    assert counts.max() == 2 and set(counts) <= {0, 1, 2}
    again = load_cifar100(archive, "train", label="coarse", train_per_class=2, random_state=0)
    np.testing.assert_array_equal(d.filenames, again.filenames)


def test_errors_name_the_problem(tmp_path):
    archive, _ = _build(tmp_path / "ok")
    with pytest.raises(ValueError, match="splits 'train' and 'test'"):
        load_cifar100(archive, "val")
    with pytest.raises(ValueError, match="'fine'.*'coarse'"):
        load_cifar100(archive, "train", label="superclass")
    with pytest.raises(FileNotFoundError, match="no CIFAR-100 copy found.*download=True"):
        load_cifar100(tmp_path / "absent")
    bad_meta, _ = _build(tmp_path / "meta", meta={b"fine_label_names": [b"a", b"b"], b"coarse_label_names": []})
    with pytest.raises(ValueError, match=r"meta: expected 100 fine_label_names, got 2"):
        load_cifar100(bad_meta)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar archive")
    with pytest.raises(ValueError, match="junk.tar.gz"):
        load_cifar100(tmp_path / "junk.tar.gz")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_pickled_objects(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": FINE, "coarse_label_names": COARSE}))
    (folder / "test").write_bytes(pickle.dumps({"data": _Evil(), "fine_labels": [0]}))
    with pytest.raises(ValueError, match="test: refusing to unpickle global builtins.print"):
        load_cifar100(folder, "test")


def test_download_is_checksum_verified(tmp_path):
    src, raw = _build(tmp_path / "src")
    url = src.as_uri()  # a local file: no network here
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = tmp_path / "data"
    with pytest.raises(FileNotFoundError):
        load_cifar100(dest, "test", url=url, md5=md5)  # download=False never fetches
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_cifar100(dest, "test", download=True, url=url, md5="0" * 32)
    assert not any(dest.iterdir())  # no partial or unverified file is left
    _check(load_cifar100(dest, "test", download=True, url=url, md5=md5), raw["test"], "fine", "test")
    assert (dest / "cifar-100-python.tar.gz").is_file()
    # an existing archive is re-verified, not downloaded again
    with pytest.raises(ValueError, match="md5 is not"):
        load_cifar100(dest, "test", download=True, url=url, md5="1" * 32)
    assert CIFAR100_URL == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert CIFAR100_MD5 == "eb9058c3a382ffc7106e4002c42a8d85"
