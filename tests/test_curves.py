"""bench.curves: the training-curves figure and its report snippets."""

import numpy as np
import pytest

from bench.curves import (
    curves_figure,
    curves_filename,
    curves_html,
    curves_markdown,
    render_html,
    render_markdown,
    write_curves,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _history(n=4, every=2):
    out = []
    for e in range(1, n + 1):
        h = {"epoch": e, "loss": 2.0 / e, "accuracy": 0.2 * e, "lr": 0.1, "images_per_second": 100.0, "seconds": 1.0}
        if e % every == 0 or e == n:
            h.update(test_loss=2.2 / e, test_error=0.5 / e)
        out.append(h)
    return out


def _report(history):
    return {"dataset": {"name": "digits"}, "runs": [
        {"name": "small_convnet:augment=cutout+mixup", "track": "cnn", "status": "ok", "history": history},
        {"name": "hog_svm", "track": "classic", "status": "ok"},
        {"name": "resnet20", "track": "cnn", "status": "failed", "history": history},
    ]}


def test_figure_is_a_png_and_empty_history_writes_nothing(tmp_path):
    path = tmp_path / "c.png"
    assert curves_figure(_history(), path, title="t") is True
    assert path.read_bytes()[:8] == PNG
    assert curves_figure([], tmp_path / "none.png") is False and not (tmp_path / "none.png").exists()
    # a history without test entries still draws the training curve
    assert curves_figure([{"epoch": 1, "loss": 1.0, "accuracy": 0.5}], tmp_path / "train.png")
    with pytest.raises(ValueError, match="list of per-epoch dicts"):
        curves_figure("loss", tmp_path / "bad.png")


def test_snippets_name_the_figure_and_summarize_from_the_history(tmp_path):
    run = _report(_history())["runs"][0]
    md = render_markdown(run)
    assert curves_filename(run["name"]) in md and md.startswith("### small_convnet")
    # 4 epochs; the test error of the last evaluated epoch (4) and the lowest
    assert "4 epochs; test error 12.50% after epoch 4 (lowest 12.50% after epoch 4" in md
    assert curves_filename(run["name"]) not in render_markdown(run, tmp_path)  # no file yet: no broken link
    assert render_markdown({"name": "x"}) == "" and render_html({"name": "x"}) == ""
    curves_figure(run["history"], tmp_path / curves_filename(run["name"]))
    page = render_html(run, tmp_path)
    assert page.startswith("<figure><img") and "data:image/png;base64," in page
    assert "test error 12.50%" in page
    no_test = render_markdown({"name": "n", "history": [{"epoch": 1, "loss": 1.0, "accuracy": 0.5}]})
    assert "no test evaluation" in no_test


def test_report_sections_cover_the_successful_cnn_runs_only(tmp_path):
    rep = _report(_history())
    written = write_curves(rep, tmp_path)
    assert [p.name for p in written] == [curves_filename("small_convnet:augment=cutout+mixup")]
    md, page = curves_markdown(rep, tmp_path), curves_html(rep, tmp_path)
    assert md.startswith("## Training curves") and md.count("### ") == 1
    assert page.startswith("<h2>Training curves</h2>") and page.count("<figure>") == 1
    assert curves_markdown({"runs": [rep["runs"][1]]}) == "" and curves_html({"runs": []}) == ""


@pytest.mark.usefixtures("torch_one_thread")
def test_a_real_fit_history_draws(tmp_path):
    from classicvision.datasets import load_digits_images
    from cnn import CNNClassifier

    tr, te = load_digits_images(split="train"), load_digits_images(split="test")
    clf = CNNClassifier(epochs=2, batch_size=64, flip=False, random_state=0, num_threads=1)
    clf.fit(tr.images[:200], tr.target[:200], validation_data=(te.images[:100], te.target[:100]))
    assert curves_figure(clf.history_, tmp_path / "real.png")
    errs = [h["test_error"] for h in clf.history_]
    assert len(errs) == 2 and all(0 <= e <= 1 for e in errs) and np.isfinite(clf.history_[-1]["test_loss"])
