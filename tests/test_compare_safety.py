"""compare keeps what it finished and survives its runs: child processes, memory limit,
merged reports, the output lock, --out checks, --config checks, splits and defaults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bench.compare as cmp
from bench import cli

BASE = ["compare", "--cnn", "none", "--limit", "60", "--quiet"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSICVISION_CACHE", str(tmp_path / "cache"))


def _read(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _statuses(out: Path) -> dict:
    return {r["name"]: r["status"] for r in _read(out)["runs"]}


def test_a_killed_run_is_recorded_and_the_next_one_finishes(tmp_path, in_runs):
    out = tmp_path / "run"
    assert cli.main(BASE + ["--pipelines", "lbp_svm", "--out", str(out)]) == 0
    finished = _read(out)["runs"][0]
    in_runs("def killing(spec, *a, **k):\n"
            "    if spec.name == 'hog_svm':\n"
            "        held = np.ones(64 << 20, np.uint8)  # memory of its own, seen by the watchdog\n"
            "        time.sleep(1.0)\n"
            "        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would\n"
            "    return real_classic(spec, *a, **k)\n"
            "cmp.run_classic = killing\n")
    rc = cli.main(BASE + ["--pipelines", "hog_svm,lbp_svm:svm__C=3", "--out", str(out)])
    assert rc == 1  # some run failed
    runs = {r["name"]: r for r in _read(out)["runs"]}
    assert runs["hog_svm"]["status"] == "failed"
    assert "killed by signal 9" in runs["hog_svm"]["cause"] and "peak RSS" in runs["hog_svm"]["cause"]
    assert runs["hog_svm"]["max_rss_bytes"] > 10 << 20
    assert Path(runs["hog_svm"]["log"]).is_file()
    assert runs["lbp_svm:svm__C=3"]["status"] == "ok" and runs["lbp_svm:svm__C=3"]["max_rss_bytes"] > 0
    assert runs["lbp_svm"] == finished  # the run finished before is kept as it was
    assert "killed by signal 9" in (out / "report.md").read_text()


def test_the_memory_limit_stops_a_run(tmp_path, in_runs):
    in_runs("def greedy(spec, *a, **k):\n"
            "    hog = [np.ones(64 << 20, np.uint8) for _ in range(40)]  # 2.5 GiB, 64 MiB at a time\n"
            "    time.sleep(5)\n"
            "    return hog\n"
            "cmp.run_classic = greedy\n")
    out = tmp_path / "run"
    assert cli.main(BASE + ["--pipelines", "hog_svm", "--memory-limit", "700MiB", "--out", str(out)]) == 1
    [rec] = _read(out)["runs"]
    assert rec["status"] == "failed" and "memory limit" in rec["cause"] and "--memory-limit" in rec["cause"]
    assert 700 << 20 < rec["max_rss_bytes"] < 2 << 30


def test_a_cnn_run_plans_on_the_headroom_not_the_whole_limit(tmp_path, in_runs):
    marks = in_runs("def spy(spec, *a, memory_limit=None, **k):\n"
                    "    open(os.path.join(MARKS, 'limit'), 'w').write(str(memory_limit))\n"
                    "    return real_cnn(spec, *a, memory_limit=memory_limit, **k)\n"
                    "cmp.run_cnn = spy\n")
    out = tmp_path / "run"
    args = ["compare", "--pipelines", "none", "--cnn", "small_convnet", "--limit", "60", "--epochs", "1",
            "--quiet", "--memory-limit", "3GiB", "--out", str(out)]
    assert cli.main(args) == 0
    room = int((marks / "limit").read_text())
    # what the run's process already holds (torch, the images) and a margin are not offered again
    assert 0 < room < 0.9 * (3 << 30)
    [rec] = _read(out)["runs"]
    assert rec["status"] == "ok"


def _start_stuck_compare(tmp_path, in_runs) -> tuple[subprocess.Popen, int, Path]:
    """A compare whose run writes its pid, then sleeps; returns (command, run pid, out)."""
    marks = in_runs("def stuck(spec, *a, **k):\n"
                    "    open(os.path.join(MARKS, 'pid'), 'w').write(str(os.getpid()))\n"
                    "    time.sleep(120)\n"
                    "cmp.run_classic = stuck\n")
    out = tmp_path / "run"
    cmd = subprocess.Popen([sys.executable, "-m", "bench", *BASE, "--pipelines", "hog_svm", "--out", str(out)],
                           cwd=Path(__file__).resolve().parents[1], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (marks / "pid").exists():
        assert cmd.poll() is None and time.monotonic() < deadline, cmd.stderr.read() if cmd.poll() else "no run"
        time.sleep(0.2)
    time.sleep(0.2)
    return cmd, int((marks / "pid").read_text()), out


def _gone(pid: int, within: float = 20.0) -> bool:
    import psutil

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


def test_no_run_outlives_a_killed_command(tmp_path, in_runs):
    cmd, run_pid, _ = _start_stuck_compare(tmp_path, in_runs)
    cmd.kill()  # SIGKILL: the command cannot clean up
    cmd.wait()
    assert _gone(run_pid), "the run went on after its command was killed"


def test_sigterm_stops_a_compare_like_ctrl_c(tmp_path, in_runs):
    cmd, run_pid, out = _start_stuck_compare(tmp_path, in_runs)
    cmd.send_signal(signal.SIGTERM)
    assert cmd.wait(timeout=60) == 130
    assert "interrupted" in cmd.stderr.read()
    assert _gone(run_pid)
    assert (out / "report.json").is_file()


def test_an_exception_in_the_child_is_an_ordinary_failure(tmp_path, in_runs):
    in_runs("def broken(*a, **k):\n    raise RuntimeError('bad preset')\ncmp.run_classic = broken\n")
    out = tmp_path / "run"
    assert cli.main(BASE + ["--pipelines", "hog_svm", "--out", str(out)]) == 1
    [rec] = _read(out)["runs"]
    assert rec["error"] == "RuntimeError: bad preset" and "cause" not in rec
    assert "Traceback" in Path(rec["log"]).read_text()


def test_reports_merge_by_run_name_and_fresh_starts_over(tmp_path):
    out = tmp_path / "run"
    assert cli.main(BASE + ["--pipelines", "hog_svm", "--out", str(out)]) == 0
    assert cli.main(BASE + ["--pipelines", "lbp_svm", "--out", str(out)]) == 0
    assert _statuses(out) == {"hog_svm": "ok", "lbp_svm": "ok"}
    assert cli.main(BASE + ["--pipelines", "lbp_svm", "--fresh", "--out", str(out)]) == 0
    assert _statuses(out) == {"lbp_svm": "ok"}
    aside = list(out.glob("report-*.json"))
    assert len(aside) == 1 and {r["name"] for r in json.loads(aside[0].read_text())["runs"]} == {"hog_svm", "lbp_svm"}


def test_a_second_compare_on_the_same_out_fails_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cmp, "load_split_sets", lambda *a: pytest.fail("data loaded although --out is locked"))
    out = tmp_path / "run"
    out.mkdir()
    with cmp.OutputLock(out):
        assert cli.main(BASE + ["--pipelines", "hog_svm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "in use by another compare" in err and str(os.getpid()) in err


def test_bad_out_folders_are_refused_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cmp, "load_split_sets", lambda *a: pytest.fail("data loaded before --out was checked"))
    afile = tmp_path / "file"
    afile.write_text("x")
    assert cli.main(BASE + ["--pipelines", "hog_svm", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err
    folder = tmp_path / "r1"
    (folder / "report.json").mkdir(parents=True)
    assert cli.main(BASE + ["--pipelines", "hog_svm", "--out", str(folder)]) == 2
    assert "not a file" in capsys.readouterr().err
    import shutil

    usage = type(shutil.disk_usage(tmp_path))
    monkeypatch.setattr(cmp.shutil, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 1 << 20))
    assert cli.main(BASE + ["--pipelines", "hog_svm", "--out", str(tmp_path / "r2")]) == 2
    assert "free" in capsys.readouterr().err


def test_a_report_that_is_not_an_object_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.json").write_text("[1, 2]")
    assert cli.main(BASE + ["--pipelines", "hog_svm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a compare report" in err and str(out / "report.json") in err
    assert json.loads((out / "report.json").read_text()) == [1, 2]  # left as it was


def test_resume_redoes_a_run_whose_saved_model_is_missing(tmp_path):
    out = tmp_path / "run"
    argv = BASE + ["--pipelines", "hog_svm", "--save-models", "--out", str(out)]
    assert cli.main(argv) == 0
    path = Path(_read(out)["runs"][0]["model_path"])
    path.unlink()
    assert cli.main(argv) == 0
    assert Path(_read(out)["runs"][0]["model_path"]).is_file()


@pytest.mark.parametrize("text, words", [
    ("limit: -5\n", ["--limit", "-5"]),
    ("dataset: mnist\n", ["--dataset", "mnist"]),
    ("limit: !!python/object/apply:os.system ['echo hacked']\n", ["not a plain YAML file"]),
    ("colour: red\n", ["unknown option 'colour'"]),
    ("save_models: 3\n", ["save_models must be true or false"]),
])
def test_config_values_pass_the_command_line_checks(tmp_path, capsys, text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err
    assert not (tmp_path / "r").exists()


def test_config_values_are_defaults_the_flags_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pipelines: [hog_svm]\nlimit: 40\ncnn: none\nquiet: true\n")
    out = tmp_path / "r"
    assert cli.main(["compare", "--config", str(cfg), "--limit", "50", "--out", str(out)]) == 0
    rep = _read(out)
    assert rep["options"]["limit"] == 50 and rep["options"]["pipelines"] == "hog_svm"


def test_splits_report_mean_and_std(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["compare", "--pipelines", "hog_svm", "--cnn", "none", "--train-per-class", "15",
                     "--test-per-class", "10", "--splits", "3", "--out", str(out), "--quiet"]) == 0
    rep = _read(out)
    [rec] = rep["runs"]
    sp = rec["splits"]
    assert sp["n"] == 3 and sp["seeds"] == [0, 1, 2] and len(sp["top1"]) == 3
    assert sp["top1_mean"] == pytest.approx(np.mean(sp["top1"])) and rec["top1"] == pytest.approx(sp["top1_mean"])
    assert sp["top1_std"] == pytest.approx(np.std(sp["top1"], ddof=1))
    assert len(set(sp["top1"])) > 1  # three different splits
    assert np.sum(rec["confusion"]) == 3 * 10 * 10
    assert rep["dataset"]["n_train"] == 150 and rep["dataset"]["n_test"] == 100
    assert "±" in (out / "report.md").read_text()


def test_splits_need_per_class_counts(tmp_path, capsys):
    assert cli.main(BASE + ["--pipelines", "hog_svm", "--splits", "2", "--out", str(tmp_path / "r")]) == 2
    assert "--train-per-class" in capsys.readouterr().err


def test_default_runs_follow_the_images():
    from bench.specs import Split

    small = Split(np.zeros((10, 32, 32, 3), np.uint8), np.zeros(10, int), ["a"])
    photos = Split([np.zeros((375, 500, 3), np.uint8)] * 4, np.zeros(4, int), ["a"])
    assert cmp.default_runs("digits", small)[:2] == ("hog_svm", "small_convnet")
    pipes, cnn, why = cmp.default_runs("folder", small)
    assert (pipes, cnn) == ("coates_soft_threshold", "resnet20") and "32 px" in why
    pipes, cnn, why = cmp.default_runs("folder", photos)
    assert pipes == "fisher" and cnn.split(",")[0] == "small_convnet" and "500 px" in why


def test_kill_and_resume_never_loses_a_finished_run(tmp_path):
    """compare on digits killed with SIGKILL at random moments, then resumed: report.json
    is valid every time and never holds fewer finished runs than before."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "bench", "compare", "--pipelines", "hog_svm,lbp_svm,hog_svm:svm__C=1,lbp_svm:C=3",
            "--cnn", "none", "--limit", "60", "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = np.random.default_rng(0)
    best = 0
    for _ in range(10):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(float(rng.uniform(0.5, 3.0)))
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its run's child
        proc.wait()
        if (out / "report.json").exists():
            rep = _read(out)  # valid JSON, every time
            n_ok = sum(r["status"] == "ok" for r in rep["runs"])
            assert n_ok >= best
            best = n_ok
    assert subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=300).returncode == 0
    assert sum(r["status"] == "ok" for r in _read(out)["runs"]) == 4 >= best


