"""``compare --stream``: a classic run whose memory does not grow with the dataset.

The images arrive as a lazy sequence (:class:`classicvision.datasets.LazyImages`: file
names, decoded on access); the fitted features step writes the features of each block
of images into an on-disk :class:`classicvision.store.FeatureStore`; the steps after it
are fitted out of core (:func:`classicvision.store.fit_chunked`) with the classifier
made out-of-core first (:func:`classicvision.store.to_streaming`: the Newton solver
reading the store block by block for the linear SVMs, an explicit feature map for the
additive-kernel SVMs); the test scores are
read back block by block. What is held at once is one block of images and its
features per worker (with ``--n-jobs N`` the blocks are N parallel tasks, each running
the whole features step and writing its own rows), the classifier's weights and the
labels.

Everything is kept under the run's store folder (``OUT/stores/<run>/split<i>/``): the
fitted features step (``features.skops``) and the two stores. A run stopped part-way
(killed, out of memory, interrupted) and started again with the same ``--out`` loads
the fitted step and writes only the blocks that are missing. A finished run's features
are also copied, block by block, into the features cache (:mod:`bench.cache`, float16
``.npy`` files, under a key of their own), which a later streamed run of the same
features step on the same data reads memory-mapped instead of extracting again
(``--no-cache``: neither read nor written).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from bench.models_io import dump_skops, load_skops
from bench.progress import Progress
from bench.specs import RunSpec, n_images

__all__ = ["BLOCK_IMAGES", "STORE_DTYPE", "streamed_features", "streamed_classifier", "write_features"]

#: Images transformed per call of the features step (one block of the store).
BLOCK_IMAGES = 512
#: Storage type of the features (float16 halves the disk and the page cache the stores
#: use; the classifier reads float32, and pooled, normalized codes lose < 1e-3 relative).
STORE_DTYPE = "float16"


def _fitted_step(spec: RunSpec, features: Any, images: Any, y: np.ndarray, folder: Path,
                 progress: Progress) -> tuple[Any, float]:
    """The features step fitted on the training images, or the one a previous attempt saved.

    A step fitted here makes the stores of an earlier attempt stale: they are removed.
    """
    path = folder / "features.skops"
    if path.is_file():
        try:
            step = load_skops(path)
            progress.line(f"{spec.name}: resuming with the features step fitted before ({path})")
            return step, 0.0
        except Exception as exc:  # unreadable: fit again
            progress.line(f"{spec.name}: {path} unusable ({type(exc).__name__}: {exc}); fitting again")
    for part in ("train", "test"):
        shutil.rmtree(folder / part, ignore_errors=True)
    t0 = time.perf_counter()
    with progress.stage(spec.name, f"fit features step on {n_images(images)} train images (streamed)"):
        features.fit(images, y)
    seconds = time.perf_counter() - t0
    tmp = path.with_name(path.name + ".tmp")
    dump_skops(features, tmp)
    os.replace(tmp, path)
    return features, seconds


@contextlib.contextmanager
def _in_one_process(step: Any) -> Iterator[None]:
    """Every ``n_jobs`` of ``step`` at 1 and joblib's sequential backend: no nested parallel
    loop (under a Dask backend, a FeatureUnion with ``n_jobs=1`` was seen sending its channels to
    the cluster)."""
    from joblib import parallel_config

    from bench.runners import deep_params

    with deep_params(step, n_jobs=1), parallel_config(backend="sequential"):
        yield


def _write_block(step: Any, images: Any, start: int, path: str) -> int:
    """One task of :func:`write_features`: transform a block of images in this process (the
    tasks are the parallelism) and write its rows into the store, opened by path here;
    returns the number of images written."""
    from classicvision.store import FeatureStore

    step = copy.deepcopy(step)  # a thread of the threading backend must not reset another's n_jobs
    with _in_one_process(step):
        rows = np.asarray(step.transform(images), dtype=np.float32)
    FeatureStore.open(path).write(start, rows)
    return len(rows)


def write_features(step: Any, images: Any, path: Path, *, block: int = BLOCK_IMAGES, dtype: str = STORE_DTYPE,
                   update: Callable[[int], None] | None = None, n_jobs: int | None = None) -> Any:
    """Transform ``images`` block by block into the store at ``path``; resumes a partial one.

    Parameters
    ----------
    step : fitted transformer
        Maps a sequence of images to a ``(n, d)`` array.
    images : lazy sequence, list or array of images
    path : Path
        The store's folder: created (its width from the first image), or reopened and
        completed when an earlier attempt left blocks missing.
    block : int
        Images per call of ``step.transform`` (and rows per chunk of the store).
    dtype : {"float16", "float32"}
    update : callable or None
        Called with the number of images done so far (progress).
    n_jobs : int or None
        None or 1: the blocks in turn in this process (the step's own ``n_jobs`` apply).
        Otherwise the blocks are joblib tasks, ``n_jobs`` at a time (processes, or a Dask
        cluster under ``joblib.parallel_config(backend="dask")``), each transforming its
        block with the step's ``n_jobs`` set to 1 and writing its rows itself: the whole
        step (every channel of a ``FeatureUnion``) runs in one task per block, and no
        features pass through this process. The rows are the same either way.

    Returns
    -------
    classicvision.store.FeatureStore
        Complete.
    """
    from joblib import Parallel, delayed

    from classicvision.store import FeatureStore

    n = n_images(images)
    store = None
    if path.exists():
        try:
            store = FeatureStore.open(path)
            if store.shape[0] != n:
                store = None
        except Exception:  # not a store, or a damaged one: rewritten below
            store = None
        if store is None:
            shutil.rmtree(path)
    if store is None:
        with _in_one_process(step):  # one image: no worker is worth starting
            width = np.asarray(step.transform(images[0:1])).shape[1]
        store = FeatureStore.create(path, n, width, dtype=dtype, chunk_rows=block)
    missing = [(a, min(hi, a + block)) for lo, hi in store.missing_chunks() for a in range(lo, hi, block)]
    done = n - sum(b - a for a, b in missing)
    if n_jobs in (None, 1) or len(missing) < 2:
        for a, b in missing:
            store.write(a, np.asarray(step.transform(images[a:b]), dtype=np.float32))
            done += b - a
            if update is not None:
                update(done)
        return store
    tasks = (delayed(_write_block)(step, images[a:b], a, str(path)) for a, b in missing)
    for count in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks):
        done += count
        if update is not None:
            update(done)
    return FeatureStore.open(path)


def streamed_features(spec: RunSpec, features: Any, train_images: Any, y_train: np.ndarray, test_images: Any, *,
                      folder: Path, progress: Progress, cache: Any = None, cache_key: str | None = None,
                      n_jobs: int | None = None) -> tuple[Any, Any, Any, dict]:
    """Fit the features step (or load it) and write both splits' stores (``n_jobs`` blocks at
    a time, see :func:`write_features`).

    With a features ``cache`` (:class:`bench.cache.FeatureCache`) and a ``cache_key``,
    the finished stores are copied block by block into that entry (float16 ``.npy``
    files, which the cache gives back memory-mapped).

    Returns ``(train store, test store, fitted step, timings)``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    step, fit_seconds = _fitted_step(spec, features, train_images, y_train, folder, progress)
    ntr, nte = n_images(train_images), n_images(test_images)
    t0 = time.perf_counter()
    train = write_features(step, train_images, folder / "train", n_jobs=n_jobs,
                           update=progress.chunks(spec.name, "features (train, to disk)", ntr))
    timings = {"features_fit_seconds": fit_seconds + time.perf_counter() - t0}
    t0 = time.perf_counter()
    test = write_features(step, test_images, folder / "test", n_jobs=n_jobs,
                          update=progress.chunks(spec.name, "features (test, to disk)", nte))
    timings["features_test_seconds"] = time.perf_counter() - t0
    if cache is not None and cache_key is not None and getattr(cache, "enabled", True):
        with progress.stage(spec.name, "copy the stored features into the features cache"):
            cache.put(cache_key, train=train, test=test, features_step=step, dtype=STORE_DTYPE,
                      meta={**timings, "step": type(step).__name__, "preset": spec.base, "stream": True,
                            "n_train": ntr, "n_test": nte, "n_features": int(train.shape[1])})
    return train, test, step, timings


