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
    body = ("class TinyStep:\n"  # estimator-like without importing scikit-learn (slow to import)
            "    def __init__(self, k=1):\n        self.k = k\n\n"
            "    def get_params(self, deep=True):\n        return {{'k': self.k}}\n\n"
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


# ----------------------------------------------------------------------------- reports
def _report(runs, dataset="scene15"):
    return {
        "dataset": {"name": dataset, "n_train": 30, "n_test": 30, "classes": ["a", "b", "c"]},
        "environment": {"python": "3.11", "packages": {}, "cpu": {"model": "Test CPU", "count": 2}, "gpu": None},
        "runs": runs,
    }


def _ok_run(name="hog_svm", track="classic", top1=0.6, fit=3.0, params=None, **extra):
    cm = [[8, 1, 1], [1, 6, 3], [2, 2, 6]]
    rec = {"name": name, "track": track, "params": params or {}, "status": "ok", "error": None,
           "top1": top1, "top5": 1.0, "macro_f1": 0.6, "mean_class_accuracy": 0.6667,
           "per_class_recall": [0.8, 0.6, 0.6], "confusion": cm, "fit_seconds": fit, "predict_seconds": 0.3,
           "images_per_second": 100.0, "model_bytes": 2_000_000}
    rec.update(extra)
    return rec


def _failed_run(name="fisher", **extra):
    rec = {k: None for k in _ok_run()}
    rec.update(name=name, track="classic", params={}, status="failed", error="MemoryError: ")
    rec.update(extra)
    return rec


def _splits(top1, mca):
    k = len(top1)
    return {"n": k, "seeds": list(range(k)), "top1": top1, "mean_class_accuracy": mca,
            "top1_mean": float(np.mean(top1)), "top1_std": float(np.std(top1, ddof=1)) if k > 1 else 0.0,
            "mean_class_accuracy_mean": float(np.mean(mca)),
            "mean_class_accuracy_std": float(np.std(mca, ddof=1)) if k > 1 else 0.0}


def _section(md, heading):
    return md.split(heading, 1)[1].split("\n## ", 1)[0]


def test_md_table_is_public_and_the_old_name_still_works():
    from bench.report import _md_table, md_table

    rows = [{"a": "1", "b": "x|y"}]
    assert md_table(rows) == _md_table(rows) == "| a | b |\n|---|---|\n| 1 | x\\|y |\n"
    assert md_table([]) == "_(none)_\n"


def test_peak_rss_column_and_absent_in_old_reports(tmp_path):
    from bench.report import format_bytes, render_markdown, summary_rows, write_reports

    assert format_bytes(1.2 * 2**30) == "1.2 GiB" and format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**20 + 2**19) == "3.5 MiB" and format_bytes(None) == "–"
    rep = _report([_ok_run(max_rss_bytes=int(1.2 * 2**30)), _ok_run("lbp_svm"),
                   _failed_run(max_rss_bytes=int(21.7 * 2**30))])
    rows = summary_rows(rep)
    assert [r["peak RSS"] for r in rows] == ["1.2 GiB", "–", "21.7 GiB"]
    md = render_markdown(rep)
    assert "peak RSS" in _section(md, "## Side by side") and "| 1.2 GiB |" in md
    write_reports(rep, tmp_path, figures=False)
    summary = (tmp_path / "report.html").read_text().split('<table id="summary">')[1].split("</table>")[0]
    assert "<th>peak RSS</th>" in summary and "<td>1.2 GiB</td>" in summary
    old = _report([_ok_run(), _ok_run("lbp_svm")])  # reports written before the field
    assert all("peak RSS" not in r for r in summary_rows(old))
    assert "peak RSS" not in render_markdown(old)


def test_repeated_splits_are_shown_as_mean_and_std():
    from bench.report import render_markdown, summary_rows

    sp = _splits([0.63, 0.645, 0.64, 0.65, 0.6410], [0.62, 0.64, 0.63, 0.655, 0.64])
    rep = _report([_ok_run(top1=0.63, splits=sp), _ok_run("lbp_svm", top1=0.7)])
    rows = summary_rows(rep)
    m, s = 100 * sp["top1_mean"], 100 * sp["top1_std"]
    assert rows[0]["top-1 %"] == f"{m:.2f} ± {s:.2f}% (5 splits)"
    m2, s2 = 100 * sp["mean_class_accuracy_mean"], 100 * sp["mean_class_accuracy_std"]
    assert rows[0]["mean class acc %"] == f"{m2:.2f} ± {s2:.2f}%"
    assert rows[1]["top-1 %"] == "70.00" and rows[1]["mean class acc %"] == "66.67"  # a single split
    one = _report([_ok_run(splits=_splits([0.6412], [0.6]))])
    assert summary_rows(one)[0]["top-1 %"] == "64.12 ± 0.00% (1 splits)"
    # a record with the per-split values only: summaries computed (std with ddof=1)
    bare = _report([_ok_run(splits={"n": 2, "seeds": [0, 1], "top1": [0.60, 0.62],
                                    "mean_class_accuracy": [0.5, 0.5]})])
    assert summary_rows(bare)[0]["top-1 %"] == f"61.00 ± {100 * np.std([0.6, 0.62], ddof=1):.2f}% (2 splits)"
    assert "(5 splits)" in render_markdown(rep)


