"""bench.robustness: the saved models of a digits compare run, on disturbed test images."""

import argparse
import json
import shutil

import numpy as np
import pytest

from bench import cli
from bench import robustness as rb
from bench.compare import OutputLock
from bench.specs import DatasetError, UsageError
from classicvision.disturbances import DISTURBANCES

CNN = "small_convnet:batch_size=32"
SEVERITIES = (1, 5)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small digits comparison of both tracks with its models saved (the robustness input)."""
    base = tmp_path_factory.mktemp("robust")
    out = base / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSICVISION_CACHE", str(base / "cache"))
        rc = cli.main(["compare", "--dataset", "digits", "--pipelines", "hog_svm", "--cnn", CNN, "--limit", "100",
                       "--epochs", "1", "--save-models", "--no-latency", "--out", str(out), "--seed", "0", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def evaluated(run_dir, torch_one_thread):
    before = json.loads((run_dir / "report.json").read_text())
    section = rb.run_robustness(run_dir, seed=0, severities=SEVERITIES, limit=None, command="test")
    return before, section, json.loads((run_dir / "report.json").read_text())


def test_section_is_stored_in_the_report_without_losing_anything(evaluated, run_dir):
    before, section, after = evaluated
    assert after["robustness"] == json.loads(json.dumps(section))
    assert {k: v for k, v in after.items() if k != "robustness"} == before
    assert (run_dir / rb.FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert section["figure"] == rb.FIGURE and section["severities"] == list(SEVERITIES)
    assert list(section["disturbances"]) == list(DISTURBANCES)
    assert section["n_test"] == before["dataset"]["n_test"] == 100


def test_every_run_is_scored_on_its_own_test_set(evaluated):
    before, section, _ = evaluated
    runs = {r["name"]: r for r in before["runs"]}
    assert [r["name"] for r in section["runs"]] == ["hog_svm", CNN]
    for r in section["runs"]:
        assert r["status"] == "ok" and r["error"] is None, r
        # the whole test set reloaded as compare loaded it: the clean accuracy is the run's top-1
        assert r["clean"] == pytest.approx(runs[r["name"]]["top1"])
        assert set(r["accuracy"]) == set(DISTURBANCES)
        acc = np.array([r["accuracy"][k] for k in DISTURBANCES])
        assert acc.shape == (len(DISTURBANCES), len(SEVERITIES)) and ((acc >= 0) & (acc <= 1)).all()
        assert r["mean"] == pytest.approx(acc.mean())
        assert r["drop"] == pytest.approx(r["clean"] - acc.mean())
        assert r["mean_by_disturbance"]["occlusion"] == pytest.approx(np.mean(r["accuracy"]["occlusion"]))
    hog = section["runs"][0]
    assert hog["accuracy"]["occlusion"][1] < hog["clean"]  # half the digit under a grey box


def test_markdown_and_html_have_a_table_per_run_and_the_figure(evaluated, run_dir):
    _, section, _ = evaluated
    md = rb.render_markdown(section)
    assert md.startswith("## Robustness")
    for r in section["runs"]:
        head = f"### {r['name']} ({r['track']}): clean {100 * r['clean']:.2f}%"
        assert head in md
        table = md.split(head, 1)[1].split("\n\n###", 1)[0]
        assert "| disturbance | 1 | 5 | mean | drop (pts) |" in table
        assert all(f"| {k} |" in table for k in DISTURBANCES) and "mean over disturbances" in table
    assert f"![accuracy against severity]({rb.FIGURE})" in md
    assert "![" not in rb.render_markdown(section, figure="")
    assert "![accuracy against severity](runs/x/robustness.png)" in rb.render_markdown(section, figure="runs/x/"
                                                                                       "robustness.png")
    assert "sigma_px 0.1 " in md.replace("|", " ")  # the blur, scaled to 8 px digits
    page = rb.render_html(section, run_dir)
    assert page.count("<table") == 2 + len(section["runs"]) and "data:image/png;base64," in page


def test_a_missing_model_is_recorded_and_the_others_go_on(evaluated, run_dir, tmp_path):
    _, section, _ = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(".lock"))
    rep = json.loads((copy / "report.json").read_text())
    for r in rep["runs"]:  # the copy's own models, not the originals
        r["model_path"] = str(copy / "models" / r["model_path"].rsplit("/", 1)[1])
    (copy / "report.json").write_text(json.dumps(rep))
    (copy / "models" / "hog_svm.skops").unlink()
    got = rb.run_robustness(copy, seed=0, severities=[5], disturbances=["gaussian_noise"], limit=None)
    hog, cnn = got["runs"]
    assert hog["status"] == "failed" and "no saved model" in hog["error"] and "--save-models" in hog["error"]
    assert cnn["status"] == "ok"
    # same seed, same images: the same accuracy as in the full evaluation
    assert cnn["accuracy"]["gaussian_noise"] == [section["runs"][1]["accuracy"]["gaussian_noise"][1]]
    assert "Runs not evaluated" in rb.render_markdown(got)


def test_command_line_and_its_errors(tmp_path, run_dir, capsys):
    parser = argparse.ArgumentParser()
    rb.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["robustness", str(run_dir), "--severities", "5,1", "--limit", "all"])
    assert args.severities == [1, 5] and args.limit is None and args.disturbances == list(DISTURBANCES)
    for bad in (["--severities", "0,7"], ["--disturbances", "fog"], ["--limit", "-3"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["robustness", str(run_dir), *bad])
    assert "valid: brightness" in capsys.readouterr().err
    assert rb.cmd(parser.parse_args(["robustness", str(tmp_path), "--quiet"])) == 2
    assert "no report.json" in capsys.readouterr().err
    with OutputLock(run_dir), pytest.raises(UsageError, match="in use by another compare"):
        rb.run_robustness(run_dir, severities=[1], disturbances=["jpeg"], limit=10)


def test_models_of_repeated_splits_are_found_per_split(tmp_path):
    """``compare --splits K`` saves each split's model under ``models/split<i>/``."""
    run = {"name": "hog_svm:C=10", "track": "classic", "model_path": str(tmp_path / "elsewhere" / "x.skops")}
    assert rb._model_path(tmp_path, run, 1, 3) == tmp_path / "models" / "split1" / "hog_svm_C=10.skops"
    # one split: the folder's own file, else the path recorded (a folder that was not moved)
    assert rb._model_path(tmp_path, run, 0, 1) == tmp_path / "elsewhere" / "x.skops"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "hog_svm_C=10.skops").write_bytes(b"")
    assert rb._model_path(tmp_path, run, 0, 1) == tmp_path / "models" / "hog_svm_C=10.skops"
    assert rb._model_path(tmp_path, {"name": "resnet20", "track": "cnn"}, 0, 1).suffix == ".pt"