def streamed_classifier(rest: Pipeline, train: Any, y_train: np.ndarray, test: Any, *, seed: int | None,
                        name: str, progress: Progress) -> tuple[Pipeline, np.ndarray, dict]:
    """Fit the steps after the features out of core and score the test store.

    Returns ``(fitted streaming pipeline, test decision scores (n_test, n_classes), timings)``.
    """
    from classicvision.store import decision_function_chunked, fit_chunked, to_streaming

    pipe = to_streaming(rest)
    last = pipe.steps[-1][0]
    with progress.stage(name, f"fit {last} out of core on {train.shape[0]}x{train.shape[1]} stored features") as st:
        fit_chunked(pipe, train, y_train, random_state=seed)
    t0 = time.perf_counter()
    scores = np.asarray(decision_function_chunked(pipe, test), dtype=np.float64)
    if scores.ndim == 1:  # two classes: one decision value, for the second class
        scores = np.stack([-scores, scores], axis=1)
    timings = {"classifier_fit_seconds": st.seconds, "classifier_predict_seconds": time.perf_counter() - t0}
    passes = getattr(pipe.steps[-1][1], "pass_seconds_", None)
    if passes:  # averaged SGD: the seconds of each pass (the rest of the fit is fixed: calibration)
        timings["classifier_pass_seconds"] = [float(x) for x in passes]
    return pipe, scores, timings
