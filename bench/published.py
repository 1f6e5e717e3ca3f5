"""Published reference figures, for the reproduction table of the reports.

Classic presets carry their own figures (``classicvision.presets.PRESETS[name]
["published"]`` maps a dataset name to a top-1 accuracy, a ``"mean ± std"`` string, or
a mapping that names the figure's metric and may give its ``std`` over repeated
splits, with the preset's ``citation``). CNN figures come from the papers
below, in :data:`CNN_PUBLISHED`.

Figures are fractions in ``[0, 1]`` of one of the :data:`METRICS`: ``"top1"``, the
overall accuracy the CIFAR papers report, ``"top5"``, the top-5 accuracy of the ILSVRC
papers (one minus their top-5 error), or ``"mean_class_accuracy"``, the mean of the
per-class recalls (the diagonal of the row-normalized confusion matrix) that the
15-Scene papers report. The reproduction table compares each figure with the same
measured metric. The CNN figures were obtained with data augmentation (random crops +
flips) and full training schedules (~160 epochs), on the lossless CIFAR-10 images; the
project's CIFAR-10 copy is stored as JPEG (quality 75), so the published figures are an
upper reference for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["CNN_PUBLISHED", "JPEG_NOTE", "METRICS", "METRIC_NOTE", "mean_class_accuracy", "published_figure",
           "reproduction_rows", "split_stats"]

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
METRICS: dict[str, str] = {"top1": "top-1", "top5": "top-5", "mean_class_accuracy": "mean class acc"}

METRIC_NOTE = (
    "metric: top-1 is the overall accuracy; mean class acc is the mean of the per-class "
    "recalls (diagonal of the row-normalized confusion matrix), the figure the 15-Scene and Caltech-101 papers "
    "report; top-5 (ILSVRC) is the share of images whose class is among the five highest scores. "
    "Each published figure is compared with the same measured metric."
)


def _as_fraction(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x / 100.0 if x > 1.0 else x


_MEAN_STD = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?|\.\d+)\s*%?\s*(?:(?:±|\+/-|\+-)\s*(\d+(?:\.\d*)?|\.\d+)\s*%?)?\s*$")


def _mean_std(value: Any, std: Any = None) -> tuple[float, float | None] | None:
    """``(mean, std)`` as fractions from a number or a ``"64.6 ± 0.8"`` string.

    The std is in the unit of the mean: both percent when the mean is above 1.
    """
    if isinstance(value, str):
        m = _MEAN_STD.match(value)
        if m is None:
            return None
        value = float(m.group(1))
        if m.group(2) is not None and std is None:
            std = float(m.group(2))
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(x):
        return None
    scale = 100.0 if x > 1.0 else 1.0
    sd = None
    if std is not None:
        try:
            sd = float(std) / scale
        except (TypeError, ValueError):
            sd = None
        if sd is not None and not (np.isfinite(sd) and sd >= 0):
            sd = None
    return x / scale, sd


def _figure(value: Any, citation: str = "") -> dict | None:
    """A figure as ``{"value", "std", "metric", "citation", "note"}``.

    ``value`` is a number (top-1), a string ``"mean ± std"`` (``"64.6 ± 0.8"``, also
    ``+/-``, with or without ``%``), or a mapping with ``"value"`` (or ``"top1"``, the
    key of figures stored by earlier versions; a number or such a string), ``"std"``
    (the standard deviation over repeated splits, in the unit of the value),
    ``"metric"`` (default ``"top1"``), ``"note"`` and ``"citation"`` (default
    ``citation``). Percentages (values above 1) are turned into fractions, with their
    std. ``std`` is None for a single figure. None when it holds no number or names
    an unknown metric.
    """
    note, metric, std = "", "top1", None
    if isinstance(value, Mapping):
        note = str(value.get("note", ""))
        metric = str(value.get("metric", "top1"))
        citation = str(value.get("citation", citation))
        std = value.get("std")
        value = value.get("value", value.get("top1"))
    parsed = _mean_std(value, std)
    if parsed is None or metric not in METRICS:
        return None
    return {"value": parsed[0], "std": parsed[1], "metric": metric, "citation": citation, "note": note}


def _preset_figure(name: str, dataset: str) -> dict | None:
    # delayed: the presets import every extractor and encoder, which rendering a report
    # from its JSON does not need until a classic run's figure is looked up
    from classicvision.presets import PRESETS

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
        ``{"value": float in [0, 1], "std": float or None, "metric": "top1" |
        "mean_class_accuracy", "citation": str, "note": str}``, or None when no
        figure is known.
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


def split_stats(run: Mapping[str, Any], metric: str) -> tuple[float, float, int] | None:
    """``(mean, std, K)`` of ``metric`` over a run's repeated splits, or None without them.

    ``run["splits"]`` holds ``"n"`` (K), the per-split values under the metric's name
    and ``"<metric>_mean"`` / ``"<metric>_std"``; missing summaries are computed from
    the values (std with ddof=1 when K > 1, else 0).
    """
    sp = run.get("splits")
    if not isinstance(sp, Mapping):
        return None
    raw = sp.get(metric)
    values = [float(v) for v in raw if v is not None] if isinstance(raw, (list, tuple)) else []
    mean, std = sp.get(f"{metric}_mean"), sp.get(f"{metric}_std")
    if mean is None:
        if not values:
            return None
        mean = float(np.mean(values))
    if std is None:
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    try:
        return float(mean), float(std), int(sp.get("n") or len(values) or 1)
    except (TypeError, ValueError):
        return None


def reproduction_rows(report: Mapping[str, Any]) -> list[dict]:
    """Rows of the reproduction table: runs with a published figure on this dataset.

    The figure known now (presets, :data:`CNN_PUBLISHED`) is used, else the one stored
    in the run record (``run["published"]``). The measured value is the run's value of
    the figure's metric; a run recorded without ``mean_class_accuracy`` (reports written
    before bench recorded it) falls back to its top-1, and the row says so.

    A run measured on K repeated splits (``run["splits"]``, with the per-split values
    and their ``<metric>_mean`` / ``<metric>_std``) is compared by its mean; the row
    also gives the std and K.

    Each row: ``name``, ``track``, ``metric`` (the published figure's),
    ``measured_metric`` (the one measured: the same, or ``"top1"`` on fallback),
    ``published``, ``published_std`` (None for a single published figure),
    ``measured`` (None for a failed run; the mean over the splits), ``measured_std``
    and ``n_splits`` (None without repeated splits), ``difference`` (measured -
    published, of the means), ``citation``, ``note``.
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
        measured = measured_std = n_splits = None
        if run.get("status") == "ok":
            stats = split_stats(run, metric)
            if stats is None and metric != "top1" and run.get(metric) is None:
                top1_stats = split_stats(run, "top1")
                if top1_stats is not None:
                    stats, measured_metric = top1_stats, "top1"
            if stats is not None:
                measured, measured_std, n_splits = stats
            else:
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
                "published_std": fig.get("std"),
                "measured": measured,
                "measured_std": measured_std,
                "n_splits": n_splits,
                "difference": None if measured is None else measured - fig["value"],
                "citation": fig.get("citation", ""),
                "note": fig.get("note", ""),
            }
        )
    return rows
