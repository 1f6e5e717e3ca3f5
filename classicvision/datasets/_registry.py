"""Datasets by name: ``load_dataset("cifar10", root)`` and the ``DATASETS`` table."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from sklearn.utils import Bunch

from ._cifar import load_cifar10
from ._cifar100 import load_cifar100
from ._decode import resolve_max_pixels
from ._digits import load_digits_images
from ._folder import load_image_folder
from ._imagenet import load_imagenet

__all__ = ["DATASETS", "dataset_root", "load_dataset", "load_scene15"]

#: Name -> one-line description of every dataset :func:`load_dataset` knows.
DATASETS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 handwritten digits: 1,797 gray images, 10 classes, "
    "fixed stratified split 1,198 train / 599 test (no download)",
    "cifar10": "CIFAR-10 (Krizhevsky 2009): 32x32 RGB, 10 classes, 50,000 train / 10,000 test; "
    "official python archive (downloadable) or an ImageFolder copy",
    "cifar100": "CIFAR-100 (Krizhevsky 2009): 32x32 RGB, 100 fine classes (label='coarse': 20 superclasses), "
    "50,000 train / 10,000 test; official python archive cifar-100-python.tar.gz (downloadable)",
    "scene15": "15-Scene (Lazebnik et al. 2006): ~250 px grayscale scenes, 15 classes, "
    "ImageFolder archive; 100 train per class, the rest test",
    "caltech101": "Caltech-101 (Fei-Fei, Fergus & Perona 2004): about 300x200 px colour and gray objects, "
    "102 classes (with BACKGROUND_Google) of 31-80 images, no fixed split: the protocol is 30 training "
    "images per class and up to 50 of the rest for testing (train_per_class=30, test_per_class=50)",
    "imagenet": "ImageNet / ILSVRC layout (Russakovsky et al. 2015): root/train/<wnid>/*.JPEG and root/val/ "
    "(class subfolders, or flat files with the ILSVRC ground-truth file); split 'test' reads val/; "
    "lazy by default (images decoded on access)",
    "folder": "any ImageFolder directory or .tar/.tar.gz archive: <root>[/<split>]/<class>/<file>",
}

_SCENE15_COPIES = ("scene15.tar.gz", "scene15.tgz", "scene15.tar", "scene15")
_CALTECH101_COPIES = ("caltech101.tar.gz", "caltech101.tgz", "caltech101.tar", "caltech101")


def _find_copy(path: Path, names: tuple[str, ...]) -> Path:
    """``path`` itself, or the first of ``names`` inside the folder ``path``."""
    if path.is_dir():
        for name in names:
            if (path / name).exists():
                return path / name
    return path


def dataset_root(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where dataset ``name`` is read from: ``root``, else ``$CLASSICVISION_DATA``.

    The one resolver the named loaders use (:func:`load_dataset`,
    :func:`load_scene15`); ``~`` is expanded. The path is not checked for
    existence (the loaders report a missing path with their own message).

    Parameters
    ----------
    name : str
        The dataset's name, used in the error message (e.g. ``"cifar10"``).
    root : str, path-like or None, default=None
        The dataset's archive or folder, or the folder holding it.

    Returns
    -------
    path : pathlib.Path
        ``root`` (or ``$CLASSICVISION_DATA``) with ``~`` expanded.

    Raises
    ------
    ValueError
        ``root`` is None and ``$CLASSICVISION_DATA`` is unset or empty.

    Examples
    --------
    >>> from classicvision.datasets import dataset_root
    >>> dataset_root("cifar10", "/data/cifar10.tar.gz").name
    'cifar10.tar.gz'
    """
    if root is None:
        env = os.environ.get("CLASSICVISION_DATA")
        if not env:
            raise ValueError(
                f"dataset {name!r} needs root= (its archive or the folder holding it), "
                "or the CLASSICVISION_DATA environment variable"
            )
        root = env
    return Path(os.path.expanduser(os.fspath(root)))