@pytest.mark.parametrize("published,shown", [
    ("64.6 ± 0.8", "64.6 ± 0.8%"),
    ({"value": 0.646, "std": 0.008, "metric": "mean_class_accuracy"}, "64.6 ± 0.8%"),
    ({"value": "64.6 +/- 0.8", "metric": "mean_class_accuracy"}, "64.6 ± 0.8%"),
    ({"value": 0.6463, "std": 0.0081, "metric": "mean_class_accuracy"}, "64.63 ± 0.81%"),
    (0.646, "64.60"),
])
def test_reproduction_compares_split_means_with_published_mean_and_std(monkeypatch, published, shown):
    from bench.published import reproduction_rows
    from bench.report import render_markdown
    from classicvision.presets import PRESETS

    monkeypatch.setitem(PRESETS, "cv_test_preset", {"published": {"scene15": published}, "citation": "Someone 2006"})
    sp = _splits([0.63, 0.65, 0.64], [0.62, 0.66, 0.64])
    rep = _report([_ok_run("cv_test_preset", params={"preset": "cv_test_preset"}, top1=0.5,
                           mean_class_accuracy=0.5, splits=sp)])
    (row,) = reproduction_rows(rep)
    metric = row["metric"]
    assert row["measured"] == pytest.approx(sp[f"{metric}_mean"]) and row["n_splits"] == 3
    assert row["measured_std"] == pytest.approx(sp[f"{metric}_std"])
    assert row["difference"] == pytest.approx(sp[f"{metric}_mean"] - 0.646, abs=1e-3)  # the gap of the means
    repro = _section(render_markdown(rep), "## Reproduction")
    line = next(ln for ln in repro.splitlines() if ln.startswith("| cv_test_preset"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == shown
    m, s = 100 * sp[f"{metric}_mean"], 100 * sp[f"{metric}_std"]
    assert cells[3] == f"{m:.2f} ± {s:.2f}% (3 splits)"
    assert cells[4] == f"{100 * (sp[f'{metric}_mean'] - row['published']):+.2f}"


def test_reproduction_without_splits_is_unchanged(monkeypatch):
    from bench.published import reproduction_rows
    from bench.report import render_markdown
    from classicvision.presets import PRESETS

    monkeypatch.setitem(PRESETS, "cv_test_preset", {"published": {"scene15": 0.7}, "citation": "Someone"})
    rep = _report([_ok_run("cv_test_preset", params={"preset": "cv_test_preset"}, top1=0.65)])
    (row,) = reproduction_rows(rep)
    assert row["published_std"] is None and row["measured_std"] is None and row["n_splits"] is None
    assert "| cv_test_preset | classic | 70.00 | 65.00 | -5.00 |" in render_markdown(rep)


def test_failed_run_cause_is_shown(tmp_path):
    from bench.report import render_benchmarks, render_markdown, write_reports

    cause = "killed by signal 9, probably out of memory; peak RSS 21.7 GiB"
    rep = _report([_ok_run(), _failed_run(cause=cause, error=None), _failed_run("vlad", error="ValueError: x")])
    failed = _section(render_markdown(rep), "### Failed runs")
    assert "| name | track | cause | error |" in failed
    assert f"| fisher | classic | {cause} | – |" in failed
    assert "| vlad | classic | – | ValueError: x |" in failed
    assert cause in render_benchmarks([("here", rep)])
    write_reports(rep, tmp_path, figures=False)
    html_failed = (tmp_path / "report.html").read_text().split('<table id="failed">')[1].split("</table>")[0]
    assert "<th>cause</th>" in html_failed and "peak RSS 21.7 GiB" in html_failed
    old = _report([_ok_run(), _failed_run()])
    assert "| name | track | error |" in render_markdown(old) and "cause" not in render_markdown(old)


def _visible_labelled_xticks(fig):
    fig.canvas.draw()
    (ax,) = fig.axes
    lo, hi = ax.get_xlim()
    return [t.get_text() for t, loc in zip(ax.xaxis.get_majorticklabels(), ax.xaxis.get_majorticklocs())
            if t.get_text() and lo <= loc <= hi]


@pytest.mark.parametrize("fits", [[40.0], [12.0, 18.0], [0.15, 0.3], [3.0, 30.0], [0.05, 5000.0]])
def test_accuracy_vs_time_axes(tmp_path, fits):
    from bench.report import plot_accuracy_vs_time

    runs = [_ok_run(f"r{i}", fit=f, top1=0.995 - 0.01 * i) for i, f in enumerate(fits)]
    fig = plot_accuracy_vs_time(runs, tmp_path / "avt.png")
    assert (tmp_path / "avt.png").read_bytes()[:4] == b"\x89PNG"
    labels = _visible_labelled_xticks(fig)
    assert len(labels) >= 2, labels
    assert len(labels) <= 10
    (ax,) = fig.axes
    bottom, top = ax.get_ylim()
    assert top <= 100.0 and bottom < 100 * 0.995 - 0.01 * (len(fits) - 1)


def test_accuracy_vs_time_uses_the_split_mean():
    from bench.report import plot_accuracy_vs_time

    sp = _splits([0.5, 0.7], [0.5, 0.7])
    fig = plot_accuracy_vs_time([_ok_run(top1=0.9, fit=10.0, splits=sp)], None)
    (ax,) = fig.axes
    (points,) = [c for c in ax.collections if len(c.get_offsets()) and c.get_offsets().shape[1] == 2
                 and type(c).__name__ == "PathCollection"]
    assert points.get_offsets()[0][1] == pytest.approx(60.0)


def test_concurrent_write_reports_never_collide_and_files_are_0644(tmp_path):
    from bench.report import write_reports

    rep = _report([_ok_run(), _ok_run("lbp_svm", fit=9.0, top1=0.7)])
    old = os.umask(0o022)
    try:
        write_reports(rep, tmp_path)  # with the figures, once
        errors = []

        def writer():
            try:
                for _ in range(20):
                    write_reports(rep, tmp_path, figures=False)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old)
    assert errors == []
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == ["accuracy_vs_time.png", "confusion_hog_svm.png", "confusion_lbp_svm.png",
                     "report.html", "report.json", "report.md"]  # no temporary file left
    for f in tmp_path.iterdir():
        assert f.stat().st_mode & 0o777 == 0o644, f
    assert json.loads((tmp_path / "report.json").read_text())["runs"][1]["name"] == "lbp_svm"


def test_atomic_write_mode_follows_the_umask(tmp_path):
    from bench.report import write_json_atomic

    old = os.umask(0o077)
    try:
        write_json_atomic({"runs": []}, tmp_path / "report.json")
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o600
    old = os.umask(0o002)
    try:
        write_json_atomic({"runs": []}, tmp_path / "report.json")
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o664


def test_load_report_names_what_is_wrong(tmp_path):
    from bench.report import load_report

    good = tmp_path / "good"
    good.mkdir()
    (good / "report.json").write_text(json.dumps(_report([_ok_run()])))
    assert load_report(good)["runs"][0]["name"] == "hog_svm"
    assert load_report(good / "report.json")["dataset"]["name"] == "scene15"

    folder = tmp_path / "folder"
    (folder / "report.json").mkdir(parents=True)
    with pytest.raises(ValueError, match=rf"{folder / 'report.json'}: is a folder"):
        load_report(folder)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{listed}: a JSON list, expected a JSON object"):
        load_report(listed)
    norun = tmp_path / "norun.json"
    norun.write_text('{"dataset": {}}')
    with pytest.raises(ValueError, match=rf"{norun}: no \"runs\""):
        load_report(norun)
    badruns = tmp_path / "badruns.json"
    badruns.write_text('{"runs": {"a": 1}}')
    with pytest.raises(ValueError, match=rf"{badruns}: \"runs\" is a JSON object"):
        load_report(badruns)
    notjson = tmp_path / "broken.json"
    notjson.write_text('{"runs": [')
    with pytest.raises(ValueError, match=rf"{notjson}: not valid JSON"):
        load_report(notjson)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'nope'}: no such file"):
        load_report(tmp_path / "nope")


def test_render_benchmarks_names_a_report_that_is_not_one(tmp_path):
    from bench.report import render_benchmarks

    assert "## scene15 (good)" in render_benchmarks([("good", _report([_ok_run()]))])
    with pytest.raises(ValueError, match="runs/b/report.json: not a report"):
        render_benchmarks([("good", _report([_ok_run()])), ("runs/b/report.json", [1, 2])])
    with pytest.raises(ValueError, match="runs/c: not a report"):
        render_benchmarks([("runs/c", {"dataset": {}})])
