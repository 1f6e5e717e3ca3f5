"""Training curves of the CNN runs: loss per pass (train and test) and test error, as in the book.

The PaddlePaddle book's image-classification chapter plots, per pass over the
training set, the training cost, the test cost and the test error. A CNN
run's record carries ``history`` (``CNNClassifier.history_``: per epoch
``loss`` and ``accuracy`` on the augmented training batches and, on the
epochs evaluated on ``validation_data``, ``test_loss`` and ``test_error``);
this module draws it (matplotlib, Agg) and writes the report snippets.

=========================  ===================================================
:func:`curves_figure`      one run's figure, as PNG
:func:`curves_filename`    its file name in the report folder
:func:`write_curves`       the figures of every CNN run of a report
:func:`render_markdown`    one run's Markdown snippet
:func:`render_html`        one run's HTML snippet (figure embedded)
:func:`curves_markdown`    the report's section (all runs), Markdown
:func:`curves_html`        the report's section (all runs), HTML
=========================  ===================================================
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.specs import safe_name

__all__ = [
    "curves_figure",
    "curves_filename",
    "curves_html",
    "curves_markdown",
    "render_html",
    "render_markdown",
    "write_curves",
]


def curves_filename(name: str) -> str:
    """File name of a run's curves figure (``curves_<run name>.png``)."""
    return f"curves_{safe_name(name)}.png"


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(int(h["epoch"]), float(h[key])) for h in history if h.get(key) is not None and "epoch" in h]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _check_history(history: Any) -> list[Mapping[str, Any]]:
    if not isinstance(history, Sequence) or isinstance(history, (str, bytes)) or not all(
        isinstance(h, Mapping) for h in history
    ):
        raise ValueError(f"history must be a list of per-epoch dicts (CNNClassifier.history_), got {type(history).__name__}")
    return list(history)


def curves_figure(history: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str | None = None) -> bool:
    """Draw one run's training curves to ``path`` (PNG, written atomically).

    Left: the loss per pass, training (mean over the augmented batches of
    the epoch) and test (``test_loss``, where evaluated). Right: the test
    error and, dashed, the training error on augmented batches
    (``1 - accuracy``).

    Parameters
    ----------
    history : list of dict
        ``CNNClassifier.history_``: ``epoch``, ``loss``, ``accuracy`` and, on
        evaluated epochs, ``test_loss``, ``test_error``.
    path : str or path-like
    title : str, optional

    Returns
    -------
    bool
        Whether a figure was written (False when ``history`` holds no epoch).

    Raises
    ------
    ValueError
        ``history`` is not a list of dicts.
    """
    from bench.report import new_figure, save_figure

    history = _check_history(history)
    ep, loss = _series(history, "loss")
    if not ep:
        return False
    tep, tloss = _series(history, "test_loss")
    eep, terr = _series(history, "test_error")
    aep, acc = _series(history, "accuracy")
    fig = new_figure((10.0, 3.8))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax1.plot(ep, loss, "-o", ms=3, label="train loss")
    if tep:
        ax1.plot(tep, tloss, "-s", ms=3, label="test loss")
    ax1.set_xlabel("pass (epoch)")
    ax1.set_ylabel("cross-entropy")
    ax1.set_title("loss per pass")
    ax1.legend(fontsize=8)
    if eep:
        ax2.plot(eep, [100 * e for e in terr], "-s", ms=3, color="C1", label="test error")
    if aep:
        ax2.plot(aep, [100 * (1 - a) for a in acc], "--", color="C0", alpha=0.7, label="train error (augmented)")
    ax2.set_xlabel("pass (epoch)")
    ax2.set_ylabel("error (%)")
    ax2.set_title("error per pass" if eep else "error per pass (no test evaluation)")
    ax2.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _summary(history: Sequence[Mapping[str, Any]]) -> str:
    """One sentence: the last and the best test error, or that there was no evaluation."""
    eep, terr = _series(history, "test_error")
    ep, _ = _series(history, "loss")
    if not eep:
        return f"{len(ep)} epochs; no test evaluation (train with validation_data to get the test curves)."
    best = min(range(len(terr)), key=terr.__getitem__)
    return (
        f"{len(ep)} epochs; test error {100 * terr[-1]:.2f}% after epoch {eep[-1]} "
        f"(lowest {100 * terr[best]:.2f}% after epoch {eep[best]}; no test-time augmentation)."
    )


def _has_curves(run: Mapping[str, Any]) -> bool:
    return run.get("track") == "cnn" and run.get("status") == "ok" and bool(run.get("history"))


def render_markdown(run: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> str:
    """Markdown for one CNN run's curves: a heading, the figure and a one-line summary.

    The figure is linked by its file name (:func:`curves_filename`, next to
    ``report.md``); with ``out_dir``, only when the file is there. Empty for a
    run without ``history``.
    """
    if not run.get("history"):
        return ""
    name = str(run.get("name"))
    history = _check_history(run["history"])
    parts = [f"### {name}\n"]
    fname = curves_filename(name)
    if out_dir is None or (Path(out_dir) / fname).is_file():
        parts.append(f"![training curves of {name}]({fname})\n")
    parts.append(_summary(history) + "\n")
    return "\n".join(parts)


def render_html(run: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> str:
    """HTML ``<figure>`` for one CNN run's curves, the PNG embedded (read from ``out_dir``).

    Without ``out_dir`` (or the file), the caption and summary only. Empty
    for a run without ``history``.
    """
    from bench.report import img_tag

    if not run.get("history"):
        return ""
    name = str(run.get("name"))
    history = _check_history(run["history"])
    path = Path(out_dir) / curves_filename(name) if out_dir is not None else None
    img = img_tag(path, f"training curves of {name}") if path is not None and path.is_file() else ""
    caption = f"training curves: {html.escape(name)}. {html.escape(_summary(history))}"
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def write_curves(report: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Draw the curves of every successful CNN run of ``report`` that has a ``history``; the paths."""
    out_dir = Path(out_dir)
    written = []
    for run in report.get("runs", []):
        if _has_curves(run):
            path = out_dir / curves_filename(str(run.get("name")))
            if curves_figure(run["history"], path, title=f"{run.get('name')} on {report.get('dataset', {}).get('name')}"):
                written.append(path)
    return written


_NOTE = (
    "Loss per pass over the training set (train: mean over the augmented batches of the epoch; "
    "test: the test split, evaluated in eval mode between epochs and never trained on) and the "
    "test error, as the PaddlePaddle book's chapter plots them."
)


def curves_markdown(report: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> str:
    """The report's "Training curves" section in Markdown (empty when no CNN run has a history)."""
    parts = [render_markdown(r, out_dir) for r in report.get("runs", []) if _has_curves(r)]
    if not parts:
        return ""
    return "\n".join(["## Training curves\n", _NOTE + "\n", *parts])


def curves_html(report: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> str:
    """The report's "Training curves" section in HTML (empty when no CNN run has a history)."""
    parts = [render_html(r, out_dir) for r in report.get("runs", []) if _has_curves(r)]
    if not parts:
        return ""
    return "\n".join(["<h2>Training curves</h2>", f'<p class="note">{html.escape(_NOTE)}</p>',
                      '<div class="figs">', *parts, "</div>"])
