"""Published reference figures, for the reproduction table of the reports.

Classic presets carry their own figures (``classicvision.presets.PRESETS[name]
["published"]`` maps a dataset name to a top-1 accuracy, or to a mapping that names
the figure's metric, with the preset's ``citation``). CNN figures come from the papers
below, in :data:`CNN_PUBLISHED`.

Figures are fractions in ``[0, 1]`` of one of the :data:`METRICS`: ``"top1"``, the
overall accuracy the CIFAR papers report, or ``"mean_class_accuracy"``, the mean of the
per-class recalls (the diagonal of the row-normalized confusion matrix) that the
15-Scene papers report. The reproduction table compares each figure with the same
measured metric. The CNN figures were obtained with data augmentation (random crops +
flips) and full training schedules (~160 epochs), on the lossless CIFAR-10 images; the
project's CIFAR-10 copy is stored as JPEG (quality 75), so the published figures are an
upper reference for it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["CNN_PUBLISHED", "JPEG_NOTE", "METRICS", "METRIC_NOTE", "mean_class_accuracy", "published_figure",
           "reproduction_rows"]

_HE2016 = (
    "K. He, X. Zhang, S. Ren, J. Sun, \"Deep Residual Learning for Image Recognition\", "
    "CVPR 2016, Table 6 (CIFAR-10 test error). https://doi.org/10.1109/CVPR.2016.90"
)
_ZAGORUYKO2015 = (
    "S. Zagoruyko, \"92.45% on CIFAR-10 in Torch\", Torch blog, 2015 (VGG-16 with BatchNorm "
    "and Dropout). https://torch.ch/blog/2015/07/30/cifar.html"
)
_JORDAN2024 = (
    "K. Jordan, \"94% on CIFAR-10 in 3.29 Seconds on a Single GPU\", 2024. "
    "https://arxiv.org/abs/2404.00498"
)

#: model name -> dataset -> {"top1", "citation", "note"}
CNN_PUBLISHED: dict[str, dict[str, dict[str, Any]]] = {
    "resnet20": {"cifar10": {"top1": 1 - 0.0875, "citation": _HE2016, "note": "error 8.75%"}},
    "resnet32": {"cifar10": {"top1": 1 - 0.0751, "citation": _HE2016, "note": "error 7.51%"}},
    "resnet44": {"cifar10": {"top1": 1 - 0.0717, "citation": _HE2016, "note": "error 7.17%"}},
    "resnet56": {"cifar10": {"top1": 1 - 0.0697, "citation": _HE2016, "note": "error 6.97%"}},
    "resnet110": {
        "cifar10": {
            "top1": 1 - 0.0661,
            "citation": _HE2016,
            "note": "mean of 5 runs, error 6.61±0.16% (best 6.43%)",
        }
    },
    "vgg_bn_drop": {"cifar10": {"top1": 0.9245, "citation": _ZAGORUYKO2015, "note": ""}},
    "fastnet": {
        "cifar10": {
            "top1": 0.9401,
            "citation": _JORDAN2024,
            "note": "airbench94: mean of n=1000 runs, ~10 epochs, flip TTA",
        }
    },
}

JPEG_NOTE = (
    "The project's CIFAR-10 copy is stored as JPEG (quality 75): the published figures, "
    "measured on the lossless images, are an upper reference."
)

#: metric name -> label used in the reports.
METRICS: dict[str, str] = {"top1": "top-1", "mean_class_accuracy": "mean class acc"}

METRIC_NOTE = (
    "metric: top-1 is the overall accuracy; mean class acc is the mean of the per-class "
    "recalls (diagonal of the row-normalized confusion matrix), the figure the 15-Scene papers "
    "report. Each published figure is compared with the same measured metric."
)


def _as_fraction(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x / 100.0 if x > 1.0 else x


def _figure(value: Any, citation: str = "") -> dict | None:
    """A figure as ``{"value", "metric", "citation", "note"}``.

    ``value`` is a number (top-1) or a mapping with ``"value"`` (or ``"top1"``, the
    key of figures stored by earlier versions), ``"metric"`` (default ``"top1"``),
    ``"note"`` and ``"citation"`` (default ``citation``). None when it holds no number
    or names an unknown metric.
    """
    note, metric = "", "top1"
    if isinstance(value, Mapping):
        note = str(value.get("note", ""))
        metric = str(value.get("metric", "top1"))
        citation = str(value.get("citation", citation))
        value = value.get("value", value.get("top1"))
    number = _as_fraction(value)
    if number is None or metric not in METRICS:
        return None
    return {"value": number, "metric": metric, "citation": citation, "note": note}


def _preset_figure(name: str, dataset: str) -> dict | None:
    try:
        from classicvision.presets import PRESETS
    except Exception:
        return None
    meta = PRESETS.get(name)
    if not isinstance(meta, Mapping):
        return None
    pub = meta.get("published") or {}
    if dataset not in pub:
        return None
    return _figure(pub[dataset], str(meta.get("citation", "")))


def published_figure(base: str, track: str, dataset: str) -> dict | None:
    """The published figure of a preset (``track="classic"``) or CNN on ``dataset``.

    Returns
    -------
    figure : dict or None
        ``{"value": float in [0, 1], "metric": "top1" | "mean_class_accuracy",
        "citation": str, "note": str}``, or None when no figure is known.
    """
    if track == "classic":
        return _preset_figure(base, dataset)
    fig = CNN_PUBLISHED.get(base, {}).get(dataset)
    return _figure(fig) if fig else None


def mean_class_accuracy(confusion: Any) -> float | None:
    """Mean of the per-class recalls of a confusion matrix (classes with test samples).

    The same figure as ``classicvision.metrics.ClassificationReport.mean_class_accuracy``,
    from the ``(n_classes, n_classes)`` counts of a run record.
    """
    if confusion is None:
        return None
    cm = np.asarray(confusion, dtype=np.float64)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    return float(np.mean(np.diag(cm)[present] / support[present]))


def reproduction_rows(report: Mapping[str, Any]) -> list[dict]:
    """Rows of the reproduction table: runs with a published figure on this dataset.

    The figure known now (presets, :data:`CNN_PUBLISHED`) is used, else the one stored
    in the run record (``run["published"]``). The measured value is the run's value of
    the figure's metric; a run recorded without ``mean_class_accuracy`` (reports written
    before bench recorded it) falls back to its top-1, and the row says so.

    Each row: ``name``, ``track``, ``metric`` (the published figure's),
    ``measured_metric`` (the one measured: the same, or ``"top1"`` on fallback),
    ``published``, ``measured`` (None for a failed run), ``difference`` (measured -
    published), ``citation``, ``note``.
    """
    dataset = report.get("dataset", {}).get("name", "")
    rows = []
    for run in report.get("runs", []):
        params = run.get("params") or {}
        base = params.get("preset") or params.get("model") or run.get("name")
        fig = published_figure(base, run.get("track", ""), dataset)
        if fig is None and isinstance(run.get("published"), Mapping):
            fig = _figure(run["published"])
        if not fig:
            continue
        metric = measured_metric = fig["metric"]
        measured = None
        if run.get("status") == "ok":
            measured = run.get(metric)
            if measured is None and metric == "mean_class_accuracy":  # older records: from the counts
                measured = mean_class_accuracy(run.get("confusion"))
            if measured is None and metric != "top1":
                measured, measured_metric = run.get("top1"), "top1"
        rows.append(
            {
                "name": run.get("name"),
                "track": run.get("track"),
                "metric": metric,
                "measured_metric": measured_metric,
                "published": fig["value"],
                "measured": measured,
                "difference": None if measured is None else measured - fig["value"],
                "citation": fig.get("citation", ""),
                "note": fig.get("note", ""),
            }
        )
    return rows
