"""The classic track on a Dask LocalCluster (classicvision.utils.parallel.dask_backend).

One LocalCluster of 2 worker processes is started for the whole module; features computed
inside it with ``n_jobs=-1`` must equal those of ``n_jobs=1`` without Dask. The workers run
BLAS on one thread, so the references do too (a BLAS on several threads may round float32
sums otherwise: coates_soft_threshold's features do differ).
"""

from __future__ import annotations

import os
import pickle
import socket

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

pytest.importorskip("distributed", reason="the Dask tests need distributed (pip install distributed)")

from classicvision.datasets import load_digits_images  # noqa: E402
from classicvision.presets import make_preset  # noqa: E402
from classicvision.utils.parallel import WORKER_THREAD_VARIABLES, dask_backend, worker_threads  # noqa: E402

N_IMAGES = 40


@pytest.fixture(scope="module")
def images():
    """40 digits upscaled 4x to 32x32 uint8 (49 SIFT patches of 8 px every 4 px each)."""
    digits = load_digits_images().images[:N_IMAGES]
    return [np.kron(im, np.ones((4, 4), np.uint8)) for im in digits]


_CLIENT_ENV: dict = {}


@pytest.fixture(scope="module")
def cluster():
    """The module's LocalCluster of 2 single-threaded worker processes (its client).

    joblib runs on the dask backend while the module's tests run.
    """
    _CLIENT_ENV["before"] = {k: os.environ.get(k) for k in WORKER_THREAD_VARIABLES}
    with dask_backend(n_workers=2) as client:
        _CLIENT_ENV["inside"] = {k: os.environ.get(k) for k in WORKER_THREAD_VARIABLES}
        yield client


def _spm_features(n_jobs):
    """The features step of lazebnik_spm (small: 16 words), 5 chunk tasks over 40 images."""
    features = make_preset("lazebnik_spm", dataset="cifar10", n_words=16, step=4,
                           n_jobs=n_jobs, random_state=0)[0]
    return features.set_params(chunk_size=8)


def _hog_features(n_jobs):
    """hog_svm's features step: HOG itself, chunked by BaseExtractor._map (prefer="threads")."""
    return make_preset("hog_svm", n_jobs=n_jobs, random_state=0)[0]


class _TaskRecorder:
    """Wraps ``client.submit`` to keep every ``(func, args, kwargs)`` task joblib sends."""

    def __init__(self, client):
        self.submit = client.submit
        self.tasks: list = []

    def __call__(self, func, *args, tasks=None, **kwargs):
        self.tasks.extend(tasks or [])
        return self.submit(func, *args, tasks=tasks, **kwargs)


# -- errors: these run first, before the module's cluster is started --------------------
def test_neither_or_both_arguments():
    with pytest.raises(ValueError, match="needs scheduler="):
        with dask_backend():
            pass
    with pytest.raises(ValueError, match="not both"):
        with dask_backend("tcp://127.0.0.1:8786", n_workers=2):
            pass


