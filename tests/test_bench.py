"""Tests of ``python -m bench``: compare (report contract, cache, resume, failures),
list, predict, speed dispatch, benchmarks rendering and safe model files."""

from __future__ import annotations

import json
import os
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bench import cli
from bench.cache import FeatureCache, dataset_digest, features_step_signature
from bench.compare import UsageError, check_names, parse_specs, stratified_subset
from bench.models_io import UntrustedModelError, dump_skops, load_skops
from bench.report import write_json_atomic
from bench.scoring import compute_scores

RUN_KEYS = {
    "name", "track", "params", "status", "error", "top1", "top5", "macro_f1", "per_class_recall",
    "confusion", "fit_seconds", "predict_seconds", "images_per_second", "model_bytes",
}


# 200 images at the default batch size (128, last partial batch dropped) would give one
# SGD step per epoch; a smaller batch gives the tiny CNN enough steps to learn.
CNN_E2E = "small_convnet:batch_size=32"


def _has_presets() -> bool:
    try:
        from classicvision.presets import PRESETS
    except Exception:
        return False
    return "hog_svm" in PRESETS


needs_presets = pytest.mark.skipif(not _has_presets(), reason="classicvision.presets (hog_svm) not available")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSICVISION_CACHE", str(tmp_path / "feature-cache"))