def test_a_test_set_that_changed_since_the_runs_is_refused(run_dir, tmp_path):
    copy = tmp_path / "changed"
    copy.mkdir()
    rep = json.loads((run_dir / "report.json").read_text())
    rep["dataset"]["digest"]["test"] = "0" * 32
    (copy / "report.json").write_text(json.dumps(rep))
    with pytest.raises(DatasetError, match="differs from the one the runs were scored on"):
        rb.run_robustness(copy, severities=[1], disturbances=["jpeg"], limit=10)


def test_the_command_line_runs_it_and_compare_asks_for_saved_models(run_dir, tmp_path, torch_one_thread):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    rc = cli.main(["robustness", str(copy), "--severities", "1", "--disturbances", "contrast,occlusion",
                   "--limit", "50", "--quiet"])
    assert rc == 0
    report = json.loads((copy / "report.json").read_text())
    assert list(report["robustness"]["disturbances"]) == ["contrast", "occlusion"]
    assert "## Robustness" in (copy / "report.md").read_text()
    # --robustness scores saved models: without --save-models it is refused before any work
    assert cli.main(["compare", "--dataset", "digits", "--pipelines", "hog_svm", "--cnn", "none", "--robustness",
                     "--out", str(tmp_path / "nope"), "--quiet"]) == 2
    assert not (tmp_path / "nope" / "report.json").exists()
