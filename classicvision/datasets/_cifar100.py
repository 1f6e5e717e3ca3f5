"""CIFAR-100 in its official ``cifar-100-python.tar.gz`` format (and its download)."""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.utils import Bunch

from ._cifar import _as_str, _parse_batch, _unpickle, fetch_if_missing, subsampled_bunch
from ._folder import check_tar_archive
from ._split import check_per_class_counts

__all__ = ["load_cifar100", "CIFAR100_URL", "CIFAR100_MD5"]

#: Official download location of the python version of CIFAR-100 (Krizhevsky, 2009).
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
#: Its published MD5 checksum.
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

_DIR = "cifar-100-python"
_ARCHIVE = "cifar-100-python.tar.gz"
_META = "meta"
#: label kind -> (label key of the batches, name key of ``meta``, number of classes)
_LABELS = {"fine": ("fine_labels", "fine_label_names", 100), "coarse": ("coarse_labels", "coarse_label_names", 20)}


def _splits(split: str | None) -> tuple[str, ...]:
    return ("train", "test") if split is None else (split,)


def _read(raw: dict[str, bytes], split: str | None, label: str, where: str):
    missing = [b for b in (*_splits(split), _META) if b not in raw]
    if missing:
        raise ValueError(f"{where} is missing CIFAR-100 files {missing}")
    names_key, k = _LABELS[label][1:]
    meta = _unpickle(raw[_META], f"{where}/{_META}")
    target_names = [_as_str(n) for n in meta.get(names_key, [])]
    if len(target_names) != k:
        raise ValueError(f"{where}/{_META}: expected {k} {names_key}, got {len(target_names)}")
    key, _, k = _LABELS[label]
    parts = [_parse_batch(_unpickle(raw[b], f"{where}/{b}"), f"{where}/{b}", key, k) for b in _splits(split)]
    images = np.concatenate([p[0] for p in parts])
    target = np.concatenate([p[1] for p in parts])
    filenames = [f"{b}/{n}" for b, p in zip(_splits(split), parts) for n in p[2]]
    return images, target, target_names, filenames


def _read_tar(path: Path, split: str | None, label: str):
    wanted = {*_splits(split), _META}
    raw: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                parts = member.name.split("/")
                if member.isfile() and parts[-1] in wanted and (len(parts) == 1 or parts[-2] == _DIR):
                    raw[parts[-1]] = tf.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"cannot read the tar archive {path}: {exc}") from exc
    return _read(raw, split, label, str(path))


def _read_dir(folder: Path, split: str | None, label: str):
    raw = {b: (folder / b).read_bytes() for b in (*_splits(split), _META) if (folder / b).is_file()}
    return _read(raw, split, label, str(folder))


def _locate(root: Path, archive_name: str) -> tuple[str | None, Path | None]:
    """("tar" | "dir" | None, path) of the copy ``root`` is or holds."""
    if root.is_file():
        if not check_tar_archive(root):
            raise ValueError(f"{root} is not a tar archive")
        return "tar", root
    if not root.is_dir():
        return None, None
    if (root / _META).is_file() and ((root / "train").is_file() or (root / "test").is_file()):
        return "dir", root
    if (root / _DIR).is_dir():
        return "dir", root / _DIR
    for name in dict.fromkeys((archive_name, _ARCHIVE)):
        if (root / name).is_file():
            return _locate(root / name, archive_name)
    return None, None


def load_cifar100(
    root: str | os.PathLike,
    split: Literal["train", "test"] | None = "train",
    label: Literal["fine", "coarse"] = "fine",
    *,
    download: bool = False,
    url: str = CIFAR100_URL,
    md5: str | None = CIFAR100_MD5,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
    max_pixels: int | None = None,
) -> Bunch:
    """Load CIFAR-100 (Krizhevsky, 2009): 50,000 training and 10,000 test 32x32 color images.

    Reads the official python version (``cifar-100-python.tar.gz``, holding
    ``cifar-100-python/train``, ``test`` and ``meta``), from the archive itself
    or its unpacked folder, with the restricted unpickler of
    :func:`load_cifar10` (only numpy arrays, lists and bytes are rebuilt).

    Parameters
    ----------
    root : str or path-like
        The archive, the ``cifar-100-python`` folder, or a folder holding one
        of them.
    split : {"train", "test"} or None, default="train"
        ``None`` returns the 60,000 images, training ones first.
    label : {"fine", "coarse"}, default="fine"
        The 100 classes, or the 20 superclasses.
    download : bool, default=False
        When no copy is found under ``root``, download ``url`` into it (a
        folder) or to it (a path ending in ``.tar.gz``), verifying ``md5``.
        An existing archive is checked against ``md5`` instead.
    url : str, default=CIFAR100_URL
    md5 : str or None, default=CIFAR100_MD5
        Expected checksum of the download; ``None`` skips the check.
    train_per_class, test_per_class, random_state
        Per-class subsampling, as in :func:`load_image_folder`.
    max_pixels : int or None
        Accepted for :func:`load_dataset`'s sake and ignored (the images are
        already decoded).

    Returns
    -------
    Bunch
        images : (N, 32, 32, 3) ndarray of uint8
            RGB.
        target : (N,) ndarray of int64
            ``fine_labels`` (0..99) or ``coarse_labels`` (0..19).
        target_names : list of str
            ``fine_label_names`` or ``coarse_label_names`` of ``meta``.
        filenames : (N,) ndarray of str
            ``"<split>/<original file name>"``.
        split : str or None
        label : str
        train_index, test_index : ndarray of int64
            Only with ``split=None`` and per-class counts.

    Raises
    ------
    FileNotFoundError
        If no copy is found and ``download`` is False.
    ValueError
        On a checksum mismatch, an unknown split or label kind, or a damaged
        or tampered file (the message names it).
    OSError
        If the download fails.

    References
    ----------
    A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images",
    technical report, University of Toronto, 2009.
    https://www.cs.toronto.edu/~kriz/cifar.html
    """
    del max_pixels
    if split not in (None, "train", "test"):
        raise ValueError(f"CIFAR-100 has splits 'train' and 'test' (or None for both), got split={split!r}")
    if label not in _LABELS:
        raise ValueError(f"CIFAR-100 labels are 'fine' (100 classes) or 'coarse' (20 superclasses), got {label!r}")
    check_per_class_counts(train_per_class, test_per_class)
    root = Path(os.path.expanduser(os.fspath(root)))
    archive_name = url.rstrip("/").rsplit("/", 1)[-1] or _ARCHIVE
    kind, where = fetch_if_missing(
        *_locate(root, archive_name), root, archive_name, tar_kind="tar", download=download, url=url, md5=md5,
        missing=f"no CIFAR-100 copy found at {root} (expected {archive_name} or {_DIR}/)",
    )
    read = _read_tar if kind == "tar" else _read_dir
    images, target, target_names, filenames = read(where, split, label)
    return subsampled_bunch(
        images, target, target_names, filenames, split=split, train_per_class=train_per_class,
        test_per_class=test_per_class, random_state=random_state, label=label,
    )
