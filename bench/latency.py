"""Latency of one image (batch size 1) on pinned CPU threads, for both tracks.

The model table this project follows (MindSpore Lite's) lists, per model, the latency of one
image on 4 CPU threads; ``report.json`` records it on 1 thread and on
N = min(4, usable cores) threads, beside the whole-test-set throughput (``images_per_second``).

What is timed: one call of the model's scoring function on a batch of one image that is
already decoded (a uint8 array, as the dataset loaders give it), so file reading and
decoding are excluded; everything the model does to that array is included (for a classic
pipeline, feature extraction, coding, pooling and the SVM; for a CNN, its resize,
normalization, the forward pass and its flip test-time augmentation; for an ONNX model, the
same preprocessing and the ONNX Runtime session). Threads are pinned for the duration of a
measurement with :func:`threadpoolctl.threadpool_limits` (BLAS and OpenMP pools) and
:func:`torch.set_num_threads` (when torch is loaded), and restored afterwards.

Each measurement runs ``warmup`` calls, then at least ``repeats`` timed calls and more until
``max_seconds`` have passed (capped at ``max_repeats``), cycling through the sample's images;
it reports the median and the 90th percentile in milliseconds. A few seconds per run in all.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.specs import n_images, take

__all__ = [
    "MAX_THREADS",
    "usable_cores",
    "thread_counts",
    "pinned_threads",
    "measure_latency",
    "latency_record",
]

#: The thread count of the MindSpore Lite table: latency is measured on min(4, usable cores).
MAX_THREADS = 4


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_counts(max_threads: int = MAX_THREADS) -> list[int]:
    """The thread counts a run's latency is measured on: ``[1, min(max_threads, usable cores)]``.

    >>> thread_counts(1)
    [1]
    >>> thread_counts()[0]
    1
    """
    n = min(int(max_threads), usable_cores())
    return sorted({1, max(1, n)})


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` threads in BLAS / OpenMP pools and in torch, then restore them.

    torch's intra-op pool is pinned only when torch is already imported (a classic run does
    not load it for this).
    """
    if int(n) < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=int(n)):
        if torch is not None:
            torch.set_num_threads(int(n))
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(old)


def measure_latency(
    predict_one: Callable[[Any], Any],
    sample: Any,
    threads: int,
    *,
    warmup: int = 3,
    repeats: int = 5,
    max_seconds: float = 2.0,
    max_repeats: int = 500,
) -> dict:
    """Median and 90th-percentile time of ``predict_one`` on one image, ``threads`` pinned.

    Parameters
    ----------
    predict_one : callable
        Called with a batch of one image (``sample[i:i + 1]``: an ``(1, H, W[, C])`` array
        or a one-item list) and returning its scores; its result is discarded.
    sample : (n, H, W[, C]) ndarray or sequence of n arrays
        Decoded images (decoding is not timed); the calls cycle through them.
    threads : int >= 1
        BLAS / OpenMP and torch threads during the measurement (:func:`pinned_threads`).
    warmup : int >= 0, default=3
        Untimed calls first (lazy initialisation, caches, thread pools starting).
    repeats : int >= 1, default=5
        Timed calls at least.
    max_seconds : float, default=2.0
        After ``repeats`` calls, more are timed until this much time has passed in all.
    max_repeats : int, default=500
        Timed calls at most.

    Returns
    -------
    dict
        ``median_ms``, ``p90_ms`` (float), ``repeats`` (timed calls), ``threads``.

    Raises
    ------
    ValueError
        ``sample`` holds no image, or ``threads``, ``warmup``, ``repeats`` out of range.

    Examples
    --------
    >>> import numpy as np
    >>> r = measure_latency(lambda x: x.sum(), np.zeros((2, 8, 8), np.uint8), 1, max_seconds=0.01)
    >>> sorted(r), r["repeats"] >= 5, r["p90_ms"] >= r["median_ms"]
    (['median_ms', 'p90_ms', 'repeats', 'threads'], True, True)
    """
    n = n_images(sample)
    if n < 1:
        raise ValueError("measure_latency needs at least one image in sample")
    if warmup < 0 or repeats < 1 or max_repeats < repeats:
        raise ValueError(f"need warmup >= 0 and 1 <= repeats <= max_repeats, got warmup={warmup}, "
                         f"repeats={repeats}, max_repeats={max_repeats}")
    batches = [take(sample, [i]) for i in range(n)]
    times: list[float] = []
    with pinned_threads(threads):
        for i in range(warmup):
            predict_one(batches[i % n])
        start = time.perf_counter()
        while len(times) < max_repeats and (len(times) < repeats or time.perf_counter() - start < max_seconds):
            x = batches[len(times) % n]
            t0 = time.perf_counter()
            predict_one(x)
            times.append(time.perf_counter() - t0)
    ms = 1000.0 * np.asarray(times)
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "repeats": len(times), "threads": int(threads)}


def latency_record(
    predict_one: Callable[[Any], Any] | None,
    sample: Any,
    *,
    threads: Sequence[int] | None = None,
    max_seconds: float = 2.0,
    prefix: str = "latency",
    predictor_for: Callable[[int], Callable[[Any], Any]] | None = None,
    **kwargs: Any,
) -> dict:
    """The latency keys of a run record: :func:`measure_latency` on each thread count.

    Parameters
    ----------
    predict_one, sample
        As in :func:`measure_latency`.
    predictor_for : callable or None
        ``predictor_for(threads)`` returns the function to time on that many threads (for
        runtimes whose thread pool is fixed when a session is made, as ONNX Runtime's);
        ``predict_one`` is then unused.
    threads : sequence of int or None
        Default :func:`thread_counts` (``[1, min(4, usable cores)]``).
    max_seconds : float, default=2.0
        Per thread count.
    prefix : str, default="latency"
        Key prefix (``"latency"`` for the run, e.g. ``"onnx_latency"`` elsewhere).
    **kwargs
        ``warmup``, ``repeats``, ``max_repeats`` of :func:`measure_latency`.

    Returns
    -------
    dict
        ``{prefix}_ms`` and ``{prefix}_p90_ms``: ``{"1": ms, "N": ms}`` (keys are the thread
        counts as strings, as JSON keeps them), ``{prefix}_threads``: the counts used,
        ``{prefix}_repeats``: timed calls per count, ``{prefix}_batch_size``: 1.
    """
    counts = list(threads) if threads is not None else thread_counts()
    if predictor_for is None and predict_one is None:
        raise ValueError("latency_record needs predict_one or predictor_for")
    res = [measure_latency(predictor_for(t) if predictor_for is not None else predict_one, sample, t,
                           max_seconds=max_seconds, **kwargs) for t in counts]
    return {
        f"{prefix}_ms": {str(r["threads"]): r["median_ms"] for r in res},
        f"{prefix}_p90_ms": {str(r["threads"]): r["p90_ms"] for r in res},
        f"{prefix}_threads": [r["threads"] for r in res],
        f"{prefix}_repeats": {str(r["threads"]): r["repeats"] for r in res},
        f"{prefix}_batch_size": 1,
    }
