"""Published reference figures, for the reproduction table of the reports.

Classic presets carry their own figures (``classicvision.presets.PRESETS[name]
["published"]`` maps a dataset name to a top-1 accuracy, with the preset's
``citation``). CNN figures come from the papers below, in :data:`CNN_PUBLISHED`.

All figures are top-1 accuracy as a fraction in ``[0, 1]``. The CNN figures were
obtained with data augmentation (random crops + flips) and full training schedules
(~160 epochs), on the lossless CIFAR-10 images; the project's CIFAR-10 copy is stored as
JPEG (quality 75), so the published figures are an upper reference for it.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["CNN_PUBLISHED", "JPEG_NOTE", "published_figure", "reproduction_rows"]

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


def _as_fraction(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x / 100.0 if x > 1.0 else x


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
    value = pub[dataset]
    note = ""
    if isinstance(value, Mapping):
        note = str(value.get("note", ""))
        value = value.get("top1")
    top1 = _as_fraction(value)
    if top1 is None:
        return None
    return {"top1": top1, "citation": str(meta.get("citation", "")), "note": note}


def published_figure(base: str, track: str, dataset: str) -> dict | None:
    """The published top-1 of a preset (``track="classic"``) or CNN on ``dataset``.

    Returns
    -------
    figure : dict or None
        ``{"top1": float in [0, 1], "citation": str, "note": str}``, or None when
        no figure is known.
    """
    if track == "classic":
        return _preset_figure(base, dataset)
    fig = CNN_PUBLISHED.get(base, {}).get(dataset)
    return dict(fig) if fig else None


def reproduction_rows(report: Mapping[str, Any]) -> list[dict]:
    """Rows of the reproduction table: runs with a published figure on this dataset.

    Each row: ``name``, ``track``, ``published``, ``measured`` (None for a failed run),
    ``difference`` (measured - published), ``citation``, ``note``.
    """
    dataset = report.get("dataset", {}).get("name", "")
    rows = []
    for run in report.get("runs", []):
        params = run.get("params") or {}
        base = params.get("preset") or params.get("model") or run.get("name")
        fig = run.get("published") or published_figure(base, run.get("track", ""), dataset)
        if not fig:
            continue
        measured = run.get("top1") if run.get("status") == "ok" else None
        rows.append(
            {
                "name": run.get("name"),
                "track": run.get("track"),
                "published": fig["top1"],
                "measured": measured,
                "difference": None if measured is None else measured - fig["top1"],
                "citation": fig.get("citation", ""),
                "note": fig.get("note", ""),
            }
        )
    return rows
