"""``compare --stream``: lazy images, features on disk, classifiers out of core (issue 14)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import cli
from bench.cache import dataset_digest
from bench.handoff import load_split_sets, save_split_sets
from bench.specs import Split, is_lazy, take
from bench.streaming import write_features
from classicvision.datasets import load_image_folder
from classicvision.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSICVISION_CACHE", str(tmp_path / "feature-cache"))


def _folder(root: Path, n_classes: int = 3, per_class: int = 12, size: int = 40) -> Path:
    """Classes of stripes at a class angle, with noise: learnable by LBP and HOG."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for c in range(n_classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for k in range(per_class):
            angle = np.pi * c / n_classes + rng.normal(0, 0.1)
            wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (0.5 + 0.2 * c) + rng.uniform(0, 6))
            img = np.clip(127 + 90 * wave + rng.normal(0, 20, wave.shape), 0, 255).astype(np.uint8)
            Image.fromarray(np.stack([img] * 3, axis=-1)).save(d / f"{k:03d}.png")
    return root


def _read(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_compare_stream_writes_stores_and_scores(tmp_path):
    root = _folder(tmp_path / "photos")
    out = tmp_path / "run"
    rc = cli.main(["compare", "--dataset", "folder", "--root", str(root), "--train-per-class", "8",
                   "--test-per-class", "4", "--pipelines", "lbp_svm", "--cnn", "none", "--stream",
                   "--no-latency", "--out", str(out), "--quiet"])
    assert rc == 0
    report = _read(out)
    (run,) = report["runs"]
    assert run["status"] == "ok" and run["stream"] is True and report["options"]["stream"] is True
    assert run["top1"] > 0.6  # three easy classes, 24 training images
    folder = out / "stores" / "lbp_svm" / "split0"
    assert (folder / "features.skops").is_file()
    train, test = FeatureStore.open(folder / "train"), FeatureStore.open(folder / "test")
    assert train.complete and test.complete and train.shape[0] == 24 and test.shape[0] == 12
    assert run["n_features"] == train.shape[1]
    assert run["timings"]["store"]["dtype"] == "float16"


def test_streamed_features_go_to_the_cache_and_come_back(tmp_path):
    # a second streamed run of the same features step on the same data reads the cache's
    # float16 files block by block; another --out, so no store there to resume from
    root = _folder(tmp_path / "photos")
    args = ["compare", "--dataset", "folder", "--root", str(root), "--train-per-class", "8", "--test-per-class",
            "4", "--pipelines", "lbp_svm", "--cnn", "none", "--stream", "--no-latency", "--quiet"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 0
    (entry,) = [d for d in (tmp_path / "feature-cache").iterdir() if not d.name.startswith(".")]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["stream"] is True and meta["n_train"] == 24
    assert np.load(entry / "train.npy", mmap_mode="r").dtype == np.float16
    assert cli.main(args + ["--out", str(tmp_path / "b")]) == 0
    (first,), (second,) = _read(tmp_path / "a")["runs"], _read(tmp_path / "b")["runs"]
    assert first["cache_hit"] is False and second["cache_hit"] is True
    assert second["status"] == "ok" and not (tmp_path / "b" / "stores" / "lbp_svm" / "split0" / "train").exists()
    assert second["top1"] == first["top1"]  # the same float16 features, the same seeded classifier
    # an in-memory run never gets the float16 entry
    assert cli.main(args[:-3] + ["--no-latency", "--quiet", "--out", str(tmp_path / "c")]) == 0
    assert _read(tmp_path / "c")["runs"][0]["cache_hit"] is False


def test_write_features_resumes_only_the_missing_blocks(tmp_path):
    images = [np.full((8, 8), i, np.uint8) for i in range(10)]
    calls = []

    class Step:
        def transform(self, X):
            calls.append(len(X))
            return np.stack([np.full(3, float(x[0, 0])) for x in X])

    store = write_features(Step(), images, tmp_path / "s", block=4, dtype="float32")
    np.testing.assert_array_equal(store.to_array()[:, 0], np.arange(10))
    assert calls == [1, 4, 4, 2]  # one image for the store's width, then each block once
    calls.clear()
    write_features(Step(), images, tmp_path / "s", block=4, dtype="float32")
    assert calls == []  # complete: nothing recomputed
    # a store an earlier attempt left half written: only its missing chunks are computed
    part = FeatureStore.create(tmp_path / "p", 10, 3, dtype="float32", chunk_rows=4)
    part.write(0, Step().transform(images[:4]))
    calls.clear()
    again = write_features(Step(), images, tmp_path / "p", block=4, dtype="float32")
    assert calls == [4, 2] and again.complete
    np.testing.assert_array_equal(again.to_array()[:, 0], np.arange(10))
    # a store of another length (other data) is replaced
    calls.clear()
    write_features(Step(), images[:6], tmp_path / "p", block=4, dtype="float32")
    assert calls == [1, 4, 2]


class _PixelRows:
    """A features step whose rows name their image (picklable: for worker processes)."""

    def __init__(self, n_jobs=None):
        self.n_jobs = n_jobs

    def get_params(self, deep=True):
        return {"n_jobs": self.n_jobs}

    def set_params(self, **params):
        self.n_jobs = params.get("n_jobs", self.n_jobs)
        return self

    def transform(self, X):  # row: the image's pixel value, then the n_jobs it was computed with
        return np.stack([[float(x[0, 0]), float(self.n_jobs), 0.0] for x in X])


def test_write_features_runs_blocks_as_parallel_tasks_with_the_same_rows(tmp_path):
    images = [np.full((8, 8), i, np.uint8) for i in range(10)]
    store = write_features(_PixelRows(n_jobs=1), images, tmp_path / "seq", block=4, dtype="float32")
    par = write_features(_PixelRows(n_jobs=4), images, tmp_path / "par", block=4, dtype="float32", n_jobs=2)
    assert par.complete
    np.testing.assert_array_equal(par.to_array(), store.to_array())  # the tasks ran the step with n_jobs=1
    # resumed in parallel: only the missing blocks are written, by the tasks
    part = FeatureStore.create(tmp_path / "part", 10, 3, dtype="float32", chunk_rows=4)
    part.write(4, np.full((4, 3), -1.0))  # a block an earlier attempt wrote (kept as it is)
    done = []
    again = write_features(_PixelRows(n_jobs=4), images, tmp_path / "part", block=4, dtype="float32", n_jobs=2,
                           update=done.append)
    assert again.complete and done[-1] == 10
    np.testing.assert_array_equal(again.to_array()[4:8], -1.0)
    np.testing.assert_array_equal(again.to_array()[[0, 1, 2, 3, 8, 9], 0], [0, 1, 2, 3, 8, 9])


def test_streamed_averaged_sgd_records_the_seconds_of_each_pass(tmp_path):
    from sklearn.pipeline import Pipeline

    from bench.progress import Progress
    from bench.streaming import streamed_classifier
    from classicvision.kernels import LinearSVM

    rng = np.random.RandomState(0)
    X = rng.randn(300, 6).astype(np.float32)
    y = X[:, :3].argmax(1)
    train = FeatureStore.create(tmp_path / "tr", 300, 6, dtype="float32", chunk_rows=100)
    train.write(0, X)
    rest = Pipeline([("svm", LinearSVM(solver="minibatch-asgd", n_passes=3, random_state=0))])
    _, scores, timings = streamed_classifier(rest, train, y, train, seed=0, name="t", progress=Progress(None))
    assert scores.shape == (300, 3) and np.mean(scores.argmax(1) == y) > 0.8
    passes = timings["classifier_pass_seconds"]
    assert len(passes) == 3 and all(0 < p <= timings["classifier_fit_seconds"] for p in passes)


def test_lazy_splits_are_handed_over_without_pixels(tmp_path):
    root = _folder(tmp_path / "photos", per_class=4)
    b = load_image_folder(root, lazy=True)
    assert is_lazy(b.images)
    split = Split(b.images, np.asarray(b.target), list(b.target_names), list(b.filenames))
    index = save_split_sets([(0, split, split)], tmp_path / "handoff")
    assert sum(f.stat().st_size for f in (tmp_path / "handoff").iterdir()) < 20_000  # names, no pixels
    ((_, train, _),) = load_split_sets(index)
    assert is_lazy(train.images) and len(train.images) == 12
    np.testing.assert_array_equal(train.images[5], b.images[5])
    sub = take(b.images, [0, 7])
    assert is_lazy(sub) and len(sub) == 2
    np.testing.assert_array_equal(sub[1], b.images[7])


def test_lazy_digest_names_the_files_not_the_pixels(tmp_path):
    root = _folder(tmp_path / "photos", per_class=3)
    y = np.arange(9) % 3
    first = dataset_digest(load_image_folder(root, lazy=True).images, y)
    assert first == dataset_digest(load_image_folder(root, lazy=True).images, y)
    assert first != dataset_digest(load_image_folder(root, lazy=True).images.with_max_side(20), y)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(root / "class0" / "000.png")
    assert first != dataset_digest(load_image_folder(root, lazy=True).images, y)


def test_compare_on_an_imagenet_layout(tmp_path):
    data = tmp_path / "inet"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_imagenet_like.py"), "--out", str(data),
                    "--classes", "3", "--per-class", "8", "--val-per-class", "3", "--size", "48",
                    "--flat-val", "--jobs", "1"], check=True, capture_output=True)
    out = tmp_path / "run"
    rc = cli.main(["compare", "--dataset", "imagenet", "--root", str(data), "--pipelines", "lbp_svm",
                   "--cnn", "none", "--stream", "--no-latency", "--out", str(out), "--quiet"])
    assert rc == 0
    report = _read(out)
    assert report["dataset"]["n_train"] == 24 and report["dataset"]["n_test"] == 9
    assert report["runs"][0]["status"] == "ok"


