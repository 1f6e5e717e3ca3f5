"""scikit-learn's bundled 8x8 digits as ``uint8`` images with a fixed split."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

from ._split import select_indices

__all__ = ["load_digits_images"]


def load_digits_images(
    *,
    split: str | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
) -> Bunch:
    """The 1,797 handwritten digits bundled with scikit-learn, as 8x8 ``uint8`` images.

    Needs no download: the data ship inside scikit-learn
    (:func:`sklearn.datasets.load_digits`, the UCI optical digits test set).

    Parameters
    ----------
    split : {"train", "test"} or None, default=None
        ``None`` returns all 1,797 images. ``"train"`` / ``"test"`` return a fixed
        stratified split with one third held out: ``train_test_split(
        np.arange(1797), test_size=1/3, stratify=target, random_state=0)``, each
        part's indices sorted, giving 1,198 training and 599 test images.
    train_per_class, test_per_class : int or None, default=None
        Optional per-class subsampling (see :func:`split_per_class`): on a fixed
        split, ``train_per_class`` subsamples "train" and ``test_per_class``
        subsamples "test" (up to that many per class); with ``split=None`` they draw a per-class split of all
        1,797 images, returned with ``train_index`` / ``test_index``.
    random_state : int, RandomState instance or None, default=0
        Seed of the per-class draws (the fixed split does not depend on it).

    Returns
    -------
    Bunch
        images : (N, 8, 8) ndarray of uint8
            Grayscale; the original 0..16 values scaled to 0..255 and rounded.
        target : (N,) ndarray of int64
            Digit 0..9.
        target_names : list of str
            ``['0', '1', ..., '9']``.
        filenames : (N,) ndarray of str
            ``"digits/<index>"``, the position in scikit-learn's array.
        split : str or None
        train_index, test_index : ndarray of int64
            Only with ``split=None`` and per-class counts.

    Raises
    ------
    ValueError
        If ``split`` is not None, "train" or "test".

    Examples
    --------
    >>> d = load_digits_images(split="test")
    >>> d.images.shape, d.images.dtype
    ((599, 8, 8), dtype('uint8'))
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"digits has splits 'train' and 'test' (or None for all), got split={split!r}")
    raw = load_digits()
    images = np.round(raw.images * (255.0 / 16.0)).astype(np.uint8)
    target = raw.target.astype(np.int64)
    index = np.arange(len(target))
    if split is not None:
        train_idx, test_idx = train_test_split(
            index, test_size=1 / 3, stratify=target, random_state=0
        )
        index = np.sort(train_idx if split == "train" else test_idx)
    chosen, extra = select_indices(
        target[index],
        split=split,
        fixed=split is not None,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        random_state=random_state,
        target_names=[str(d) for d in range(10)],
    )
    index = index[chosen]
    return Bunch(
        images=np.ascontiguousarray(images[index]),
        target=target[index],
        target_names=[str(name) for name in raw.target_names],
        filenames=np.asarray([f"digits/{i}" for i in index], dtype=str),
        split=split,
        **extra,
    )
