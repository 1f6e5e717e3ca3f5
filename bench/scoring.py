"""Scoring a fitted run: chunked transforms and scores, and the metrics of a run record.

:func:`map_chunks` applies a transform or a scoring method to consecutive chunks of
images and fills one preallocated array (peak memory: one copy of the result and one
chunk); :func:`compute_scores` turns any classifier's output into an ``(n, n_classes)``
score array; :func:`record_metrics` gives the metric keys of a run record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.specs import n_images
from classicvision.metrics import classification_report

__all__ = ["chunk_bounds", "map_chunks", "compute_scores", "record_metrics"]


def chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    chunk = max(1, int(chunk))
    return [(i, min(i + chunk, n)) for i in range(0, n, chunk)]

def map_chunks(
    fn: Callable[[Any], np.ndarray],
    images: Any,
    chunk: int,
    update: Callable[[int], None] | None,
) -> np.ndarray:
    """Apply ``fn`` to consecutive chunks of ``images`` and stack the results.

    The output array is allocated once from the first chunk's shape and dtype and
    filled in place, so peak memory is one copy of the result (plus one chunk), not
    two as with a final concatenation.
    """
    n = n_images(images)
    result = None
    for lo, hi in chunk_bounds(n, chunk):
        out = fn(images[lo:hi])
        if hasattr(out, "toarray"):  # sparse feature matrices
            out = out.toarray()
        out = np.asarray(out)
        if out.shape[0] != hi - lo:
            raise ValueError(f"{getattr(fn, '__name__', fn)} returned {out.shape[0]} rows for {hi - lo} images")
        if result is None:
            result = np.empty((n,) + out.shape[1:], dtype=out.dtype)
        result[lo:hi] = out
        if update is not None:
            update(hi)
    if result is None:
        raise ValueError("no images to process")
    return result

def compute_scores(
    estimator: Any, X: Any, n_classes: int, *, chunk: int = 2048, update=None
) -> tuple[np.ndarray, str]:
    """Per-class scores of ``estimator`` on ``X``, as an ``(n, n_classes)`` array.

    Uses ``decision_function`` when the final estimator has it (its arg-max is the
    prediction of margin classifiers; Platt-scaled ``predict_proba`` of an SVC can
    disagree with ``predict``), else ``predict_proba``, else one-hot ``predict``.
    Columns follow the estimator's ``classes_`` and are scattered into the dataset's
    ``n_classes`` columns; classes never seen in training get the lowest score.

    Returns
    -------
    scores : (n, n_classes) ndarray of float64
    kind : {"decision_function", "predict_proba", "predict"}
    """
    if hasattr(estimator, "decision_function"):
        kind, fn = "decision_function", estimator.decision_function
    elif hasattr(estimator, "predict_proba"):
        kind, fn = "predict_proba", estimator.predict_proba
    else:
        kind, fn = "predict", estimator.predict
    raw = map_chunks(fn, X, chunk, update).astype(np.float64, copy=False)
    classes = np.asarray(getattr(estimator, "classes_", np.arange(n_classes)))
    if kind == "predict":
        pred = raw.astype(np.int64).ravel()
        out = np.zeros((pred.shape[0], n_classes))
        out[np.arange(pred.shape[0]), pred] = 1.0
        return out, kind
    if raw.ndim == 1:  # binary decision_function: positive class score
        raw = np.stack([-raw, raw], axis=1)
    fill = 0.0 if kind == "predict_proba" else (raw.min() - 1.0 if raw.size else 0.0)
    out = np.full((raw.shape[0], n_classes), fill)
    out[:, classes.astype(np.int64)] = raw
    return out, kind

def record_metrics(y_true: np.ndarray, scores: np.ndarray, target_names: list[str]) -> dict:
    rep = classification_report(y_true, scores, target_names=target_names)
    d = rep.to_dict()
    recall = d.get("per_class_recall", rep.per_class_recall)
    return {
        "top1": _num(rep.top1),
        "top5": _num(rep.top5),
        "macro_f1": _num(rep.macro_f1),
        "mean_class_accuracy": _num(rep.mean_class_accuracy),
        "per_class_recall": _tolist(recall),
        "confusion": _tolist(d.get("confusion", rep.confusion)),
    }

def _num(x: Any) -> float | None:
    return None if x is None else float(x)

def _tolist(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        return {str(k): _tolist(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_tolist(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
