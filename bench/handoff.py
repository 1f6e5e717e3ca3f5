"""The splits of a comparison written once to disk and memory-mapped by each run.

Every run of ``compare`` is a fresh process (:mod:`bench.isolation`); the decoded images
reach it through ``.npy`` files that it maps (``mmap_mode="c"``: pages are read on
demand and shared through the page cache, and a stray write stays private to the run),
so no run holds its own copy of the dataset. A lazy image sequence (``compare --stream``)
is written as its pickle (file names and offsets, no pixels: each run opens the files
itself). Images of one shape and dtype in an
``(N, H, W[, C])`` array are stored as that array; lists of images of various sizes are
stored once in a flat pool per dtype (an image shared by several splits is stored once)
with each image's offset and shape, and come back as views of the mapped pool.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.specs import Split, is_lazy

__all__ = ["save_split_sets", "load_split_sets"]


def save_split_sets(sets: Sequence[tuple[int, Split, Split]], folder: str | os.PathLike) -> Path:
    """Write ``(seed, train, test)`` splits into ``folder``; returns the index file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pools: dict[str, list[np.ndarray]] = {}
    where: dict[int, tuple[str, int]] = {}  # id(image) -> (dtype, position in its pool)
    parts = []
    n_arrays = 0
    for seed, *splits in sets:
        entry: dict[str, Any] = {"seed": int(seed)}
        for key, split in zip(("train", "test"), splits):
            desc: dict[str, Any] = {
                "target": np.asarray(split.target).tolist(),
                "target_names": list(split.target_names),
                "filenames": [os.fsdecode(f) for f in split.filenames] if split.filenames is not None else None,
            }
            if is_lazy(split.images):  # the sequence's sources, pickled: no pixel is decoded here
                name = f"lazy{n_arrays}.pkl"
                n_arrays += 1
                (folder / name).write_bytes(pickle.dumps(split.images, protocol=pickle.HIGHEST_PROTOCOL))
                desc["lazy"] = name
            elif isinstance(split.images, np.ndarray) and split.images.dtype != object:
                name = f"array{n_arrays}.npy"
                n_arrays += 1
                np.save(folder / name, np.ascontiguousarray(split.images), allow_pickle=False)
                desc["array"] = name
            else:
                refs = []
                for im in split.images:
                    if id(im) not in where:
                        arr = np.asarray(im)
                        pool = pools.setdefault(arr.dtype.str, [])
                        where[id(im)] = (arr.dtype.str, len(pool))
                        pool.append(arr)
                    refs.append(where[id(im)])
                desc["images"] = refs
            entry[key] = desc
        parts.append(entry)
    index: dict[str, Any] = {"splits": parts, "pools": {}}
    for i, (dtype, images) in enumerate(pools.items()):
        name = f"pool{i}.npy"
        sizes = [im.size for im in images]
        flat = np.lib.format.open_memmap(folder / name, mode="w+", dtype=np.dtype(dtype), shape=(sum(sizes),))
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        for im, lo, hi in zip(images, offsets[:-1], offsets[1:]):
            flat[lo:hi] = im.reshape(-1)
        flat.flush()
        del flat
        index["pools"][dtype] = {"file": name, "offsets": offsets[:-1].tolist(),
                                 "shapes": [list(im.shape) for im in images]}
    path = folder / "splits.json"
    path.write_text(json.dumps(index), encoding="utf-8")
    return path


def load_split_sets(index_path: str | os.PathLike) -> list[tuple[int, Split, Split]]:
    """The splits :func:`save_split_sets` wrote, their images mapped from disk."""
    index_path = Path(index_path)
    folder = index_path.parent
    index = json.loads(index_path.read_text(encoding="utf-8"))
    pools = {}
    for dtype, pool in index["pools"].items():
        flat = np.load(folder / pool["file"], mmap_mode="c", allow_pickle=False)
        pools[dtype] = [flat[lo:lo + int(np.prod(shape))].reshape(shape)
                        for lo, shape in zip(pool["offsets"], pool["shapes"])]
    sets = []
    for entry in index["splits"]:
        parts = []
        for key in ("train", "test"):
            desc = entry[key]
            if "lazy" in desc:  # written by save_split_sets of this comparison, moments before
                images: Any = pickle.loads((folder / desc["lazy"]).read_bytes())
            elif "array" in desc:
                images = np.load(folder / desc["array"], mmap_mode="c", allow_pickle=False)
            else:
                images = [pools[dtype][i] for dtype, i in desc["images"]]
            parts.append(Split(images, np.asarray(desc["target"], dtype=np.int64), desc["target_names"],
                               desc["filenames"]))
        sets.append((entry["seed"], parts[0], parts[1]))
    return sets
