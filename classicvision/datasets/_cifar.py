"""CIFAR-10 in its official ``cifar-10-python.tar.gz`` format (and its download)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.utils import Bunch

from ._folder import check_tar_archive, load_image_folder
from ._split import check_per_class_counts, select_indices

__all__ = ["load_cifar10", "CIFAR10_URL", "CIFAR10_MD5"]

#: Official download location of the python version of CIFAR-10 (Krizhevsky, 2009).
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: Its published MD5 checksum.
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

_BATCH_DIR = "cifar-10-batches-py"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCHES = ("test_batch",)
_META = "batches.meta"
_OFFICIAL_FILES = frozenset(_TRAIN_BATCHES + _TEST_BATCHES + (_META,))
# Folder / archive names of an ImageFolder copy that ``load_cifar10`` hands to
# ``load_image_folder`` (like the project's shared JPEG copy ``cifar10.tar.gz``).
_FOLDER_COPIES = ("cifar10.tar.gz", "cifar10.tgz", "cifar10.tar", "cifar10")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays, dtypes and scalars.

    The CIFAR batches are plain dicts of bytes, lists and ndarrays; any other
    global (a class, a function such as ``os.system``) is refused, so a
    tampered file cannot run code. The allowed globals are named by module and
    name, as pickles name them (numpy's array and scalar reconstructors under
    numpy 1's ``numpy.core`` and numpy 2's ``numpy._core``), and resolved by
    :class:`pickle.Unpickler` itself. ``_codecs.encode`` is allowed because
    protocol-2 pickles written by Python 3 use it for ``bytes`` values.
    """

    _ALLOWED = frozenset(
        [(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
         for name in ("_reconstruct", "scalar")]
        + [("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype")]
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: CIFAR batches only "
                "contain numpy arrays, lists and bytes"
            )
        return super().find_class(module, name)


def _unpickle(data: bytes, name: str) -> dict:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"{name}: not a readable CIFAR pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{name}: expected a pickled dict, got {type(obj).__name__}")
    # Python 2 pickles give bytes keys; accept str keys from re-pickled copies too.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _as_str(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _parse_batch(
    d: dict, name: str, label_key: str = "labels", n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One unpickled CIFAR batch -> (N, 32, 32, 3) uint8 images, labels, file names.

    ``label_key`` / ``n_classes``: ``"labels"`` / 10 for CIFAR-10,
    ``"fine_labels"`` / 100 or ``"coarse_labels"`` / 20 for CIFAR-100.
    """
    if "data" not in d or label_key not in d:
        raise ValueError(f"{name}: CIFAR batch without 'data' and {label_key!r} entries (keys: {sorted(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{name}: 'data' must be a (N, 3072) uint8 array, got {data.shape} {data.dtype}")
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"{name}: {data.shape[0]} images but {labels.shape[0]} {label_key}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name}: {label_key} outside 0..{n_classes - 1}")
    names = [_as_str(f) for f in d.get("filenames", [])]
    if len(names) != data.shape[0]:
        names = [f"{name}/{i}" for i in range(data.shape[0])]
    # Rows are 1024 red, 1024 green, 1024 blue values of a 32x32 image, row-major.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels, names


def _batches_for(split: str | None) -> tuple[str, ...]:
    if split == "train":
        return _TRAIN_BATCHES
    if split == "test":
        return _TEST_BATCHES
    return _TRAIN_BATCHES + _TEST_BATCHES


def _read_official(raw: dict[str, bytes], split: str | None, where: str):
    missing = [b for b in _batches_for(split) + (_META,) if b not in raw]
    if missing:
        raise ValueError(f"{where} is missing CIFAR-10 files {missing}")
    meta = _unpickle(raw[_META], f"{where}/{_META}")
    target_names = [_as_str(n) for n in meta.get("label_names", [])]
    if len(target_names) != 10:
        raise ValueError(f"{where}/{_META}: expected 10 label_names, got {len(target_names)}")
    parts = [_parse_batch(_unpickle(raw[b], f"{where}/{b}"), f"{where}/{b}") for b in _batches_for(split)]
    images = np.concatenate([p[0] for p in parts])
    target = np.concatenate([p[1] for p in parts])
    filenames = [f"{b}/{n}" for b, p in zip(_batches_for(split), parts) for n in p[2]]
    return images, target, target_names, filenames


def _tar_is_official(path: Path) -> bool:
    """Peek at the first members of an archive: official CIFAR batches or not."""
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for i, member in enumerate(tf):
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if _BATCH_DIR in parts or (parts and parts[-1] in _OFFICIAL_FILES):
                    return True
                if i >= 16:
                    return False
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"cannot read the tar archive {path}: {exc}") from exc
    return False


def _read_official_tar(path: Path, split: str | None):
    wanted = set(_batches_for(split)) | {_META}
    raw: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:
                    raw[base] = tf.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"cannot read the tar archive {path}: {exc}") from exc
    return _read_official(raw, split, str(path))


def _read_official_dir(folder: Path, split: str | None):
    raw = {}
    for name in _batches_for(split) + (_META,):
        f = folder / name
        if f.is_file():
            raw[name] = f.read_bytes()
    return _read_official(raw, split, str(folder))


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: str | os.PathLike, *, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, verifying its MD5 checksum.

    The data go to ``dest + ".part"`` first and are renamed to ``dest`` only
    once complete and verified, so a failed or tampered download never leaves
    a file that looks valid.

    Parameters
    ----------
    url : str
        http(s) URL.
    dest : str or path-like
        Final file path (its folder is created).
    md5 : str or None
        Expected hex digest; ``None`` skips the check.
    timeout : float, default=60
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    ValueError
        On a checksum mismatch (the partial file is deleted).
    OSError
        When the download fails (network or HTTP error).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as fh:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                fh.write(block)
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise OSError(f"download of {url} failed: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    if md5 is not None and digest != md5.lower():
        part.unlink(missing_ok=True)
        raise ValueError(
            f"checksum mismatch for {url}: expected md5 {md5}, got {digest}; "
            "the downloaded file was deleted"
        )
    os.replace(part, dest)
    return dest


def load_cifar10(
    root: str | os.PathLike,
    split: Literal["train", "test"] | None = "train",
    *,
    download: bool = False,
    url: str = CIFAR10_URL,
    md5: str | None = CIFAR10_MD5,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
    **folder_kwargs,
) -> Bunch:
    """Load CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test 32x32 color images.

    Reads the official python version (``cifar-10-python.tar.gz``, holding
    ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
    ``batches.meta``), from the archive itself or from its unpacked folder. An
    ImageFolder copy (e.g. ``cifar10/{train,test}/<class>/NNNN.jpg`` in a tar
    archive) is handed to :func:`load_image_folder`.

    Parameters
    ----------
    root : str or path-like
        The archive, the ``cifar-10-batches-py`` folder, or a folder containing
        one of them (or an ImageFolder copy named ``cifar10.tar.gz``, ``cifar10.tgz``,
        ``cifar10.tar`` or ``cifar10/``).
    split : {"train", "test"} or None, default="train"
        ``None`` returns the 60,000 images, training ones first.
    download : bool, default=False
        When no copy is found under ``root``, download ``url`` into it (a
        folder) or to it (a path ending in ``.tar.gz``), verifying ``md5``.
        An existing archive is checked against ``md5`` instead.
    url : str, default=CIFAR10_URL
        Download location (overridable, e.g. for a mirror or a test server).
    md5 : str or None, default=CIFAR10_MD5
        Expected checksum of the download; ``None`` skips the check.
    train_per_class, test_per_class, random_state
        Per-class subsampling, as in :func:`load_image_folder`.
    **folder_kwargs
        ``cache``, ``n_jobs``, ``on_error``, ``max_pixels``, ``max_member_bytes``,
        ``lazy``, ``max_side``: passed to :func:`load_image_folder` for an
        ImageFolder copy (the official format needs no decoding or cache, and
        cannot be read lazily: ``lazy=True`` on it is a ``ValueError``).

    Returns
    -------
    Bunch
        images : (N, 32, 32, 3) ndarray of uint8
            RGB.
        target : (N,) ndarray of int64
        target_names : list of str
            ``['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
            'horse', 'ship', 'truck']`` (from ``batches.meta``).
        filenames : (N,) ndarray of str
            ``"<batch>/<original file name>"``.
        split : str or None
        train_index, test_index : ndarray of int64
            Only with ``split=None`` and per-class counts.

    Raises
    ------
    FileNotFoundError
        If no copy is found and ``download`` is False.
    ValueError
        On a checksum mismatch, an unknown split, or a damaged or tampered
        batch file (unpickling only rebuilds numpy arrays; anything else is
        refused).
    OSError
        If the download fails.

    References
    ----------
    A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images",
    technical report, University of Toronto, 2009.
    https://www.cs.toronto.edu/~kriz/cifar.html
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"CIFAR-10 has splits 'train' and 'test' (or None for both), got split={split!r}")
    check_per_class_counts(train_per_class, test_per_class)
    unknown = set(folder_kwargs) - {"cache", "n_jobs", "on_error", "max_pixels", "max_member_bytes", "lazy",
                                    "max_side"}
    if unknown:
        raise TypeError(f"load_cifar10() got unexpected keyword arguments {sorted(unknown)}")
    root = Path(os.path.expanduser(os.fspath(root)))
    archive_name = url.rstrip("/").rsplit("/", 1)[-1] or "cifar-10-python.tar.gz"

    kind, where = _locate(root, archive_name, download)
    kind, where = fetch_if_missing(
        kind, where, root, archive_name, tar_kind="official_tar", download=download, url=url, md5=md5,
        missing=f"no CIFAR-10 copy found at {root} (expected {archive_name}, {_BATCH_DIR}/ or an ImageFolder copy)",
    )

    if kind == "folder":
        return load_image_folder(
            where,
            split,
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            random_state=random_state,
            **folder_kwargs,
        )
    if folder_kwargs.get("lazy"):
        raise ValueError(f"lazy=True reads image files one by one; {where} is CIFAR-10's official (pickled "
                         "batches) format, which is decoded whole: use an ImageFolder copy (folder or plain .tar)")
    if kind == "official_tar":
        images, target, target_names, filenames = _read_official_tar(where, split)
    else:
        images, target, target_names, filenames = _read_official_dir(where, split)
    return subsampled_bunch(
        images, target, target_names, filenames, split=split, train_per_class=train_per_class,
        test_per_class=test_per_class, random_state=random_state,
    )


