"""The features cache verifies what it serves and follows code changes; the reports
are written with unique temporary files, readable modes, labelled figure axes and the
peak-memory / repeated-split / failure-cause fields."""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from bench import cache as cache_mod
from bench.cache import FeatureCache, features_step_signature, step_source_digest


# ----------------------------------------------------------------------------- features cache
def _put(cache, key, seed=0, step=None):
    rng = np.random.default_rng(seed)
    tr = rng.standard_normal((5, 3)).astype(np.float32)
    te = rng.standard_normal((4, 3)).astype(np.float32)
    assert cache.put(key, train=tr, test=te, features_step=step,
                     meta={"features_fit_seconds": 1.5, "features_test_seconds": 0.5, "preset": "hog_svm"})
    return tr, te


def _key(cache, i=0):
    return cache.make_key(dataset={"i": i}, step_signature="sig", version="1")


def _tamper_array(d: Path, name: str):
    """Replace an array by random floats of the same shape and dtype (same file size)."""
    arr = np.load(d / name)
    size = (d / name).stat().st_size
    np.save(d / name, np.random.default_rng(99).standard_normal(arr.shape).astype(arr.dtype))
    assert (d / name).stat().st_size == size


def _tamper_meta(d: Path, name: str):
    meta = json.loads((d / "meta.json").read_text())
    meta["features_fit_seconds"] = 0.001  # a timing changed by hand
    (d / "meta.json").write_text(json.dumps(meta))


def _truncate(d: Path, name: str):
    data = (d / name).read_bytes()
    (d / name).write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name,tamper", [("train.npy", _tamper_array), ("test.npy", _tamper_array),
                                         ("meta.json", _tamper_meta), ("test.npy", _truncate),
                                         ("meta.json", _truncate)])
def test_tampered_entry_is_removed_with_a_warning_and_recomputed(tmp_path, name, tamper):
    cache = FeatureCache(tmp_path)
    key = _key(cache)
    tr, te = _put(cache, key)
    d = tmp_path / key
    tamper(d, name)
    with pytest.warns(RuntimeWarning, match=f"{key}.*corrupt"):
        assert cache.get(key) is None
    assert not d.exists()  # removed, not failing again on every run
    assert cache.entries() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(key) is None  # a plain miss now
    tr2, te2 = _put(cache, key, seed=1)  # the caller recomputes and writes again
    hit = cache.get(key)
    np.testing.assert_array_equal(hit["train"], tr2)
    np.testing.assert_array_equal(hit["test"], te2)


def test_missing_array_is_detected(tmp_path):
    cache = FeatureCache(tmp_path)
    key = _key(cache)
    _put(cache, key)
    (tmp_path / key / "train.npy").unlink()
    with pytest.warns(RuntimeWarning, match="train.npy"):
        assert cache.get(key) is None
    assert not (tmp_path / key).exists()


def test_tampered_features_step_is_detected(tmp_path, monkeypatch):
    from bench import models_io

    # skops is slow to import: the cache only needs the file written
    monkeypatch.setattr(models_io, "dump_skops", lambda obj, path: Path(path).write_bytes(b"PK fitted step"))
    cache = FeatureCache(tmp_path)
    key = _key(cache)
    _put(cache, key, step=object())
    meta = json.loads((tmp_path / key / "meta.json").read_text())
    assert meta[cache_mod.MARKER] and set(meta["checksums"]) == {"train.npy", "test.npy", "features.skops"}
    assert cache.get(key)["features_path"] == tmp_path / key / "features.skops"
    with open(tmp_path / key / "features.skops", "ab") as fh:
        fh.write(b"x")
    with pytest.warns(RuntimeWarning, match="features.skops"):
        assert cache.get(key) is None


def test_verified_arrays_are_memory_mapped_and_do_not_write_back(tmp_path):
    cache = FeatureCache(tmp_path)
    key = _key(cache)
    tr, _ = _put(cache, key)
    hit = cache.get(key)
    assert isinstance(hit["train"], np.memmap) and hit["train"].dtype == np.float32
    hit["train"][:] = 0.0  # an in-place consumer (copy=False scaler) changes its copy only
    again = cache.get(key)
    np.testing.assert_array_equal(again["train"], tr)