def _read(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """One small real comparison on digits: hog_svm and small_convnet, models saved."""
    if not _has_presets():
        pytest.skip("classicvision.presets (hog_svm) not available")
    base = tmp_path_factory.mktemp("e2e")
    out = base / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSICVISION_CACHE", str(base / "cache"))
        rc = cli.main(["compare", "--pipelines", "hog_svm", "--cnn", CNN_E2E, "--limit", "200",
                       "--epochs", "4", "--save-models", "--out", str(out), "--seed", "0", "--quiet"])
    assert rc == 0
    return out


def test_report_json_contract(e2e):
    rep = _read(e2e)
    assert set(rep["dataset"]) >= {"name", "n_train", "n_test", "classes"}
    assert rep["dataset"]["name"] == "digits"
    assert rep["dataset"]["n_train"] == 200 and rep["dataset"]["n_test"] == 200
    assert rep["dataset"]["classes"] == [str(i) for i in range(10)]
    env = rep["environment"]
    assert set(env) >= {"python", "packages", "cpu", "gpu"}
    assert set(env["packages"]) >= {"numpy", "scikit-learn", "scikit-image", "opencv", "torch", "torchvision",
                                    "classicvision"}
    assert env["cpu"]["count"] >= 1 and env["cpu"]["model"]
    assert [r["track"] for r in rep["runs"]] == ["classic", "cnn"]
    n_test = rep["dataset"]["n_test"]
    for r in rep["runs"]:
        assert RUN_KEYS <= set(r), RUN_KEYS - set(r)
        assert r["status"] == "ok" and r["error"] is None
        cm = np.asarray(r["confusion"])
        assert cm.shape == (10, 10) and cm.sum() == n_test
        assert r["top1"] == pytest.approx(np.trace(cm) / n_test)
        assert 0.3 < r["top1"] <= r["top5"] <= 1.0  # well above chance (0.1)
        assert len(r["per_class_recall"]) == 10
        assert r["model_bytes"] > 0
        assert r["images_per_second"] == pytest.approx(n_test / r["predict_seconds"])
        assert r["fit_seconds"] > 0
    for r in rep["runs"]:  # mean of the per-class recalls, as classicvision.metrics computes it
        assert r["mean_class_accuracy"] == pytest.approx(np.mean(r["per_class_recall"]))
    classic = rep["runs"][0]["params"]
    assert classic["preset_dataset"] is None  # hog_svm has no digits settings: the defaults
    assert classic["effective"]["cell"] == 4 and "n_jobs" not in classic["effective"]
    assert rep["runs"][1]["params"]["overrides"] == {"batch_size": 32}
    assert rep["runs"][1]["params"]["dataset_defaults"] == {"flip": False}  # digits: no mirror images
    # the classic run is strong even with 200 training images
    assert rep["runs"][0]["top1"] > 0.8


def test_report_files(e2e):
    md = (e2e / "report.md").read_text()
    for heading in ("## Side by side", "## Reproduction", "## Per-class recall", "## Environment"):
        assert heading in md
    assert "| hog_svm | classic |" in md and f"| {CNN_E2E} | cnn |" in md
    for col in ("model MB", "top-1 %", "top-5 %", "mean class acc %", "macro-F1 %", "fit s", "predict ms/image",
                "images/s"):
        assert col in md
    for name in ("confusion_hog_svm.png", "confusion_small_convnet_batch_size=32.png", "accuracy_vs_time.png"):
        data = (e2e / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (e2e / "report.html").read_text().count("data:image/png;base64,") == 4


def test_saved_classic_model_reproduces_score(e2e):
    """The saved .skops pipeline, loaded safely, gives the reported top-1 on the same test set."""
    from bench.compare import load_splits

    rep = _read(e2e)
    args = cli.get_args_parser().parse_args(["compare", "--limit", "200", "--seed", "0"])
    _, test, _ = load_splits(args)
    model = load_skops(e2e / "models" / "hog_svm.skops")
    acc = float(np.mean(model.predict(test.images) == test.target))
    assert acc == pytest.approx(rep["runs"][0]["top1"])
    assert rep["runs"][0]["model_bytes"] == (e2e / "models" / "hog_svm.skops").stat().st_size


def test_predict_cli(e2e, tmp_path, capsys):
    import cv2

    from classicvision.datasets import load_dataset

    b = load_dataset("digits", split="test")
    good = []
    for i in range(2):
        p = tmp_path / f"digit{i}.png"
        cv2.imwrite(str(p), b.images[i])
        good.append(str(p))
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    missing = tmp_path / "missing.png"
    for model in ("hog_svm.skops", "small_convnet_batch_size=32.pt"):
        capsys.readouterr()
        rc = cli.main(["predict", str(e2e / "models" / model), good[0], str(bad), str(missing), good[1],
                       "--top-k", "3"])
        out, err = capsys.readouterr()
        assert rc == 1
        assert str(bad) in err and str(missing) in err
        assert out.count("rank") == 2  # both good images still printed
        lines = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
        assert len(lines) == 6 and all(ln[1] in [str(d) for d in range(10)] for ln in lines)
        values = [float(ln[2]) for ln in lines]
        assert all(0.0 <= v <= 1.0 for v in values)
    rc = cli.main(["predict", str(e2e / "models" / "small_convnet_batch_size=32.pt"), *good])
    assert rc == 0


def test_benchmarks_render(e2e, tmp_path, capsys):
    dest = tmp_path / "BENCHMARKS.md"
    assert cli.main(["benchmarks", "--from", str(e2e), "--write", str(dest)]) == 0
    text = dest.read_text()
    assert "## digits" in text and "| hog_svm | classic |" in text and "Machine:" in text
    assert cli.main(["benchmarks", "--from", str(tmp_path / "nope"), "--write", str(dest)]) == 2


# ----------------------------------------------------------------------------- cache / resume
@needs_presets
def test_mirror_augmented_preset_matches_its_saved_model(tmp_path):
    """``coates_kmeans:mirror=True``: bench trains on 2n images, averages the test scores over
    each image and its mirror, and the saved MirrorAugmented model gives the same top-1."""
    from bench.compare import load_splits
    from classicvision.augment import MirrorAugmented

    spec = "coates_kmeans:mirror=True:n_words=16:max_descriptors=2000:features__extractor__patch_size=4"
    out = tmp_path / "m"
    assert cli.main(["compare", "--pipelines", spec, "--cnn", "none", "--limit", "120", "--seed", "0",
                     "--save-models", "--quiet", "--out", str(out)]) == 0
    run = _read(out)["runs"][0]
    assert run["status"] == "ok" and run["mirror"] == {"train": True, "test_time": True}
    assert run["n_features"] == 4 * 16
    model = load_skops(run["model_path"])
    assert isinstance(model, MirrorAugmented) and model.test_time
    args = cli.get_args_parser().parse_args(["compare", "--limit", "120", "--seed", "0"])
    _, test, _ = load_splits(args)
    assert float(np.mean(model.predict(test.images) == test.target)) == pytest.approx(run["top1"])


@needs_presets
def test_mirror_symmetric_preset_saves_and_reloads(tmp_path):
    """``coates_soft_threshold:mirror=symmetric``: an ordinary features step for bench (n rows,
    no score averaging); the saved model reloads and is mirror-invariant."""
    from bench.compare import load_splits
    from classicvision.augment import MirrorSymmetric, mirror_images

    spec = ("coates_soft_threshold:mirror=symmetric:n_words=16:max_descriptors=2000:"
            "features__transformer__extractor__patch_size=4")
    out = tmp_path / "s"
    assert cli.main(["compare", "--pipelines", spec, "--cnn", "none", "--limit", "120", "--seed", "0",
                     "--save-models", "--quiet", "--out", str(out)]) == 0
    run = _read(out)["runs"][0]
    assert run["status"] == "ok" and "mirror" not in run
    assert run["n_features"] == 4 * 2 * 16
    model = load_skops(run["model_path"])
    assert isinstance(model.named_steps["features"], MirrorSymmetric)
    args = cli.get_args_parser().parse_args(["compare", "--limit", "120", "--seed", "0"])
    _, test, _ = load_splits(args)
    assert float(np.mean(model.predict(test.images) == test.target)) == pytest.approx(run["top1"])
    np.testing.assert_allclose(model.decision_function(mirror_images(test.images[:10])),
                               model.decision_function(test.images[:10]), rtol=1e-4, atol=1e-4)


def test_idle_workers_are_released_and_respawned():
    import os

    from joblib import Parallel, delayed
    from joblib.externals.loky import reusable_executor

    from bench.runners import release_idle_workers

    first = set(Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4)))
    release_idle_workers()
    executor = reusable_executor._executor
    assert executor is None or executor._flags.shutdown  # no live workers left behind
    again = set(Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4)))
    assert again and not (again & first)  # fresh workers for the next parallel call