def fetch_if_missing(
    kind: str | None, where: Path | None, root: Path, archive_name: str, *, tar_kind: str, download: bool,
    url: str, md5: str | None, missing: str,
) -> tuple[str, Path]:
    """The copy found (``kind``, ``where``), checked against ``md5``, or the one downloaded.

    An archive found (``kind == tar_kind``) is verified when ``download``; with
    nothing found (``kind`` None), ``url`` is downloaded into the folder
    ``root`` (or to ``root`` when it ends in ``.tar.gz``, ``.tgz``, ``.tar``)
    when ``download``, else ``FileNotFoundError(missing + ...)`` is raised.
    """
    if kind == tar_kind and download and md5 is not None and _md5(where) != md5.lower():
        raise ValueError(f"{where} exists but its md5 is not {md5}; delete it to download a fresh copy")
    if kind is not None:
        return kind, where
    if not download:
        raise FileNotFoundError(f"{missing}; pass download=True to fetch it")
    dest = root if root.name.endswith((".tar.gz", ".tgz", ".tar")) else root / archive_name
    download_file(url, dest, md5=md5)
    return tar_kind, dest


def subsampled_bunch(images, target, target_names, filenames, *, split, train_per_class, test_per_class,
                     random_state, **fields) -> Bunch:
    """The loaders' Bunch of an official CIFAR pool, subsampled per class (:func:`select_indices`)."""
    chosen, extra = select_indices(
        target,
        split=split,
        fixed=split is not None,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        random_state=random_state,
        target_names=target_names,
    )
    if len(chosen) != len(target):
        images = images[chosen]
        target = target[chosen]
        filenames = [filenames[i] for i in chosen]
    return Bunch(
        images=np.ascontiguousarray(images),
        target=target,
        target_names=target_names,
        filenames=np.asarray(filenames, dtype=str),
        split=split,
        **fields,
        **extra,
    )


def _locate(root: Path, archive_name: str, download: bool) -> tuple[str | None, Path | None]:
    """What ``root`` holds: ("official_tar" | "official_dir" | "folder" | None, path).

    A folder with unrelated subfolders counts as an ImageFolder copy only when
    ``download`` is False (with ``download=True`` the archive is fetched into it).
    """
    if root.is_file():
        if not check_tar_archive(root):
            raise ValueError(f"{root} is not a tar archive")
        return ("official_tar" if _tar_is_official(root) else "folder"), root
    if not root.is_dir():
        return None, None
    if (root / "data_batch_1").is_file() or (root / "test_batch").is_file():
        return "official_dir", root
    if (root / _BATCH_DIR).is_dir():
        return "official_dir", root / _BATCH_DIR
    for name in dict.fromkeys((archive_name, "cifar-10-python.tar.gz")):
        if (root / name).is_file():
            return _locate(root / name, archive_name, download)
    for name in _FOLDER_COPIES:
        if (root / name).exists():
            return "folder", root / name
    if download:
        return None, None
    has_subfolders = any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())
    return ("folder", root) if has_subfolders else (None, None)
