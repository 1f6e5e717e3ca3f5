"""The ImageNet (ILSVRC) folder layout: ``train/<wnid>/*.JPEG`` and ``val/``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.utils import Bunch

from ._decode import IMAGE_EXTENSIONS, resolve_max_pixels
from ._folder import _assemble, _drop_unreadable, _run_chunks, load_image_folder
from ._lazy import _refuse_skip
from ._split import check_per_class_counts, select_indices

__all__ = ["load_imagenet", "GROUND_TRUTH_NAMES", "SYNSET_NAMES"]

#: File names looked for (in ``val/``, then in the root, then in ``root/data``)
#: when ``val/`` holds flat files and no ``ground_truth=`` is given.
GROUND_TRUTH_NAMES = (
    "ILSVRC2010_validation_ground_truth.txt",
    "ILSVRC2012_validation_ground_truth.txt",
    "validation_ground_truth.txt",
    "val_ground_truth.txt",
    "ground_truth.txt",
)

#: Synset list files looked for in the root (one wnid per line, first token).
SYNSET_NAMES = ("synsets.txt", "LOC_synset_mapping.txt", "synset_words.txt", "wnids.txt")


def _find(folders: Sequence[Path], names: Sequence[str]) -> Path | None:
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of every non-blank line of a text file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    return [(k, line.strip()) for k, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_synsets(path: str | os.PathLike) -> list[str]:
    """The wnids of a synset list file, in file order (the first token of each line).

    Parameters
    ----------
    path : str or path-like
        E.g. ILSVRC's ``synsets.txt`` or ``LOC_synset_mapping.txt``
        (``n01440764 tench, Tinca tinca``).

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If the file is empty or repeats a wnid (naming the file and line).
    """
    path = Path(path)
    seen: dict[str, int] = {}
    for k, line in _read_lines(path):
        wnid = line.split()[0]
        if wnid in seen:
            raise ValueError(f"{path}, line {k}: synset {wnid!r} repeats line {seen[wnid]}")
        seen[wnid] = k
    if not seen:
        raise ValueError(f"{path}: no synsets (the file is empty)")
    return list(seen)


def read_ground_truth(path: str | os.PathLike, n_classes: int) -> np.ndarray:
    """0-based labels of an ILSVRC ground-truth file (one 1-based label per line).

    Parameters
    ----------
    path : str or path-like
        E.g. ``ILSVRC2010_validation_ground_truth.txt``: line ``k`` is the label
        of the ``k``-th validation file in sorted name order.
    n_classes : int
        Labels must lie in ``1..n_classes``.

    Returns
    -------
    (N,) ndarray of int64
        ``label - 1``.

    Raises
    ------
    ValueError
        For a line that is not an integer or a label out of range, naming the
        file and line.
    """
    path = Path(path)
    lines = _read_lines(path)
    labels = np.empty(len(lines), dtype=np.int64)
    for j, (k, text) in enumerate(lines):
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{path}, line {k}: {text[:40]!r} is not an integer label") from None
        if not 1 <= value <= n_classes:
            raise ValueError(
                f"{path}, line {k}: label {value} is out of range 1..{n_classes} "
                f"(labels are 1-based indices into the {n_classes} classes)"
            )
        labels[j] = value - 1
    return labels


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith(".") and e.name != "__MACOSX")


def _class_list(root: Path, synsets) -> tuple[list[str], str]:
    """The classes in label order, and where they came from (for messages)."""
    if synsets is not None and not isinstance(synsets, (str, os.PathLike)):
        names = [str(s) for s in synsets]
        if len(set(names)) != len(names) or not names:
            raise ValueError("synsets must be a non-empty list of distinct wnids, or a file")
        return names, "the synsets= list"
    path = Path(synsets) if synsets is not None else _find([root], SYNSET_NAMES)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"synset list file not found: {path}")
        return read_synsets(path), str(path)
    if (root / "train").is_dir():
        names = _subfolders(root / "train")
        if names:
            return names, f"the class folders of {root / 'train'}"
    if (root / "val").is_dir():
        names = _subfolders(root / "val")
        if names:
            return names, f"the class folders of {root / 'val'}"
    raise ValueError(
        f"no class list for {root}: expected train/<wnid>/ folders, val/<wnid>/ folders, or a "
        f"synset list file ({', '.join(SYNSET_NAMES)}; or pass synsets=)"
    )


def _remap(bunch: Bunch, classes: list[str], where: str, folder: Path) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    missing = [c for c in bunch.target_names if c not in index]
    if missing:
        raise ValueError(
            f"class folder(s) {missing[:5]} of {folder} are not in {where} ({len(classes)} classes)"
        )
    lookup = np.array([index[c] for c in bunch.target_names], dtype=np.int64)
    return lookup[bunch.target]


def _flat_val(val: Path, root: Path, classes: list[str], ground_truth, max_side, max_pixels, rgb):
    from ._lazy import LazyImages

    entries = []
    with os.scandir(val) as it:
        for e in it:
            if e.name.startswith(".") or not e.is_file() or not e.name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            st = e.stat()
            entries.append((e.name, st.st_size, st.st_mtime_ns))
    if not entries:
        raise ValueError(f"no images in {val} (neither class subfolders nor image files)")
    entries.sort()
    if ground_truth is None:
        gt = _find([val, root, root / "data"], GROUND_TRUTH_NAMES)
        if gt is None:
            raise ValueError(
                f"{val} holds {len(entries)} images without class subfolders, and no ground-truth "
                f"file was found in {val}, {root} or {root / 'data'} (looked for "
                f"{', '.join(GROUND_TRUTH_NAMES)}); pass ground_truth="
            )
    else:
        gt = Path(os.path.expanduser(os.fspath(ground_truth)))
        if not gt.is_file():
            raise FileNotFoundError(f"ground-truth file not found: {gt}")
    labels = read_ground_truth(gt, len(classes))
    if len(labels) != len(entries):
        raise ValueError(
            f"{gt} has {len(labels)} labels but {val} holds {len(entries)} images; line k labels "
            "the k-th image in sorted file-name order, so the counts must match"
        )
    names = [n for n, _, _ in entries]
    images = LazyImages._from_listing(val, names, [s for _, s, _ in entries], [m for _, _, m in entries],
                                      max_side=max_side, max_pixels=max_pixels, rgb=rgb)
    return images, labels, names


def load_imagenet(
    root: str | os.PathLike,
    split: Literal["train", "val"] = "train",
    *,
    lazy: bool = True,
    max_side: int | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
    ground_truth: str | os.PathLike | None = None,
    synsets: str | os.PathLike | Sequence[str] | None = None,
    rgb: bool = True,
    max_pixels: int | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    n_jobs: int | None = -1,
    cache: bool = True,
    max_member_bytes: int | None = None,
) -> Bunch:
    """Load an ImageNet (ILSVRC) style dataset: ``train/<wnid>/*.JPEG`` and ``val/``.

    ``val/`` holds either class subfolders (``val/<wnid>/*.JPEG``), or the
    flat ILSVRC files (``ILSVRC2010_val_00000001.JPEG`` ...) with a
    ground-truth file: one 1-based integer label per line, line ``k`` for
    the ``k``-th file in sorted name order, as
    ``ILSVRC2010_validation_ground_truth.txt``. Labels index the classes in
    the order of a synset list file (one wnid per line, first token, as
    ILSVRC's ``synsets.txt`` / ``LOC_synset_mapping.txt``) when there is
    one, else the sorted wnid folder names of ``train/``; both splits use the
    same classes, so their labels agree.

    Parameters
    ----------
    root : str or path-like
        The folder holding ``train/`` and/or ``val/``.
    split : {"train", "val"}, default="train"
    lazy : bool, default=True
        Return the images as a :class:`LazyImages` (decoded on access); with
        ``False`` every image is decoded now (``n_jobs`` threads) into a list
        or one array.
    max_side : int or None, default=None
        Downscale images whose longer side is larger (area interpolation).
    train_per_class : int or None, default=None
        ``split="train"``: exactly this many images per class (``None``: all).
    test_per_class : int or None, default=None
        ``split="val"``: up to this many images per class (``None``: all).
        The count of the other split is ignored, so one set of options serves
        both.
    random_state : int, RandomState instance or None, default=0
        Seed of the per-class draws.
    ground_truth : str, path-like or None, default=None
        The ground-truth file of a flat ``val/``; ``None`` looks in ``val/``,
        ``root`` and ``root/data`` for the names in :data:`GROUND_TRUTH_NAMES`.
    synsets : str, path-like, sequence of str or None, default=None
        The class list (a synset file, or the wnids); ``None`` looks in
        ``root`` for the names in :data:`SYNSET_NAMES`.
    rgb : bool, default=True
        Replicate grayscale JPEGs (about 2% of ILSVRC) to three channels.
    max_pixels : int or None, default=None
        Largest width x height accepted per image (header check at decoding).
    on_error : {"raise", "skip"}, default="raise"
        ``lazy=False``: leave unreadable files out with a warning
        (``"skip"``). Lazily a file that fails raises when accessed, and
        ``"skip"`` is refused (``ValueError``).
    n_jobs : int or None, default=-1
        Decoding threads with ``lazy=False``.
    cache : bool, default=True
        Accepted for :func:`load_dataset`'s common options; ImageNet-size
        data are not cached decoded.
    max_member_bytes : int or None, default=None
        Accepted for :func:`load_dataset`'s common options (folders only).

    Returns
    -------
    Bunch
        images : LazyImages, or (``lazy=False``) list of (H, W, 3) ndarrays / (N, H, W, 3) ndarray of uint8
        target : (N,) ndarray of int64
            Index into ``target_names``.
        target_names : list of str
            The wnids in label order (every class, also those without images).
        filenames : (N,) ndarray of str
            Relative to the split folder (``n01440764/n01440764_10026.JPEG``,
            ``ILSVRC2010_val_00000001.JPEG``).
        split : str

    Raises
    ------
    FileNotFoundError
        If ``root``, the split folder, or a named ground-truth / synset file is missing.
    ValueError
        For a ground-truth line that is not an integer or out of range (naming
        the file and line), a label count that differs from the number of
        validation images, a class folder not in the synset list, or no
        ground-truth file for a flat ``val/``.

    References
    ----------
    O. Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge",
    IJCV 115(3), 2015. https://doi.org/10.1007/s11263-015-0816-y

    Examples
    --------
    >>> data = load_imagenet("/data/ILSVRC2010", "val", max_side=300)  # doctest: +SKIP
    >>> len(data.images), data.images[0].shape  # doctest: +SKIP
    (50000, (300, 400, 3))
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val' (load_dataset maps 'test' to 'val'), got {split!r}")
    check_per_class_counts(train_per_class, test_per_class)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if lazy:
        _refuse_skip(on_error)
    if max_pixels is not None:
        resolve_max_pixels(max_pixels)
    root = Path(os.path.expanduser(os.fspath(root)))
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet root folder not found: {root}")
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no {split}/ folder in {root} (expected train/<wnid>/*.JPEG and val/)")
    classes, where = _class_list(root, synsets)
    if _subfolders(folder):
        bunch = load_image_folder(folder, None, lazy=True, max_side=max_side, max_pixels=max_pixels, rgb=rgb)
        images = bunch.images
        target = _remap(bunch, classes, where, folder)
        names = list(bunch.filenames)
    else:
        if split == "train":
            raise ValueError(f"{folder} has no class subfolders; expected train/<wnid>/*.JPEG")
        images, target, names = _flat_val(folder, root, classes, ground_truth, max_side, max_pixels, rgb)
    chosen, _ = select_indices(
        target,
        split="train" if split == "train" else "val",
        fixed=True,
        train_per_class=train_per_class if split == "train" else None,
        test_per_class=test_per_class if split == "val" else None,
        random_state=random_state,
        target_names=classes,
    )
    if len(chosen) != len(target):
        images, target, names = images[chosen], target[chosen], [names[i] for i in chosen]
    if not lazy:
        decoded = _run_chunks(images._decode_or_message, list(range(len(images))), n_jobs)
        decoded, names, target, _, _ = _drop_unreadable(folder, decoded, names, target, {}, on_error)
        images = _assemble(decoded)
    return Bunch(
        images=images,
        target=target,
        target_names=list(classes),
        filenames=np.asarray(names, dtype=str),
        split=split,
    )