def test_stream_refuses_what_needs_images_in_memory(tmp_path, capsys):
    root = _folder(tmp_path / "photos", per_class=4)
    rc = cli.main(["compare", "--dataset", "folder", "--root", str(root), "--pipelines", "hog_svm",
                   "--cnn", "none", "--stream", "--robustness", "--save-models", "--out", str(tmp_path / "r")])
    assert rc == 2 and "without --stream" in capsys.readouterr().err
    rc = cli.main(["compare", "--dataset", "imagenet", "--pipelines", "hog_svm", "--cnn", "none",
                   "--out", str(tmp_path / "i")])
    assert rc == 2 and "needs --root" in capsys.readouterr().err
    rc = cli.main(["compare", "--scheduler", "tcp://127.0.0.1:1", "--dask-workers", "2",
                   "--out", str(tmp_path / "d")])
    assert rc == 2 and "give one" in capsys.readouterr().err


def test_extractors_fit_on_a_lazy_sequence_as_on_the_decoded_list(tmp_path):
    from classicvision.features import HOG, RawPatches

    root = _folder(tmp_path / "photos", per_class=4)
    lazy = load_image_folder(root, lazy=True).images
    decoded = [lazy[i] for i in range(len(lazy))]
    a = RawPatches(patch_size=6, step=4, whiten=True, random_state=0).fit(lazy)
    b = RawPatches(patch_size=6, step=4, whiten=True, random_state=0).fit(decoded)
    np.testing.assert_array_equal(a.whitening_, b.whitening_)
    assert a.n_channels_ == b.n_channels_
    h = HOG(output="vector", resize=(32, 32)).fit(lazy)
    assert h.n_features_out_ == HOG(output="vector", resize=(32, 32)).fit(decoded).n_features_out_