def test_folders_without_the_marker_are_not_entries(tmp_path, monkeypatch):
    from bench import cli

    monkeypatch.setenv("CLASSICVISION_CACHE", str(tmp_path))
    cache = FeatureCache()
    key = _key(cache)
    _put(cache, key)
    user = tmp_path / ("ab" * 20)  # named like a key, the user's own
    user.mkdir()
    (user / "meta.json").write_text('{"mine": true}')
    (user / "notes.txt").write_text("keep me")
    other = tmp_path / ("cd" * 20)
    other.mkdir()
    (other / "photo.png").write_bytes(b"png")
    assert [e["key"] for e in cache.entries()] == [key]
    with pytest.warns(RuntimeWarning, match="not an entry"):
        assert cache.get("ab" * 20) is None
    with pytest.warns(RuntimeWarning, match="not an entry"):
        assert cache.get("cd" * 20) is None
    assert cli.main(["cache", "clear", "--all"]) == 0
    assert not (tmp_path / key).exists()
    assert (user / "notes.txt").read_text() == "keep me" and (other / "photo.png").is_file()
    assert cache.remove(everything=True) == []
    assert user.is_dir() and other.is_dir()


def test_entry_with_lost_meta_is_listed_as_partial_and_cleared(tmp_path):
    cache = FeatureCache(tmp_path)
    key = _key(cache)
    _put(cache, key)
    (tmp_path / key / "meta.json").unlink()
    (entry,) = cache.entries()
    assert entry["key"] == key and entry["partial"]
    assert [e["key"] for e in cache.remove(everything=True)] == [key]
    assert not (tmp_path / key).exists()


def test_step_source_change_changes_the_key(tmp_path, monkeypatch):
    mod_file = tmp_path / "cv_throwaway_step.py"
    body = ("from sklearn.base import BaseEstimator, TransformerMixin\n\n"
            "class TinyStep(BaseEstimator, TransformerMixin):\n"
            "    def __init__(self, k=1):\n        self.k = k\n\n"
            "    def fit(self, X, y=None):\n        return self\n\n"
            "    def transform(self, X):\n        return X * {factor}\n")
    mod_file.write_text(body.format(factor=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cv_throwaway_step", raising=False)
    mod = importlib.import_module("cv_throwaway_step")
    sig_a = features_step_signature(mod.TinyStep())
    assert sig_a == features_step_signature(mod.TinyStep())  # memoized, stable
    key_a = FeatureCache.make_key(dataset={"d": 1}, step_signature=sig_a, version="1")

    mod_file.write_text(body.format(factor=0))  # "replace the code with zeros"
    st = mod_file.stat()
    os.utime(mod_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    mod = importlib.reload(mod)
    sig_b = features_step_signature(mod.TinyStep())
    assert sig_b != sig_a
    assert FeatureCache.make_key(dataset={"d": 1}, step_signature=sig_b, version="1") != key_a
    # the parameters part is unchanged: only the source digest differs
    assert sig_a.split(" source=")[0] == sig_b.split(" source=")[0]


def test_source_digest_covers_nested_estimators(monkeypatch):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from classicvision.features import HOG

    inner = step_source_digest(Pipeline([("hog", HOG(output="vector"))]))
    seen = []
    real = cache_mod._file_digest

    def fake(path):
        seen.append(path)
        return "changed" if path.endswith("_hog.py") else real(path)

    monkeypatch.setattr(cache_mod, "_file_digest", fake)
    assert step_source_digest(Pipeline([("hog", HOG(output="vector"))])) != inner  # the nested HOG's file
    assert any(p.endswith(os.path.join("classicvision", "features", "_hog.py")) for p in seen)
    assert step_source_digest(StandardScaler()) == step_source_digest(StandardScaler())