def test_cnn_from_weights_a_compare_saved(tmp_path):
    """--cnn NAME:pretrained=PATH starts a net from the weights another comparison saved."""
    first = tmp_path / "first"
    assert cli.main(["compare", "--pipelines", "none", "--cnn", "small_convnet:batch_size=32", "--limit", "60",
                     "--epochs", "1", "--save-models", "--out", str(first), "--quiet"]) == 0
    weights = _read(first)["runs"][0]["model_path"]
    out = tmp_path / "second"
    spec = f"small_convnet:batch_size=32:pretrained={weights}"
    assert cli.main(["compare", "--pipelines", "none", "--cnn", spec, "--limit", "60", "--epochs", "1",
                     "--out", str(out), "--quiet"]) == 0
    [rec] = _read(out)["runs"]
    assert rec["status"] == "ok" and rec["params"]["overrides"]["pretrained"] == weights
    missing = tmp_path / "nope.pt"
    assert cli.main(["compare", "--pipelines", "none", "--cnn", f"small_convnet:pretrained={missing}",
                     "--limit", "60", "--epochs", "1", "--out", str(tmp_path / "third"), "--quiet"]) == 1
    [rec] = _read(tmp_path / "third")["runs"]
    assert rec["status"] == "failed" and str(missing) in rec["error"]


def test_bound_images_downscales_once_and_names_only_the_bounds_in_use():
    import io

    from bench.progress import Progress
    from bench.specs import Split

    rng = np.random.default_rng(0)
    big, small = rng.integers(0, 255, (600, 800, 3), np.uint8), rng.integers(0, 255, (100, 120, 3), np.uint8)
    train = Split([big, small], np.array([0, 1]), ["a", "b"])
    test = Split([train.images[0]], np.array([0]), ["a", "b"])  # the same image in two splits
    out = io.StringIO()
    bound = cmp.bound_images([train, test], [("long", 300)], Progress(out))
    assert bound == (300, 0)
    assert train.images[0].shape == (225, 300, 3) and train.images[1] is small
    assert test.images[0] is train.images[0]  # downscaled once
    assert "2 images downscaled" not in out.getvalue() and "longer side 300 px at least" in out.getvalue()
    assert "shorter side" not in out.getvalue()
    assert cmp.bound_images([train], [("long", 300), None], Progress(out)) is None  # a run needs them as they are
