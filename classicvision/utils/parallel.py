"""The classic track on a Dask cluster, through joblib's ``dask`` backend.

Every parallel loop of classicvision is a :class:`joblib.Parallel`: the chunk tasks of
:class:`~classicvision.encoding.ImageEncoder` (extract, reduce, encode ``chunk_size``
images) and the image chunks of the extractors (``BaseExtractor._map``).
:func:`dask_backend` connects to a Dask cluster (or starts one on this machine) and runs
those loops on it as Dask tasks, without a change to the estimators: scikit-learn's own
route to Dask (joblib's ``DaskDistributedBackend``, Rocklin 2015 / joblib 0.12+).

>>> from classicvision.utils.parallel import dask_backend
>>> with dask_backend(n_workers=2) as client:           # doctest: +SKIP
...     X = make_preset("lazebnik_spm", n_jobs=-1)[0].fit_transform(images)
>>> with dask_backend("tcp://10.0.0.5:8786"):           # doctest: +SKIP
...     X = encoder.transform(images)

References
----------
M. Rocklin, "Dask: Parallel Computation with Blocked algorithms and Task Scheduling",
Proc. 14th Python in Science Conference (SciPy), 2015.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from numbers import Integral, Real
from typing import Any

__all__ = ["WORKER_THREAD_VARIABLES", "dask_backend", "worker_threads"]

#: Environment variables that cap the threads of BLAS / OpenMP / numexpr / OpenCV in the
#: worker processes of a :func:`dask_backend` LocalCluster (each set to ``"1"``).
WORKER_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENCV_FOR_THREADS_NUM",
)


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "dask_backend needs Dask's distributed scheduler, which is not installed: "
            "pip install distributed"
        ) from exc
    return distributed


def _check_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_args(scheduler, n_workers, threads_per_worker, memory_limit, dashboard, timeout) -> None:
    if scheduler is not None and n_workers is not None:
        raise ValueError(
            f"dask_backend takes scheduler= (an existing cluster) or n_workers= (a LocalCluster "
            f"on this machine), not both (got scheduler={scheduler!r}, n_workers={n_workers!r})"
        )
    if scheduler is None and n_workers is None:
        raise ValueError(
            "dask_backend needs scheduler='tcp://HOST:PORT' (an existing Dask cluster) or "
            "n_workers=N (a LocalCluster of N worker processes on this machine)"
        )
    if isinstance(timeout, bool) or not isinstance(timeout, Real) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ValueError(f"scheduler must be an address such as 'tcp://HOST:PORT', got {scheduler!r}")
        local_only = {"threads_per_worker": (threads_per_worker, 1), "memory_limit": (memory_limit, "auto"),
                      "dashboard": (dashboard, False)}
        given = [f"{k}={v!r}" for k, (v, default) in local_only.items() if v != default]
        if given:
            raise ValueError(
                f"{', '.join(given)} configure a LocalCluster (n_workers=N); the workers of the "
                f"cluster at {scheduler} keep the settings they were started with "
                f"(dask worker --nthreads / --memory-limit)"
            )
        return
    _check_int("n_workers", n_workers)
    _check_int("threads_per_worker", threads_per_worker)
    if not isinstance(dashboard, (bool, str)):
        raise ValueError(f"dashboard must be a bool or an address such as ':8787', got {dashboard!r}")


def _connect(distributed, scheduler: str, timeout: float):
    """A Client of the cluster at ``scheduler``; a clear error when it does not answer."""
    try:
        return distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"could not reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
            f"(is `dask scheduler` running there, and is its port open from here?): {exc}"
        ) from exc


@contextmanager
def _worker_environment(value: str) -> Iterator[dict]:
    """Set :data:`WORKER_THREAD_VARIABLES` while worker processes are spawned, then restore.

    The Nanny of each worker copies its pre-spawn environment into ``os.environ`` before
    it spawns the worker (so that BLAS reads the cap when numpy is imported); the value in
    ``os.environ`` wins over Dask's configuration, hence both are set, and the client's own
    environment is put back afterwards.
    """
    import dask

    limits = dict.fromkeys(WORKER_THREAD_VARIABLES, value)
    saved = {k: os.environ.get(k) for k in limits}
    pre_spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **limits}
    os.environ.update(limits)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn}):
            yield limits
    finally:
        _restore_environment(saved)


def _restore_environment(saved: dict) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _local_cluster(distributed, n_workers, threads_per_worker, memory_limit, dashboard):
    if dashboard is True:
        dashboard = ":8787"
    if dashboard:
        try:
            import bokeh  # noqa: F401
        except ImportError as exc:
            raise ImportError("dask_backend(dashboard=...) needs bokeh: pip install bokeh") from exc
    # without a dashboard the scheduler still serves its health and metrics routes over
    # HTTP: on a free port, not on 8787 (where it would clash with another cluster's)
    http = {} if dashboard else {"scheduler_kwargs": {"dashboard": False, "dashboard_address": ":0"}}
    with _worker_environment("1") as limits:
        return distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
            memory_limit=memory_limit, dashboard_address=dashboard or None, env=limits, **http,
        )


@contextmanager
def dask_backend(scheduler: str | None = None, n_workers: int | None = None, *,
                 threads_per_worker: int = 1, memory_limit: str | float | int | None = "auto",
                 dashboard: bool | str = False, timeout: float = 10.0) -> Iterator[Any]:
    """Run the library's joblib loops on a Dask cluster while the context is open.

    Inside the ``with`` block, joblib's default backend is ``"dask"``
    (``joblib.parallel_config(backend="dask", client=client)``), so every
    :class:`joblib.Parallel` of classicvision -- the chunk tasks of
    :class:`~classicvision.encoding.ImageEncoder`, the image chunks of the extractors --
    becomes Dask tasks on the cluster's workers.

    Parameters
    ----------
    scheduler : str, optional
        Address of the scheduler of an existing cluster, e.g. ``"tcp://10.0.0.5:8786"``
        (started with ``dask scheduler`` and ``dask worker tcp://10.0.0.5:8786``). The
        cluster is left running on exit; only the client is closed.
    n_workers : int, optional
        Start a :class:`distributed.LocalCluster` of this many worker *processes* on this
        machine, closed on exit. Give exactly one of ``scheduler`` and ``n_workers``.
    threads_per_worker : int, default=1
        Task threads of each LocalCluster worker.
    memory_limit : str, float, int or None, default="auto"
        Memory limit of each LocalCluster worker (Dask's: ``"auto"`` is the machine's
        memory divided by ``n_workers``; ``"4GiB"``, a number of bytes, or ``None``/0 for
        none). A worker above 95% of it is restarted by its nanny.
    dashboard : bool or str, default=False
        Serve the scheduler's dashboard (``True``: on ``:8787``; a string: that address).
        Needs ``bokeh``. Without it ``client.dashboard_link`` points to the scheduler's
        plain HTTP routes (health, Prometheus metrics) on a free port.
    timeout : float, default=10.0
        Seconds to wait for the scheduler to answer, and for the first worker.

    Yields
    ------
    distributed.Client
        The client of the cluster (``client.dashboard_link``, ``client.ncores()``).

    Raises
    ------
    ValueError
        Both or neither of ``scheduler`` and ``n_workers``; a LocalCluster option with
        ``scheduler``; an invalid value.
    ImportError
        ``distributed`` is not installed (``pip install distributed``).
    ConnectionError
        The scheduler did not answer within ``timeout`` seconds (the message names it).

    Notes
    -----
    **n_jobs.** An estimator runs on the cluster only when its ``n_jobs`` asks for
    parallelism: with ``n_jobs=None`` or ``1`` ``ImageEncoder`` and the extractors run
    their loop in the calling process without joblib, so Dask is not used. Any other value
    (``2``, ``-1``, ...) goes to the cluster, and its size is ignored: the dask backend's
    ``effective_n_jobs`` is the number of worker threads of the whole cluster
    (``sum(client.ncores().values())``). ``ImageEncoder`` makes one task per
    ``chunk_size`` images whatever that number; an extractor called with ``n_jobs``
    set makes ``4 x`` (cluster threads) chunks.

    **prefer="threads".** ``BaseExtractor._map`` asks joblib for threads
    (``Parallel(prefer="threads")``). That is a soft hint, used only when no backend is
    configured; under ``parallel_config(backend="dask")`` it is ignored and the chunks are
    Dask tasks in the worker processes (only ``require="sharedmem"`` would keep them in
    local threads). Inside a task joblib keeps the dask backend, so a nested ``Parallel``
    submits further tasks from the worker (seceding from its thread pool); the presets
    leave the extractor inside an ``ImageEncoder`` at ``n_jobs=None``, so each chunk task
    extracts its own images.

    **Same features as n_jobs=1.** The chunks are the same whatever the backend
    (``chunk_size`` images per ``ImageEncoder`` task), and the fitting (codebook, GMM,
    PCA) runs in the client, so the features are those of ``n_jobs=1`` bit for bit when
    BLAS runs on one thread on both sides (as in the workers here and in loky's). A
    client whose BLAS uses several threads may round the float32 sums of an encoding
    done there differently (``coates_soft_threshold``'s encoding, a large float32
    product, does; a ``threadpoolctl.threadpool_limits(1)`` around the reference run
    gives the workers' results exactly).

    **What travels.** Each task is pickled with its arguments: the fitted steps (the
    codebook or GMM travels with every chunk task: Dask's ``sizeof`` sees an estimator as
    a small object, so joblib does not scatter it once) and the chunk of images. A list
    of decoded images is sent as pixels; a lazy sequence of image files
    (``classicvision.datasets.LazyImages``) is sent as its file names, and each task
    decodes its own images. Arrays larger than 1 kB are scattered to the workers once
    per ``Parallel`` call.

    **What the workers must see.** With a lazy sequence, every worker opens the image
    files at the *same path* as the client: the images (or ``.tar`` shards) must be on a
    filesystem shared by all machines (NFS, a cluster filesystem, or a copy at the same
    path). Likewise a feature store written by the tasks
    (``ImageEncoder.transform_to_store(X, path)``, each task writing its own rows) must
    be at a path every worker can write and the client can read. The workers need the
    same Python packages (classicvision, OpenCV, scikit-learn) as the client.

    **Threads in the workers.** A LocalCluster's workers are started with
    ``threads_per_worker`` task threads and with BLAS / OpenMP / numexpr / OpenCV capped at
    one thread each (:data:`WORKER_THREAD_VARIABLES` set to ``"1"`` in their environment
    before they are spawned; torch follows ``OMP_NUM_THREADS``), so ``n_workers``
    processes do not each start one thread per core. The client's environment is left as
    it was. The workers of an existing cluster keep their own settings: Dask's nanny
    sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` to 1 by
    default (``distributed.nanny.pre-spawn-environ``); start ``dask worker`` with
    ``OPENCV_FOR_THREADS_NUM=1`` in its environment for OpenCV. :func:`worker_threads`
    reports what each worker uses.

    Examples
    --------
    >>> from classicvision.utils.parallel import dask_backend
    >>> with dask_backend() as client:
    ...     pass
    Traceback (most recent call last):
    ...
    ValueError: dask_backend needs scheduler='tcp://HOST:PORT' (an existing Dask cluster) or n_workers=N (a LocalCluster of N worker processes on this machine)
    """
    _check_args(scheduler, n_workers, threads_per_worker, memory_limit, dashboard, timeout)
    distributed = _import_distributed()
    from joblib import parallel_config

    with ExitStack() as stack:
        if scheduler is not None:
            client = _connect(distributed, scheduler, timeout)
            stack.callback(client.close)
        else:
            cluster = _local_cluster(distributed, n_workers, threads_per_worker, memory_limit, dashboard)
            stack.callback(cluster.close)
            client = distributed.Client(cluster, timeout=timeout)
            stack.callback(client.close)
            client.wait_for_workers(n_workers, timeout=max(timeout, 60.0))
        stack.enter_context(parallel_config(backend="dask", client=client,
                                            wait_for_workers_timeout=timeout))
        yield client


def _thread_report() -> dict:
    """Threads of OpenCV, BLAS/OpenMP (threadpoolctl) and torch (if loaded) in this process."""
    import sys

    import cv2
    from threadpoolctl import threadpool_info

    report = {"opencv": cv2.getNumThreads()}
    for pool in threadpool_info():
        report[f"{pool['user_api']}:{pool['internal_api']}"] = pool["num_threads"]
    if "torch" in sys.modules:
        report["torch"] = sys.modules["torch"].get_num_threads()
    report.update({k: os.environ.get(k) for k in WORKER_THREAD_VARIABLES})
    return report


def worker_threads(client) -> dict[str, dict]:
    """Threads each worker of ``client``'s cluster gives OpenCV, BLAS/OpenMP and torch.

    Parameters
    ----------
    client : distributed.Client
        E.g. the client :func:`dask_backend` yields.

    Returns
    -------
    dict
        Worker address -> ``{"opencv": n, "blas:openblas": n, ..., "torch": n (when
        torch is imported there), "OMP_NUM_THREADS": value or None, ...}`` (the
        threadpoolctl pools loaded in that worker and the variables of
        :data:`WORKER_THREAD_VARIABLES`).
    """
    return client.run(_thread_report)