@pytest.mark.parametrize("kwargs, match", [
    ({"n_workers": 0}, "n_workers must be an int >= 1"),
    ({"n_workers": 2.5}, "n_workers must be an int >= 1"),
    ({"n_workers": True}, "n_workers must be an int >= 1"),
    ({"n_workers": 1, "threads_per_worker": 0}, "threads_per_worker must be an int >= 1"),
    ({"n_workers": 1, "timeout": 0}, "timeout must be"),
    ({"scheduler": ""}, "scheduler must be an address"),
    ({"scheduler": "tcp://127.0.0.1:8786", "threads_per_worker": 2}, "configure a LocalCluster"),
    ({"scheduler": "tcp://127.0.0.1:8786", "memory_limit": "2GiB"}, "configure a LocalCluster"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        with dask_backend(**kwargs):
            pass


def test_unreachable_scheduler_is_named():
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConnectionError, match=f"Dask scheduler at '{address}' within 1 s"):
        with dask_backend(address, timeout=1):
            pass


def test_missing_distributed_says_pip_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` sees without it
    with pytest.raises(ImportError, match="pip install distributed"):
        with dask_backend(n_workers=1):
            pass


# -- on the module's LocalCluster ---------------------------------------------------------
def test_workers_are_capped_at_one_thread(cluster):
    reports = worker_threads(cluster)
    assert len(reports) == 2
    for report in reports.values():
        assert report["opencv"] == 1
        pools = {k: v for k, v in report.items() if ":" in k}
        assert pools and all(v == 1 for v in pools.values()), pools
        assert all(report[k] == "1" for k in WORKER_THREAD_VARIABLES)
    # the client's own environment is left as it was
    assert _CLIENT_ENV["inside"] == _CLIENT_ENV["before"]


def test_image_encoder_identical_to_n_jobs_1(images, cluster, monkeypatch):
    from joblib import parallel_config

    # the reference: no Dask, one process, BLAS on one thread as in the workers
    with parallel_config(backend="sequential"), threadpool_limits(1):
        ref = _spm_features(n_jobs=1).fit(images)
        ref_X = ref.transform(images)
        ref_fit_X = _spm_features(n_jobs=1).fit_transform(images)
    recorder = _TaskRecorder(cluster)
    monkeypatch.setattr(cluster, "submit", recorder)
    enc = _spm_features(n_jobs=-1).fit(images)
    X = enc.transform(images)
    # fit (5 sampling tasks) and transform (5 encoding tasks) ran on the workers
    assert len(recorder.tasks) == 2 * N_IMAGES // 8
    np.testing.assert_array_equal(enc.encoder_.codebook_, ref.encoder_.codebook_)
    assert X.dtype == np.float32 and X.shape == ref_X.shape
    assert np.array_equal(X, ref_X)
    assert np.array_equal(_spm_features(n_jobs=-1).fit_transform(images), ref_fit_X)


def test_extractor_chunks_identical_to_n_jobs_1(images, cluster, monkeypatch):
    ref = _hog_features(n_jobs=1).fit_transform(images)
    recorder = _TaskRecorder(cluster)
    monkeypatch.setattr(cluster, "submit", recorder)
    X = _hog_features(n_jobs=-1).fit_transform(images)
    # prefer="threads" is only a hint: under the dask backend the chunks are Dask tasks
    assert len(recorder.tasks) >= 2
    assert np.array_equal(np.asarray(X), np.asarray(ref))


@pytest.fixture
def lazy_images(images, tmp_path):
    """The 40 images as PNG files in tmp_path, listed by a LazyImages (skipped before H1's class)."""
    datasets = pytest.importorskip("classicvision.datasets")
    if not hasattr(datasets, "LazyImages"):
        pytest.skip("classicvision.datasets.LazyImages is not there yet")
    import cv2

    paths = [str(tmp_path / f"{i:03d}.png") for i in range(len(images))]
    for path, im in zip(paths, images):
        assert cv2.imwrite(path, im)
    return datasets.LazyImages(paths)


def test_lazy_images_identical_to_n_jobs_1(lazy_images, cluster):
    decoded = [lazy_images[i] for i in range(len(lazy_images))]
    with threadpool_limits(1):
        ref = _spm_features(n_jobs=1).fit(decoded).transform(decoded)
    X = _spm_features(n_jobs=-1).fit(lazy_images).transform(lazy_images)
    assert np.array_equal(X, ref)


def test_lazy_slice_pickles_small(lazy_images):
    chunk = lazy_images[8:16]
    assert type(chunk) is type(lazy_images) and len(chunk) == 8
    pixels = sum(chunk[i].nbytes for i in range(len(chunk)))
    assert len(pickle.dumps(chunk)) < pixels / 4


def test_lazy_images_tasks_get_lazy_slices(lazy_images, cluster, monkeypatch):
    recorder = _TaskRecorder(cluster)
    monkeypatch.setattr(cluster, "submit", recorder)
    _spm_features(n_jobs=-1).fit(lazy_images).transform(lazy_images)
    kind = type(lazy_images)
    assert len(recorder.tasks) == 2 * N_IMAGES // 8
    for _, args, _ in recorder.tasks:
        chunks = [a for a in args if isinstance(a, kind)]
        assert len(chunks) == 1, "the task got decoded pixels, not a lazy slice of the files"
        assert len(pickle.dumps(chunks[0])) < 8 * 1024  # 8 images of 32x32 would be 8 KiB of pixels


def test_store_rows_written_by_the_workers(lazy_images, tmp_path, cluster, monkeypatch):
    from classicvision.encoding import ImageEncoder

    if not hasattr(ImageEncoder, "transform_to_store"):
        pytest.skip("ImageEncoder.transform_to_store is not there yet")
    decoded = [lazy_images[i] for i in range(len(lazy_images))]
    with threadpool_limits(1):
        ref = _spm_features(n_jobs=1).fit(decoded).transform(decoded)
    enc = _spm_features(n_jobs=-1).fit(lazy_images)
    recorder = _TaskRecorder(cluster)
    monkeypatch.setattr(cluster, "submit", recorder)
    store = enc.transform_to_store(lazy_images, tmp_path / "features", chunk_rows=16)
    assert len(recorder.tasks) == 3  # rows 0-15, 16-31, 32-39: one task each, written by the worker
    for _, args, _ in recorder.tasks:
        assert any(isinstance(a, type(lazy_images)) for a in args)
        assert all(not isinstance(a, np.ndarray) or a.size < 100 for a in args)
    assert np.array_equal(store.to_array(), ref)


def test_streamed_blocks_of_a_feature_union_written_by_the_workers(lazy_images, tmp_path, cluster, monkeypatch):
    """``compare --stream`` on Dask: one task per store block runs the whole FeatureUnion
    (nec2010's channels) on its lazy images and writes its rows; they equal the rows written
    block by block in this process."""
    from bench.streaming import write_features

    decoded = [lazy_images[i] for i in range(len(lazy_images))]
    features = make_preset("nec2010", dataset="imagenet", n_words=4, hog_cells=(8,), n_jobs=-1,
                           random_state=0)[0].fit(decoded)
    with threadpool_limits(1):
        ref = write_features(features, decoded, tmp_path / "ref", block=16, dtype="float32")
    recorder = _TaskRecorder(cluster)
    monkeypatch.setattr(cluster, "submit", recorder)
    store = write_features(features, lazy_images, tmp_path / "dask", block=16, dtype="float32", n_jobs=-1)
    assert len(recorder.tasks) == 3  # rows 0-15, 16-31, 32-39
    for _, args, _ in recorder.tasks:
        assert any(isinstance(a, type(lazy_images)) for a in args)
    assert np.array_equal(store.to_array(), ref.to_array())


def test_existing_cluster_by_address(images, cluster):
    # the scheduler address route: a second client of the module's cluster, left running on exit
    ref = _hog_features(n_jobs=1).fit_transform(images[:8])
    with dask_backend(cluster.scheduler.address) as client:
        assert client.scheduler.address == cluster.scheduler.address
        X = _hog_features(n_jobs=-1).fit_transform(images[:8])
    assert np.array_equal(np.asarray(X), np.asarray(ref))
    assert len(cluster.scheduler_info()["workers"]) == 2