def load_scene15(root: str | os.PathLike | None = None, split: str | None = "train", **kwargs) -> Bunch:
    """Load the 15-Scene dataset (Lazebnik, Schmid and Ponce, 2006) from an ImageFolder copy.

    Parameters
    ----------
    root : str, path-like or None
        ``scene15.tar.gz`` (or ``.tgz`` / ``.tar``), an unpacked ``scene15``
        folder, or a folder holding one of them. ``None`` uses
        ``$CLASSICVISION_DATA``.
    split : {"train", "test"} or None, default="train"
        The archive's fixed split (100 training images per class, 2,985 test
        images in the project's copy); ``None`` pools both, e.g. to redraw the
        protocol's random splits with ``train_per_class=100``.
    **kwargs
        Passed to :func:`load_image_folder` (``train_per_class``,
        ``test_per_class``, ``random_state``, ``on_error``, ``cache``, ``n_jobs``,
        ``max_pixels``, ``max_member_bytes``).

    Returns
    -------
    Bunch
        images : list of (H, W) ndarrays of uint8
            Grayscale, sizes vary (about 200-300 px a side).
        target : (N,) ndarray of int64
        target_names : list of str
            The 15 category folder names, sorted.
        filenames : (N,) ndarray of str
        split : str or None

    References
    ----------
    S. Lazebnik, C. Schmid, J. Ponce, "Beyond Bags of Features: Spatial Pyramid
    Matching for Recognizing Natural Scene Categories", CVPR 2006.
    https://doi.org/10.1109/CVPR.2006.68
    """
    path = _find_copy(dataset_root("scene15", root), _SCENE15_COPIES)
    return load_image_folder(path, split, **kwargs)


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    split: str | None = "train",
    *,
    max_pixels: int | None = None,
    **kwargs,
) -> Bunch:
    """Load a dataset by name (the names of :data:`DATASETS`).

    Parameters
    ----------
    name : {"digits", "cifar10", "cifar100", "scene15", "caltech101", "imagenet", "folder"}
    root : str, path-like or None, default=None
        Where the data are (see each loader); ignored for "digits"; for the
        others ``None`` falls back on ``$CLASSICVISION_DATA``.
    split : str or None, default="train"
    max_pixels : int or None, default=None
        Largest width x height accepted per decoded image, checked on each
        file's header before decoding (``None``: :data:`MAX_IMAGE_PIXELS`).
        Ignored for "digits", CIFAR-100 and CIFAR-10's official (already
        decoded) formats.
    **kwargs
        Passed to the loader (:func:`load_digits_images`, :func:`load_cifar10`,
        :func:`load_cifar100` (e.g. ``label="coarse"``), :func:`load_scene15`,
        :func:`load_imagenet`, :func:`load_image_folder`): e.g.
        ``train_per_class`` / ``test_per_class`` (exactly that many training
        and up to that many test images per class), ``max_member_bytes``.
        ``cache``, ``n_jobs``, ``on_error`` and ``max_member_bytes`` are
        accepted and ignored for "digits".

    Returns
    -------
    Bunch
        images, target, target_names, filenames (see the loaders).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names and close
        matches), a missing ``root``, or an invalid ``max_pixels``.
    """
    if not isinstance(name, str) or name not in DATASETS:
        close = difflib.get_close_matches(str(name).lower(), list(DATASETS), n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}{hint}")
    resolve_max_pixels(max_pixels)  # an invalid limit is an error for every dataset
    if name == "digits":
        # Decoding options mean nothing for in-memory digits; accept them so that
        # callers can pass one set of options to every dataset.
        for option in ("cache", "n_jobs", "on_error", "max_member_bytes"):
            kwargs.pop(option, None)
        return load_digits_images(split=split, **kwargs)
    kwargs["max_pixels"] = max_pixels
    if name == "scene15":
        return load_scene15(root, split, **kwargs)
    if name == "caltech101":
        path = _find_copy(dataset_root(name, root), _CALTECH101_COPIES)
        return load_image_folder(path, split, **kwargs)
    path = dataset_root(name, root)
    if name == "imagenet":
        return load_imagenet(path, "val" if split == "test" else split, **kwargs)
    if name == "cifar10":
        return load_cifar10(path, split, **kwargs)
    if name == "cifar100":
        return load_cifar100(path, split, **kwargs)
    return load_image_folder(path, split, **kwargs)
