"""The reports rendered from a report dict: Markdown tables, figures, and the
self-contained HTML file checked in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.report import render_markdown, write_reports

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p and Path(p).exists()), None)


def _run(name, track, top1, fit, n=40, classes=3, seed=0, params=None):
    rng = np.random.default_rng(seed)
    correct = int(round(top1 * n))
    y = np.repeat(np.arange(classes), n // classes + 1)[:n]
    pred = y.copy()
    wrong = rng.choice(n, n - correct, replace=False)
    pred[wrong] = (y[wrong] + 1) % classes
    cm = np.zeros((classes, classes), int)
    np.add.at(cm, (y, pred), 1)
    recall = (np.diag(cm) / cm.sum(1)).tolist()
    return {
        "name": name, "track": track, "params": params or {}, "status": "ok", "error": None,
        "top1": float(np.trace(cm) / n), "top5": 1.0, "macro_f1": float(np.mean(recall)),
        "per_class_recall": recall, "confusion": cm.tolist(), "fit_seconds": fit, "predict_seconds": 0.5,
        "images_per_second": n / 0.5, "model_bytes": 123456,
    }


@pytest.fixture
def report():
    failed = {k: None for k in _run("x", "cnn", 0.5, 1.0)}
    failed.update(name="vgg_bn_drop", track="cnn", params={"model": "vgg_bn_drop"}, status="failed",
                  error="RuntimeError: CUDA out of memory <&>")
    return {
        "dataset": {"name": "cifar10", "n_train": 120, "n_test": 40, "classes": ["cat", "dog", "ship"]},
        "environment": {"python": "3.11", "packages": {"numpy": np.__version__, "torch": None},
                        "cpu": {"model": "Test CPU", "count": 2}, "gpu": None},
        "command": "python -m bench compare --dataset cifar10",
        "runs": [
            _run("hog_svm", "classic", 0.75, 3.0, params={"preset": "hog_svm"}),
            _run("resnet20", "cnn", 0.9, 30.0, seed=1, params={"model": "resnet20"}),
            failed,
        ],
    }


def test_markdown_tables(report):
    md = render_markdown(report)
    summary = md.split("## Side by side")[1].split("##")[0]
    rows = [ln for ln in summary.splitlines() if ln.startswith("| ")]
    assert len(rows) == 4  # header + 3 runs
    assert "| resnet20 | cnn | ok | 0.123 | 90.00 | 100.00 |" in md
    repro = md.split("## Reproduction")[1].split("## Per-class")[0]
    # resnet20 has a published CIFAR-10 figure (He et al. 2016: 8.75% error)
    assert "| resnet20 | cnn | 91.25 | 90.00 | -1.25 |" in repro and "He" in repro
    assert "JPEG" in repro
    assert "vgg_bn_drop" in repro  # published figure, measured "–" for the failed run
    recall = md.split("## Per-class recall")[1].split("## Environment")[0]
    assert "| class | hog_svm | resnet20 |" in recall and "| cat |" in recall
    assert "Test CPU" in md


def test_html_is_self_contained(report, tmp_path):
    write_reports(report, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:|file:|//)', html)
    assert html.count("data:image/png;base64,") == 3  # accuracy_vs_time + 2 confusion matrices
    assert "&lt;&amp;&gt;" in html  # error text escaped
    assert (tmp_path / "confusion_hog_svm.png").is_file()
    assert not (tmp_path / "confusion_vgg_bn_drop.png").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_html_renders_in_chromium(report, tmp_path):
    out = tmp_path / "out"
    write_reports(report, out)
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--dump-dom", (out / "report.html").resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    dom = r.stdout
    assert r.returncode == 0, r.stderr[-2000:]
    # the inline script ran after load and every embedded figure decoded
    m = re.search(r'<body[^>]*data-images-total="(\d+)"[^>]*data-images-decoded="(\d+)"', dom)
    assert m, dom[:2000]
    assert m.group(1) == m.group(2) == "3"
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == 3 and all(w > 100 for w in widths)
    for table_id in ("summary", "reproduction", "recall", "environment", "failed"):
        assert f'<table id="{table_id}">' in dom
    summary = dom.split('<table id="summary">')[1].split("</table>")[0]
    assert summary.count("<tr>") == 4
    assert '<td class="failed">failed</td>' in summary

    shot = tmp_path / "shot.png"
    shot_cmd = [c for c in cmd if c != "--dump-dom"]
    shot_cmd[-1:-1] = [f"--screenshot={shot}", "--window-size=1200,900"]
    r = subprocess.run(shot_cmd, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