class _CountingLazy:
    """A lazy sequence over decoded images that counts the images it decodes."""

    fingerprint = "counting"

    def __init__(self, images, counter=None):
        self._images, self.decoded = images, [0] if counter is None else counter

    def __len__(self):
        return len(self._images)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            image = self._images[int(key)]  # IndexError past the end, as list() expects
            self.decoded[0] += 1
            return image
        idx = np.arange(len(self._images))[key]
        return _CountingLazy([self._images[i] for i in idx], self.decoded)


@pytest.mark.parametrize("output", ["descriptors", "vector"])
def test_hog_fit_decodes_a_sample_of_a_lazy_sequence_not_all_of_it(output):
    """HOG.fit once decoded every image of a lazy sequence (nec2010's codebook fit on 8,000
    lazy images held them all: its run's peak grew with the dataset)."""
    from classicvision.base import is_lazy_sequence
    from classicvision.features import HOG
    from classicvision.features._common import LAZY_FIT_SAMPLE

    rng = np.random.RandomState(0)
    lazy = _CountingLazy([rng.randint(0, 256, (40, 40), dtype=np.uint8) for _ in range(300)])
    assert is_lazy_sequence(lazy)
    lazy.decoded[0] = 0
    hog = HOG(output=output, pixels_per_cell=8).fit(lazy)
    assert lazy.decoded[0] <= LAZY_FIT_SAMPLE
    assert hog.n_features_out_ == HOG(output=output, pixels_per_cell=8).fit(lazy._images).n_features_out_