def test_cache_hit_gives_identical_scores(tmp_path):
    base = ["compare", "--pipelines", "hog_svm", "--cnn", "none", "--limit", "120", "--quiet"]
    assert cli.main(base + ["--out", str(tmp_path / "a")]) == 0
    assert cli.main(base + ["--out", str(tmp_path / "b")]) == 0
    assert cli.main(base + ["--out", str(tmp_path / "c"), "--no-cache"]) == 0
    a, b, c = (_read(tmp_path / d)["runs"][0] for d in "abc")
    assert a["cache_hit"] is False and b["cache_hit"] is True and c["cache_hit"] is False
    for key in ("top1", "top5", "macro_f1", "confusion", "per_class_recall"):
        assert a[key] == b[key] == c[key]
    # same fitted model; the skops zip may differ by a few bytes (object ids in member names)
    assert b["model_bytes"] == pytest.approx(a["model_bytes"], rel=0.01)
    # another classifier on the same features step (an SVM C override) reuses them too
    assert cli.main(["compare", "--pipelines", "hog_svm:svm__C=3.0", "--cnn", "none", "--limit", "120",
                     "--quiet", "--out", str(tmp_path / "d")]) == 0
    d = _read(tmp_path / "d")["runs"][0]
    assert d["cache_hit"] is True and d["params"]["overrides"] == {"svm__C": 3.0}
    assert d["n_features"] == a["n_features"]
    entries = [p for p in (tmp_path / "feature-cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1
    assert {f.name for f in entries[0].iterdir()} >= {"train.npy", "test.npy", "meta.json"}


@needs_presets
def test_resume_after_interrupt(tmp_path, in_runs):
    out = tmp_path / "run"
    argv = ["compare", "--pipelines", "hog_svm", "--cnn", "small_convnet", "--limit", "100", "--epochs", "1",
            "--out", str(out), "--quiet"]

    in_runs("def run_cnn(*a, **k):\n    raise KeyboardInterrupt\ncmp.run_cnn = run_cnn\n")
    assert cli.main(argv) == 130
    rep = _read(out)
    assert [(r["name"], r["status"]) for r in rep["runs"]] == [("hog_svm", "ok")]
    first = rep["runs"][0]

    marks = in_runs("def counting(*a, **k):\n    open(os.path.join(MARKS, a[0].name), 'w').close()\n"
                    "    return real_classic(*a, **k)\ncmp.run_classic = counting\n")
    assert cli.main(argv) == 0
    rep = _read(out)
    calls = sorted(p.name for p in marks.iterdir())
    assert calls == []  # the finished run was not redone
    assert [(r["name"], r["status"]) for r in rep["runs"]] == [("hog_svm", "ok"), ("small_convnet", "ok")]
    assert rep["runs"][0] == first
    for r in rep["runs"]:
        assert RUN_KEYS <= set(r)


def test_failed_runs_are_recorded(tmp_path, in_runs, capsys):
    in_runs("def run_cnn(*a, **k):\n    raise RuntimeError('boom in training')\ncmp.run_cnn = run_cnn\n")
    out = tmp_path / "run"
    rc = cli.main(["compare", "--pipelines", "none", "--cnn", "small_convnet,resnet20", "--limit", "50",
                   "--out", str(out), "--quiet"])
    assert rc == 1  # every run failed
    rep = _read(out)
    assert [r["status"] for r in rep["runs"]] == ["failed", "failed"]
    for r in rep["runs"]:
        assert RUN_KEYS <= set(r)
        assert r["error"] == "RuntimeError: boom in training"
        assert r["top1"] is None
        assert "boom in training" in Path(r["log"]).read_text()
        assert "Traceback" in Path(r["log"]).read_text()
    md = (out / "report.md").read_text()
    assert "### Failed runs" in md and "boom in training" in md


@needs_presets
def test_one_failed_run_does_not_stop_the_others(tmp_path, in_runs):
    in_runs("def run_cnn(*a, **k):\n    raise MemoryError('out of memory')\ncmp.run_cnn = run_cnn\n")
    out = tmp_path / "run"
    # exit code 1: some run failed (the others finished and are in the report)
    assert cli.main(["compare", "--cnn", "small_convnet", "--limit", "80", "--out", str(out), "--quiet"]) == 1
    rep = _read(out)
    assert [r["status"] for r in rep["runs"]] == ["ok", "failed"]
    assert rep["runs"][1]["error"].startswith("MemoryError")
    # re-running redoes only the failed run
    marks = in_runs("def run_classic(*a, **k):\n    open(os.path.join(MARKS, 'classic'), 'w').close()\n"
                    "def run_cnn(*a, **k):\n    raise ValueError('still broken')\n"
                    "cmp.run_classic, cmp.run_cnn = run_classic, run_cnn\n")
    assert cli.main(["compare", "--cnn", "small_convnet", "--limit", "80", "--out", str(out), "--quiet"]) == 1
    calls = list(marks.iterdir())
    assert calls == []
    assert _read(out)["runs"][1]["error"] == "ValueError: still broken"


def test_other_options_in_same_out_refused(tmp_path, in_runs, capsys):
    in_runs("def run_cnn(*a, **k):\n    raise RuntimeError('x')\ncmp.run_cnn = run_cnn\n")
    out = tmp_path / "run"
    cli.main(["compare", "--pipelines", "none", "--limit", "40", "--out", str(out), "--quiet"])
    capsys.readouterr()
    rc = cli.main(["compare", "--pipelines", "none", "--limit", "30", "--out", str(out), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "limit" in err and str(out) in err


# ----------------------------------------------------------------------------- fail fast
def test_unknown_model_fails_fast(tmp_path, capsys, monkeypatch):
    import bench.compare as cmp

    monkeypatch.setattr(cmp, "load_splits", lambda *a: pytest.fail("data loaded before name check"))
    out = tmp_path / "run"
    rc = cli.main(["compare", "--pipelines", "none", "--cnn", "small_convnet,resnet2O", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "resnet2O" in err and "resnet20" in err
    assert not out.exists()


@needs_presets
def test_unknown_preset_fails_fast(tmp_path, capsys, monkeypatch):
    import bench.compare as cmp

    monkeypatch.setattr(cmp, "load_splits", lambda *a: pytest.fail("data loaded before name check"))
    rc = cli.main(["compare", "--pipelines", "hog_svn", "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "hog_svn" in err and "hog_svm" in err


def test_check_names_lists_close_matches():
    specs = parse_specs("resnet56,resnt56", "cnn")
    with pytest.raises(UsageError, match=r"unknown model 'resnt56' \(did you mean: resnet56"):
        check_names(specs, ["resnet20", "resnet56", "vgg_bn_drop"], "model")
    with pytest.raises(UsageError, match="twice"):
        check_names(parse_specs("resnet56,resnet56", "cnn"), ["resnet56"], "model")


def test_missing_dataset_path(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "folder"
    rc = cli.main(["compare", "--dataset", "folder", "--root", str(missing), "--pipelines", "none",
                   "--out", str(tmp_path / "r")])
    assert rc == 2
    assert str(missing) in capsys.readouterr().err
    rc = cli.main(["compare", "--dataset", "folder", "--pipelines", "none", "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "--root" in capsys.readouterr().err


def test_nothing_to_run(tmp_path, capsys):
    assert cli.main(["compare", "--pipelines", "none", "--cnn", "none", "--out", str(tmp_path / "r")]) == 2
    assert "nothing to run" in capsys.readouterr().err


# ----------------------------------------------------------------------------- pieces
def test_parse_specs_overrides():
    specs = parse_specs("hog_svm, hog_svm:svm__C=10:name=x , lbp_svm:flag=true:scale=0.5", "classic")
    assert [s.name for s in specs] == ["hog_svm", "hog_svm:svm__C=10:name=x", "lbp_svm:flag=true:scale=0.5"]
    assert specs[1].base == "hog_svm" and specs[1].overrides == {"svm__C": 10, "name": "x"}
    assert specs[2].overrides == {"flag": True, "scale": 0.5}
    # commas inside brackets belong to a tuple value, not to the list of runs
    specs = parse_specs("llc:sizes=(8,12):levels=(1,(3,1)),lbp_svm:grid=[2,2]", "classic")
    assert [s.base for s in specs] == ["llc", "lbp_svm"]
    assert specs[0].overrides == {"sizes": (8, 12), "levels": (1, (3, 1))} and specs[1].overrides == {"grid": [2, 2]}
    assert parse_specs("none", "cnn") == [] and parse_specs("", "cnn") == []
    assert [s.name for s in parse_specs("all", "cnn", all_names=["a", "b"])] == ["a", "b"]
    with pytest.raises(UsageError, match="key=value"):
        parse_specs("hog_svm:C", "classic")


def test_stratified_subset():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    idx = stratified_subset(y, 20, seed=1)
    assert idx.shape == (20,) and np.all(np.diff(idx) > 0)
    counts = np.bincount(y[idx], minlength=4)
    np.testing.assert_allclose(counts, [10, 6, 3, 1], atol=1)
    np.testing.assert_array_equal(idx, stratified_subset(y, 20, seed=1))
    assert not np.array_equal(idx, stratified_subset(y, 20, seed=2))
    np.testing.assert_array_equal(stratified_subset(y, 500, seed=0), np.arange(100))


def _scene_run(name, top1, mean_class_accuracy=None, **extra):
    run = {"name": name, "track": "classic", "params": {"preset": name.split(":")[0]}, "status": "ok",
           "error": None, "top1": top1, "top5": 1.0, "macro_f1": top1, "per_class_recall": [top1, top1],
           "confusion": [[1, 0], [0, 1]], "fit_seconds": 1.0, "predict_seconds": 1.0, "images_per_second": 2.0,
           "model_bytes": 10, **extra}
    if mean_class_accuracy is not None:
        run["mean_class_accuracy"] = mean_class_accuracy
    return run


def _report(dataset, runs):
    return {"dataset": {"name": dataset, "n_train": 2, "n_test": 2, "classes": ["a", "b"]},
            "environment": {"cpu": {"model": "m", "count": 2}}, "runs": runs}


def test_reproduction_rows_compare_the_published_metric():
    """15-Scene figures are mean per-class accuracy: the row measures that, not top-1;
    CIFAR-10 figures stay top-1."""
    from bench.published import published_figure, reproduction_rows
    from bench.report import render_markdown

    fig = published_figure("lazebnik_spm", "classic", "scene15")
    assert fig["metric"] == "mean_class_accuracy" and fig["value"] == pytest.approx(0.814)
    assert "random splits" in fig["note"]
    assert published_figure("scspm", "classic", "scene15")["metric"] == "mean_class_accuracy"
    assert published_figure("coates_kmeans", "classic", "cifar10")["metric"] == "top1"
    resnet = published_figure("resnet20", "cnn", "cifar10")
    assert resnet["metric"] == "top1" and resnet["value"] == pytest.approx(0.9125) and "He" in resnet["citation"]
    [row] = reproduction_rows(_report("scene15", [_scene_run("lazebnik_spm", 0.80, 0.78)]))
    assert row["metric"] == row["measured_metric"] == "mean_class_accuracy"
    assert row["measured"] == 0.78 and row["difference"] == pytest.approx(0.78 - 0.814)
    [row] = reproduction_rows(_report("cifar10", [_scene_run("coates_kmeans", 0.70, 0.75)]))
    assert row["metric"] == "top1" and row["measured"] == 0.70
    md = render_markdown(_report("scene15", [_scene_run("lazebnik_spm", 0.80, 0.78)]))
    assert "| lazebnik_spm | classic | 81.40 | 78.00 | -3.40 | mean class acc |" in md
    assert "row-normalized confusion matrix" in md  # the metric note
    assert "| 80.00 | 100.00 | 78.00 |" in md  # side by side: top-1, top-5, mean class acc


def test_reproduction_rows_of_old_records_fall_back_to_top1():
    """Reports written before runs recorded mean_class_accuracy (and with figures stored in
    the old {"top1": ...} form) still render; the row says that top-1 stands in."""
    from bench.published import reproduction_rows
    from bench.report import render_benchmarks, render_html, render_markdown

    old_fig = {"top1": 0.5, "citation": "Some paper", "note": ""}
    rep = _report("scene15", [_scene_run("lazebnik_spm", 0.79, confusion=None),
                              _scene_run("unknown_system", 0.4, published=old_fig)])
    lazebnik, stored = reproduction_rows(rep)
    assert lazebnik["metric"] == "mean_class_accuracy" and lazebnik["measured_metric"] == "top1"
    assert lazebnik["measured"] == 0.79 and lazebnik["published"] == pytest.approx(0.814)
    assert stored["metric"] == stored["measured_metric"] == "top1" and stored["published"] == 0.5
    md = render_markdown(rep)
    assert "| lazebnik_spm | classic | 81.40 | 79.00 | -2.40 | mean class acc (measured: top-1;" in md
    assert "| unknown_system | classic | 50.00 | 40.00 | -10.00 | top-1 | Some paper |" in md
    assert "| 79.00 | 100.00 | – |" in md  # no mean class accuracy in the side-by-side table
    assert "measured: top-1" in render_html(rep, ".") and "measured: top-1" in render_benchmarks([("x", rep)])


def test_benchmarks_name_the_runs_an_interrupted_compare_did_not_finish():
    from bench.report import render_benchmarks, unfinished_runs

    rep = _report("cifar10", [_scene_run("llc", 0.7)])
    assert unfinished_runs(rep) == []  # no options recorded: nothing to compare with
    rep["options"] = {"pipelines": "llc,vlad,hog_svm:svm__C=1", "cnn": "resnet20"}
    assert unfinished_runs(rep) == ["vlad", "hog_svm:svm__C=1", "resnet20"]
    assert ("Asked for but not in this report (the comparison was stopped before they finished): "
            "vlad, hog_svm:svm__C=1, resnet20.") in render_benchmarks([("x", rep)])
    rep["options"] = {"pipelines": "all", "cnn": "none"}
    missing = unfinished_runs(rep)
    assert "llc" not in missing and {"vlad", "fisher", "lazebnik_spm"} <= set(missing)
    rep["options"] = {"pipelines": "llc", "cnn": "none"}
    assert "Asked for but not" not in render_benchmarks([("x", rep)])
    rep["options"] = {"pipelines": "llc:oops", "cnn": "none"}  # unparsable: no claim
    assert unfinished_runs(rep) == []


def test_reproduction_rows_of_old_records_use_their_confusion_matrix():
    """An old record without mean_class_accuracy but with its confusion counts gets the
    mean per-class accuracy computed from them."""
    from bench.published import reproduction_rows

    # recalls 18/20 and 5/10: mean per-class accuracy 0.7, overall top-1 23/30
    run = _scene_run("lazebnik_spm", 23 / 30, confusion=[[18, 2], [5, 5]])
    (row,) = reproduction_rows(_report("scene15", [run]))
    assert row["measured_metric"] == "mean_class_accuracy" and row["measured"] == pytest.approx(0.7)


def test_classic_runs_use_the_dataset_settings_of_the_preset():
    """compare asks make_preset for the --dataset settings and records what they resolve to."""
    from bench.compare import classic_run
    from bench.runners import build_pipeline

    [spec] = parse_specs("lazebnik_spm:n_words=64", "classic")
    build, params = classic_run(spec, 0, "cifar10")
    assert build.overrides == {"n_words": 64, "dataset": "cifar10"}
    assert params["overrides"] == {"n_words": 64} and params["preset_dataset"] == "cifar10"
    assert params["effective"]["patch"] == 8 and params["effective"]["n_words"] == 64
    pipe = build_pipeline(build, seed=0, n_jobs=None)
    assert pipe.get_params()["features__extractor__sizes"] == (8,)
    # no settings for this dataset, or dataset=none given: the paper's defaults
    for spec, dataset in (("lazebnik_spm", "scene15"), ("lazebnik_spm:dataset=none", "cifar10")):
        build, params = classic_run(parse_specs(spec, "classic")[0], 0, dataset)
        assert params["preset_dataset"] is None and params["effective"]["patch"] == 16
        assert build_pipeline(build, seed=0, n_jobs=None).get_params()["features__extractor__sizes"] == (16,)
    # an unknown override is left for the run to fail on (and be recorded)
    assert classic_run(parse_specs("lazebnik_spm:n_wordz=3", "classic")[0], 0, "cifar10")[1]["effective"] is None


@needs_presets
def test_dataset_settings_reach_the_run_record_and_the_cache_key(tmp_path, monkeypatch, in_runs):
    """End to end on an image folder whose name has (patched-in) lbp_svm settings: the run
    record holds the effective parameters, and the features cache is not shared with
    the default settings."""
    import cv2

    from classicvision.presets import PRESETS, make_preset

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split in ("train", "test"):
        for c in range(2):
            (root / split / str(c)).mkdir(parents=True)
            for i in range(6):
                img = rng.integers(0, 256, (24, 24), dtype=np.uint8) // (1 + 3 * c)
                cv2.imwrite(str(root / split / str(c) / f"{i}.png"), img)
    monkeypatch.setitem(PRESETS["lbp_svm"]["datasets"], "folder", {"grid": (2, 2)})
    in_runs("from classicvision.presets import PRESETS\nPRESETS['lbp_svm']['datasets']['folder'] = {'grid': (2, 2)}\n")
    assert features_step_signature(make_preset("lbp_svm", dataset="folder")[0]) != \
        features_step_signature(make_preset("lbp_svm")[0])
    base = ["compare", "--dataset", "folder", "--root", str(root), "--cnn", "none", "--quiet"]
    assert cli.main(base + ["--pipelines", "lbp_svm", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(base + ["--pipelines", "lbp_svm:dataset=none", "--out", str(tmp_path / "b")]) == 0
    a, b = (_read(tmp_path / d)["runs"][0] for d in "ab")
    assert a["params"]["preset_dataset"] == "folder" and a["params"]["effective"]["grid"] == [2, 2]
    assert b["params"]["preset_dataset"] is None and b["params"]["effective"]["grid"] == [4, 4]
    assert a["n_features"] == 4 * 59 and b["n_features"] == 16 * 59
    assert a["cache_hit"] is False and b["cache_hit"] is False


def test_compute_scores_scatters_columns_of_seen_classes():
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)) + np.repeat([[0, 0, 0], [4, 0, 0], [0, 4, 0]], 20, axis=0)
    y = np.repeat([0, 2, 3], 20)  # class 1 absent from training
    for est in (LinearSVC(), LogisticRegression()):
        est.fit(X, y)
        scores, kind = compute_scores(est, X, n_classes=4, chunk=7)
        assert scores.shape == (60, 4)
        np.testing.assert_array_equal(scores.argmax(1), est.predict(X))
        assert np.all(scores[:, 1] <= scores.min(axis=1) + 1e-12)
    assert kind == "decision_function"


def test_cache_command_lists_and_clears_entries(tmp_path, monkeypatch, capsys):
    import os
    import time

    root = tmp_path / "cache"
    monkeypatch.setenv("CLASSICVISION_CACHE", str(root))
    cache = FeatureCache()
    assert cache.root == root and cache.entries() == []
    tr, te = np.zeros((4, 3), np.float32), np.zeros((2, 3), np.float32)
    keys = []
    for i, preset in enumerate(("hog_svm", "lbp_svm", "fisher")):
        key = cache.make_key(dataset={"i": i}, step_signature=preset, version="1")
        assert cache.put(key, train=tr, test=te, meta={"preset": preset, "n_train": 4, "n_test": 2,
                                                       "n_features": 3})
        keys.append(key)
    old = time.time() - 10 * 86400  # the first entry was last touched 10 days ago
    for f in (root / keys[0]).iterdir():
        os.utime(f, (old, old))
    (root / f".{keys[2]}.tmp1").mkdir()  # left behind by an interrupted write
    (root / "datasets").mkdir()  # the decoded-datasets cache shares $CLASSICVISION_CACHE: not an entry
    entries = cache.entries()
    assert [e["key"] for e in entries if not e["partial"]] == [keys[2], keys[1], keys[0]]
    assert [e["partial"] for e in entries].count(True) == 1

    assert cli.main(["cache"]) == 0
    out = capsys.readouterr().out
    assert f"({len(entries)} entries, " in out and str(root) in out
    assert f"{keys[1][:12]}" in out and "lbp_svm" in out and "4x3" in out and "(incomplete)" in out
    assert "10.0d" in out

    assert cli.main(["cache", "clear"]) == 2  # nothing selected
    assert "needs KEY" in capsys.readouterr().err
    assert cli.main(["cache", "clear", "abc"]) == 2  # prefix too short
    assert "at least 6 hex digits" in capsys.readouterr().err
    assert cli.main(["cache", "clear", "--older-than", "7"]) == 0
    assert "removed 1 features cache entries" in capsys.readouterr().out
    assert {e["key"] for e in cache.entries()} == {keys[1], keys[2]}
    assert cache.get(keys[1]) is not None and cache.get(keys[0]) is None
    assert cli.main(["cache", "clear", keys[1][:8]]) == 0
    assert {e["key"] for e in cache.entries()} == {keys[2]}
    assert cli.main(["cache", "clear", "--all"]) == 0
    assert cache.entries() == [] and (root / "datasets").is_dir()


def test_feature_cache_roundtrip_and_signature(tmp_path):
    from classicvision.features import HOG

    a = features_step_signature(HOG(output="vector"))
    assert a == features_step_signature(HOG(output="vector", n_jobs=2))  # n_jobs does not change output
    assert a != features_step_signature(HOG(output="vector", orientations=12))
    cache = FeatureCache(tmp_path)
    key = cache.make_key(dataset={"name": "d"}, step_signature=a, version="1")
    assert key != cache.make_key(dataset={"name": "d"}, step_signature=a, version="2")
    assert cache.get(key) is None
    tr, te = np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((2, 2), np.float32)
    assert cache.put(key, train=tr, test=te, meta={"features_fit_seconds": 1.0})
    hit = cache.get(key)
    np.testing.assert_array_equal(hit["train"], tr)
    np.testing.assert_array_equal(hit["test"], te)
    assert FeatureCache(tmp_path, enabled=False).get(key) is None
    imgs = np.zeros((3, 4, 4), np.uint8)
    d0 = dataset_digest(imgs, [0, 1, 2])
    assert d0 != dataset_digest(imgs, [0, 1, 1])
    imgs[1, 2, 2] = 1
    assert d0 != dataset_digest(imgs, [0, 1, 2])


def _fitted_pipeline():
    from sklearn.datasets import load_digits
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    X, y = load_digits(return_X_y=True)
    return Pipeline([("scale", StandardScaler()), ("svm", LinearSVC())]).fit(X[:300], y[:300]), X[:50]


def test_skops_roundtrip(tmp_path):
    pipe, X = _fitted_pipeline()
    path = tmp_path / "m.skops"
    size = dump_skops(pipe, path)
    assert size == path.stat().st_size > 0
    np.testing.assert_array_equal(load_skops(path).predict(X), pipe.predict(X))


def test_tampered_skops_is_refused(tmp_path, capsys):
    pipe, _ = _fitted_pipeline()
    path = tmp_path / "m.skops"
    dump_skops(pipe, path)
    # rewrite the schema so the scaler node names another Python type
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    schema = members["schema.json"].decode()
    assert '"StandardScaler"' in schema
    schema = schema.replace('"StandardScaler"', '"Popen"').replace('"sklearn.preprocessing._data"', '"subprocess"')
    members["schema.json"] = schema.encode()
    bad = tmp_path / "tampered.skops"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(UntrustedModelError, match="subprocess.Popen"):
        load_skops(bad)
    # the predict command reports it clearly instead of loading the model
    img = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((8, 8), np.uint8))
    assert cli.main(["predict", str(bad), str(img)]) == 2
    assert "subprocess.Popen" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a skops"):
        load_skops(img)


def test_write_json_atomic_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "report.json"
    write_json_atomic({"a": 1}, p)
    with pytest.raises(TypeError):
        write_json_atomic({"a": object()}, p)
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["report.json"]
    with pytest.raises(ValueError):  # NaN is not valid JSON
        write_json_atomic({"a": float("nan")}, p)


def test_config_yaml_defaults_and_flag_override(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("dataset: digits\nlimit: 40\ncnn: [resnet20, small_convnet]\nepochs: 3\n")
    parser = cli.get_args_parser()
    args = cli._apply_config(["compare", "--config", str(cfg), "--epochs", "5"], parser)
    assert args.limit == 40 and args.cnn == "resnet20,small_convnet" and args.epochs == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("limt: 40\n")
    with pytest.raises(SystemExit):
        cli._apply_config(["compare", "--config", str(bad)], cli.get_args_parser())


def test_list(capsys):
    cli.main(["list"])
    out = capsys.readouterr().out
    assert "Datasets:" in out and "digits" in out and "cifar10" in out
    assert "CNN models:" in out and "resnet20" in out
    assert "Presets:" in out
    if _has_presets():
        assert "hog_svm" in out
        assert "settings for: cifar10" in out  # the presets sized for 32x32 images


def test_speed_is_dispatched_lazily(monkeypatch):
    seen = []
    fake = types.ModuleType("bench.speed")
    fake.main = lambda argv: seen.append(list(argv)) or 0
    monkeypatch.setitem(sys.modules, "bench.speed", fake)
    assert cli.main(["speed", "--what", "sift", "-n", "3"]) == 0
    assert seen == [["--what", "sift", "-n", "3"]]


def test_module_entry_point_help():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "bench", "compare", "--help"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0
    for opt in ("--dataset", "--root", "--pipelines", "--cnn", "--out", "--train-per-class", "--test-per-class",
                "--seed", "--limit", "--epochs", "--no-cache", "--save-models", "--n-jobs", "--device", "--config"):
        assert opt in r.stdout


def test_benchmarks_runs_compare_per_dataset(tmp_path, monkeypatch):
    """Without --from, `benchmarks` runs compare on each dataset (all presets; the CIFAR
    models on cifar10) and renders the reports it produced."""
    import bench.report as report_mod

    calls = []

    def fake_main(argv):
        calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        ds = argv[argv.index("--dataset") + 1]
        out.mkdir(parents=True)
        report_mod.write_json_atomic(
            {"dataset": {"name": ds, "n_train": 1, "n_test": 1, "classes": ["a"]},
             "environment": {"cpu": {"model": "m", "count": 2}}, "runs": []}, out / "report.json")
        return 0

    monkeypatch.setattr(cli, "main", fake_main)
    dest = tmp_path / "B.md"
    args = cli.get_args_parser().parse_args(
        ["benchmarks", "--out", str(tmp_path / "runs"), "--write", str(dest), "--epochs", "7"])
    assert cli._cmd_benchmarks(args) == 0
    assert [c[c.index("--dataset") + 1] for c in calls] == ["cifar10", "scene15"]
    cifar, scene = calls
    assert cifar[cifar.index("--pipelines") + 1] == "all" and "--epochs" in cifar
    assert "resnet20" in cifar[cifar.index("--cnn") + 1].split(",")
    assert scene[scene.index("--cnn") + 1] == "none"
    text = dest.read_text()
    assert "## cifar10" in text and "## scene15" in text and "JPEG" in text


def test_progress_lines():
    import io
    import time

    from bench.progress import Progress

    buf = io.StringIO()
    p = Progress(buf, interval=0.0, heartbeat=0.05)
    update = p.chunks("run", "features (train)", 4)
    for done in (1, 2, 4):
        update(done)
    with p.stage("run", "fit svm"):
        time.sleep(0.2)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[bench] run: features (train) 1/4 (25%) elapsed ")
    assert all("ETA" in ln for ln in lines[:3])
    assert "4/4 (100%)" in lines[2]
    assert lines[3] == "[bench] run: fit svm ..."
    assert any("still running, elapsed" in ln for ln in lines[4:-1])
    assert lines[-1].startswith("[bench] run: fit svm done in ")
    quiet = Progress(None)
    quiet.chunks("r", "s", 2)(1)  # silent, no error
    with quiet.stage("r", "s"):
        pass


def test_linear_svm_progress_goes_to_the_progress_stream_and_verbose_is_restored():
    import io

    from sklearn.datasets import load_digits

    from bench.progress import Progress, solver_progress
    from classicvision.kernels import LinearSVM

    X, y = load_digits(return_X_y=True)
    buf = io.StringIO()
    p = Progress(buf, heartbeat=0)
    svm = LinearSVM(C=0.1, solver="newton")
    with solver_progress(svm, len(X), p) as note:
        assert note == "ETA in the LinearSVM lines"
        svm.fit(X / 16, y)
    assert svm.verbose == 0
    lines = buf.getvalue().splitlines()
    assert lines[0] == "LinearSVM: Newton-CG on 1797x64 features, 10 one-vs-rest problem(s)"
    assert lines[1] == "LinearSVM: building the gram preconditioner ..."
    assert lines[2].startswith("LinearSVM: gram preconditioner built in ")
    assert lines[-1].startswith(f"LinearSVM: iteration {svm.n_iter_ + 1}: gradient ")
    assert lines[-1].endswith("converged") and "ETA unknown" in lines[3] and "ETA " in lines[4]
    # liblinear (auto on few samples), other classifiers and a silent Progress: the heartbeat note
    for est, stream in ((LinearSVM(), buf), (LinearSVM(solver="newton"), None), ("passthrough", buf)):
        with solver_progress(est, len(X), Progress(stream)) as note:
            assert note.startswith("no ETA")


@needs_presets
def test_compare_on_image_folder(tmp_path):
    """--dataset folder reads an ImageFolder tree (<root>/<split>/<class>/<file>)."""
    import cv2

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split, n in (("train", 12), ("test", 6)):
        for cls in ("horizontal", "vertical"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                img = np.zeros((32, 32), np.uint8)
                period = int(rng.integers(3, 6))
                stripes = ((np.arange(32) // period) % 2 * 255).astype(np.uint8)
                img[:] = stripes[:, None] if cls == "horizontal" else stripes[None, :]
                cv2.imwrite(str(d / f"{i:03d}.png"), img)
    out = tmp_path / "run"
    assert cli.main(["compare", "--dataset", "folder", "--root", str(root), "--pipelines", "hog_svm", "--cnn", "none",
                     "--out", str(out), "--quiet"]) == 0
    rep = _read(out)
    assert rep["dataset"]["classes"] == ["horizontal", "vertical"]
    assert (rep["dataset"]["n_train"], rep["dataset"]["n_test"]) == (24, 12)
    assert rep["runs"][0]["top1"] == 1.0


def test_compare_max_pixels_refuses_larger_images_naming_the_file(tmp_path, capsys):
    """--max-pixels reaches the loader: an image over it is a clear error naming it."""
    import cv2

    root = tmp_path / "data"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                cv2.imwrite(str(d / f"{i}.png"), np.full((40, 30), 60 * i, np.uint8))
    args = ["compare", "--dataset", "folder", "--root", str(root), "--pipelines", "hog_svm", "--cnn", "none",
            "--quiet", "--no-cache", "--max-pixels", "1000"]
    assert cli.main(args + ["--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "1,200" in err and "0.png" in err and "max_pixels" in err
    assert cli.main(args[:-1] + ["1200", "--out", str(tmp_path / "ok")]) == 0


def test_latency_columns_and_model_sizes(e2e):
    """Both tracks' runs record the latency of one image on 1 and N = min(4, usable cores)
    threads, shown beside images/s; model_bytes is the saved file's size on disk."""
    from bench.latency import thread_counts
    from bench.report import latency_column

    rep = _read(e2e)
    counts = thread_counts()
    assert counts[0] == 1 and counts[-1] == min(4, rep["environment"]["cpu"]["usable"])
    for r in rep["runs"]:
        assert r["latency_threads"] == counts
        assert set(r["latency_ms"]) == {str(t) for t in counts}
        assert all(0 < v < 10_000 for v in r["latency_ms"].values())
        assert all(r["latency_p90_ms"][k] >= r["latency_ms"][k] for k in r["latency_ms"])
        assert all(n >= 5 for n in r["latency_repeats"].values()) and r["latency_batch_size"] == 1
        assert r["model_bytes"] == Path(r["model_path"]).stat().st_size
    assert rep["runs"][1]["model_path"].endswith(".pt") and rep["runs"][1]["latency_device"] == "cpu"
    md = (e2e / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| name | track |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols.index(latency_column(1)) == cols.index("images/s") + 1
    assert all(latency_column(t) in cols for t in counts)
    assert "decoding excluded" in md and latency_column(1) in (e2e / "report.html").read_text()
