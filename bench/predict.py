"""``python -m bench predict MODEL IMAGE...``: top-k classes of images with a saved model.

MODEL is a file written by ``python -m bench compare --save-models``: a classic pipeline
(``.skops``, loaded through :func:`bench.models_io.load_skops`, which refuses untrusted
types) or a CNN weights file (``CNNClassifier.load``). The JSON sidecar written next to
it (same stem) gives the class names and the training images' format; images are
converted to that format (grayscale or RGB, and resized to the training size when the
training images all had one size, e.g. 8x8 digits or 32x32 CIFAR-10).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

__all__ = ["load_for_predict", "prepare_image", "class_scores", "predict_main"]


def load_for_predict(path: str | Path) -> tuple[Any, str, dict]:
    """Load a saved model and its sidecar; returns ``(model, track, info)``."""
    from bench.models_io import load_model

    path = Path(path)
    model, track = load_model(path)
    side = path.with_suffix(".json")
    info = json.loads(side.read_text()) if side.is_file() else {}
    return model, track, info


def prepare_image(image: np.ndarray, info: dict) -> np.ndarray:
    """Convert an RGB / gray uint8 image to the training images' format in ``info``."""
    import cv2

    img = np.asarray(image)
    color = info.get("color")
    if color is False and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif color is True and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    shape = info.get("image_shape")
    if shape and tuple(img.shape[:2]) != tuple(shape[:2]):
        h, w = int(shape[0]), int(shape[1])
        interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
        img = cv2.resize(img, (w, h), interpolation=interp)
    return np.ascontiguousarray(img, dtype=np.uint8)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def class_scores(model: Any, track: str, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, str]:
    """Scores of each image for each class.

    Returns
    -------
    scores : (n, n_classes) ndarray
    classes : (n_classes,) ndarray of int
    label : {"probability", "score"}
        ``"probability"`` from ``predict_proba``; ``"score"`` when a classic pipeline
        has no ``predict_proba`` and the softmax of ``decision_function`` is shown.
    """
    batch = np.stack(images) if len({im.shape for im in images}) == 1 else list(images)
    classes = np.asarray(getattr(model, "classes_", None) if getattr(model, "classes_", None) is not None else [])
    if hasattr(model, "predict_proba"):
        try:
            p = np.asarray(model.predict_proba(batch))
            return p, (classes if classes.size else np.arange(p.shape[1])), "probability"
        except AttributeError:
            pass
    d = np.asarray(model.decision_function(batch), dtype=np.float64)
    if d.ndim == 1:
        d = np.stack([-d, d], axis=1)
    return _softmax(d), (classes if classes.size else np.arange(d.shape[1])), "score"


def predict_main(model_path: str, image_paths: Sequence[str], top_k: int = 5, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """Print the top-k classes for each image; returns the exit code (1 if any image failed,
    2 if the model cannot be loaded)."""
    out = out or sys.stdout
    err = err or sys.stderr
    from classicvision.datasets import read_image

    if top_k < 1:
        print(f"error: --top-k must be >= 1, got {top_k}", file=err)
        return 2
    try:
        model, track, info = load_for_predict(model_path)
    except Exception as exc:
        print(f"error: cannot load model {model_path}: {type(exc).__name__}: {exc}", file=err)
        return 2
    names = info.get("target_names")
    failed = 0
    for path in image_paths:
        try:
            img = prepare_image(read_image(path), info)
            scores, classes, label = class_scores(model, track, [img])
        except Exception as exc:
            failed += 1
            print(f"error: {path}: {type(exc).__name__}: {exc}", file=err)
            continue
        s = scores[0]
        k = min(top_k, s.shape[0])
        order = np.argsort(-s, kind="stable")[:k]
        print(f"{path}", file=out)
        width = max([len("class")] + [len(_name(classes[j], names)) for j in order])
        print(f"  {'rank':>4}  {'class':<{width}}  {label}", file=out)
        for rank, j in enumerate(order, 1):
            print(f"  {rank:>4}  {_name(classes[j], names):<{width}}  {s[j]:.4f}", file=out)
    if failed:
        print(f"{failed} of {len(image_paths)} image(s) could not be classified", file=err)
        return 1
    return 0


def _name(c: Any, names: Sequence[str] | None) -> str:
    try:
        i = int(c)
    except (TypeError, ValueError):
        return str(c)
    if names and 0 <= i < len(names):
        return str(names[i])
    return str(c)
