"""Reproducible per-class train/test splits (the Caltech-101 / 15-Scene protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["split_per_class"]

# Split names treated as "held-out" parts when a per-class count is applied to a
# fixed split (see ``select_indices``).
_TEST_LIKE = {"test", "testing", "val", "valid", "validation"}


def _check_count(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
    return int(value)


def check_per_class_counts(train_per_class, test_per_class) -> None:
    """Refuse per-class counts that are not None or a non-negative int (the loaders' own check).

    Raises
    ------
    ValueError
        ``"train_per_class must be a non-negative integer or None, got ..."``
        (or ``test_per_class``).
    """
    _check_count(train_per_class, "train_per_class")
    _check_count(test_per_class, "test_per_class")


def split_per_class(
    target: Sequence[int] | np.ndarray,
    train_per_class: int,
    test_per_class: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
    *,
    target_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a fixed number of training samples, and up to a number of test samples, per class.

    For each class, in increasing label order, the sample indices are shuffled
    with one random generator seeded by ``random_state``; the first
    ``train_per_class`` go to training and the next ``test_per_class`` (fewer
    when the class has fewer left; all the remaining ones when ``None``) to
    testing. This is the Caltech-101 protocol ("30 training images and up to
    50 test images per class"), where classes have 31 to 800 images. The same
    ``target`` and ``random_state`` always give the same split, and a class's
    draw does not depend on the counts of the other classes.

    Parameters
    ----------
    target : (n_samples,) array-like of int
        Class label of every sample.
    train_per_class : int
        Training samples per class (>= 0).
    test_per_class : int or None, default=None
        Most test samples per class; a class with fewer than
        ``train_per_class + test_per_class`` samples gives all its remaining
        ones. ``None`` takes every sample not used for training.
    random_state : int, RandomState instance or None, default=0
        Seed of the shuffling (``None`` gives a different split on every call).
    target_names : sequence of str, optional
        Class names, used to name a class in error messages.

    Returns
    -------
    train_idx : (n_train,) ndarray of int64
        Sorted indices into ``target`` of the training samples.
    test_idx : (n_test,) ndarray of int64
        Sorted indices of the test samples (disjoint from ``train_idx``).

    Raises
    ------
    ValueError
        If a count is negative or not an integer, if a class has fewer than
        ``train_per_class`` samples, or if ``test_per_class`` is positive and a
        class has no sample left after training (the message names the class
        and gives the counts).

    Notes
    -----
    With ``test_per_class=None`` (or 0) a class with exactly
    ``train_per_class`` samples contributes no test sample; that is allowed.

    Classes that have at least ``train_per_class + test_per_class`` samples
    get exactly the split they got when ``test_per_class`` was a strict
    requirement: the random stream is the same.

    Examples
    --------
    >>> import numpy as np
    >>> train, test = split_per_class(np.array([0, 0, 0, 1, 1, 1]), 2, 1)
    >>> len(train), len(test)
    (4, 2)
    >>> train, test = split_per_class(np.array([0, 0, 0, 1, 1, 1, 1, 1]), 2, 5)
    >>> len(train), len(test)  # up to 5 test samples: 1 from class 0, 3 from class 1
    (4, 4)
    """
    y = np.asarray(target)
    if y.ndim != 1:
        raise ValueError(f"target must be 1-D, got shape {y.shape}")
    n_train = _check_count(train_per_class, "train_per_class")
    if n_train is None:
        raise ValueError("train_per_class is required (a non-negative integer)")
    n_test = _check_count(test_per_class, "test_per_class")
    rng = check_random_state(random_state)
    need = n_train + 1 if n_test else n_train  # a test sample is needed only when asked for
    train_parts, test_parts = [], []
    classes, counts = np.unique(y, return_counts=True)
    for label, count in zip(classes, counts):
        if count < need:
            if target_names is not None and 0 <= int(label) < len(target_names):
                cname = f"{target_names[int(label)]!r} (label {label})"
            else:
                cname = f"label {label}"
            if count < n_train:
                why = f"train_per_class={n_train} needs at least {n_train}"
            else:
                why = (
                    f"train_per_class={n_train} leaves none for testing "
                    f"(test_per_class={n_test} asks for up to {n_test}; at least {need} needed)"
                )
            raise ValueError(f"class {cname} has only {count} samples; {why}")
        idx = np.flatnonzero(y == label)
        idx = idx[rng.permutation(idx.size)]
        train_parts.append(idx[:n_train])
        test_parts.append(idx[n_train:] if n_test is None else idx[n_train : n_train + n_test])
    empty = np.empty(0, dtype=np.int64)
    train_idx = np.sort(np.concatenate(train_parts or [empty])).astype(np.int64)
    test_idx = np.sort(np.concatenate(test_parts or [empty])).astype(np.int64)
    return train_idx, test_idx


def select_indices(
    target: np.ndarray,
    *,
    split: str | None,
    fixed: bool,
    train_per_class: int | None,
    test_per_class: int | None,
    random_state,
    target_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, dict]:
    """Which samples of a pool to return, and any extra Bunch fields.

    ``fixed`` says whether the pool is already one fixed split (``split`` named
    a split folder, or the digits' documented split). Rules:

    * no per-class counts: the whole pool;
    * fixed split: subsample it, up to ``test_per_class`` per class for a
      test-like split name (test/val...), else exactly ``train_per_class``
      (``None``: keep all);
    * pool without a fixed split and ``split`` "train"/"test": the matching part
      of :func:`split_per_class`;
    * ``split=None``: the union of both parts, with ``train_index`` and
      ``test_index`` (positions in the returned arrays) as extra fields.
    """
    n = len(target)
    per_class = train_per_class is not None or test_per_class is not None
    if not per_class:
        return np.arange(n), {}
    if fixed:
        if (split or "").lower() in _TEST_LIKE:
            if test_per_class is None:
                return np.arange(n), {}
            # Up to test_per_class per class; the same permutations (hence the
            # same draws for classes with enough samples) as training counts.
            _, idx = split_per_class(target, 0, test_per_class, random_state, target_names=target_names)
            return idx, {}
        if train_per_class is None:
            return np.arange(n), {}
        idx, _ = split_per_class(target, train_per_class, 0, random_state, target_names=target_names)
        return idx, {}
    if train_per_class is None:
        raise ValueError(
            "test_per_class needs train_per_class too when the data has no fixed split"
        )
    train_idx, test_idx = split_per_class(
        target, train_per_class, test_per_class, random_state, target_names=target_names
    )
    if split is None:
        union = np.sort(np.concatenate([train_idx, test_idx]))
        pos = np.searchsorted(union, train_idx), np.searchsorted(union, test_idx)
        return union, {"train_index": pos[0].astype(np.int64), "test_index": pos[1].astype(np.int64)}
    if split == "train":
        return train_idx, {}
    if split == "test":
        return test_idx, {}
    raise ValueError(
        f"split={split!r} is not available: the data has no fixed splits, so only "
        "'train' and 'test' (made by train_per_class/test_per_class) or None are valid"
    )
