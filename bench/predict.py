"""``python -m bench predict MODEL IMAGE...``: top-k classes of images with a saved model.

MODEL is a file written by ``python -m bench compare --save-models``: a classic pipeline
(``.skops``, loaded through :func:`bench.models_io.load_skops`, which refuses untrusted
types) or a CNN weights file (``CNNClassifier.load``). The JSON sidecar written next to
it (same stem) gives the class names and the training images' format; images are
converted to that format (grayscale or RGB, and resized to the training size when the
training images all had one size, e.g. 8x8 digits or 32x32 CIFAR-10).

The sidecar comes from the same folder as the model and is not trusted either: every
field is checked by :func:`read_sidecar` before use (an ``image_shape`` of
``[30000, 30000]`` would otherwise upscale each input to gigabytes).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from bench.models_io import load_model
from classicvision.datasets import read_image

__all__ = ["SidecarError", "read_sidecar", "load_for_predict", "prepare_image", "class_scores", "predict_main"]

#: Largest side (pixels) an ``image_shape`` in a sidecar may ask images to be resized to.
MAX_SIDE = 8192
_MAX_SIDECAR_BYTES = 16 * 2**20
_MAX_NAME_CHARS = 4096
_DTYPES = frozenset({"bool", "uint8", "uint16", "uint32", "int8", "int16", "int32", "int64",
                     "float16", "float32", "float64"})
#: The fields ``bench.models_io.write_sidecar`` writes; all are required.
SIDECAR_FIELDS = ("name", "track", "base", "target_names", "color", "image_shape", "dtype", "max_value")


class SidecarError(ValueError):
    """The JSON sidecar of a saved model is unreadable or has an invalid field."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_sidecar(path: str | os.PathLike, *, n_classes: int | None = None, track: str | None = None) -> dict:
    """Read and validate the JSON sidecar ``path`` written next to a saved model.

    Parameters
    ----------
    path : path-like
        The ``.json`` file (same stem as the model).
    n_classes : int, optional
        Number of classes of the loaded model; ``target_names`` must have that length.
    track : {"classic", "cnn"}, optional
        Track of the loaded model; the sidecar's ``track`` must match.

    Returns
    -------
    info : dict
        The sidecar's fields (:data:`SIDECAR_FIELDS`; unknown extra fields are
        dropped), with ``image_shape`` as a tuple of 2 or 3 ints or None.

    Raises
    ------
    SidecarError
        When the file is not a JSON object (invalid JSON, not UTF-8, a list, too
        large), a field is missing, or a field has the wrong type or an out-of-range
        value: ``image_shape`` must be None or 2-3 ints with sides in
        ``1..MAX_SIDE`` and 1, 3 or 4 channels (3 when ``color``); ``target_names`` a
        list of ``n_classes`` str; ``color`` a bool; ``dtype`` a numpy dtype name;
        ``max_value`` an int in ``0..65535`` (at most 255 for ``uint8``, 1 for
        ``bool``); ``track`` "classic" or "cnn"; ``name`` and ``base`` str. The
        message names the file.
    """
    path = Path(path)

    def bad(msg: str) -> SidecarError:
        return SidecarError(f"invalid model sidecar {path}: {msg}")

    try:
        size = path.stat().st_size
        if not path.is_file():
            raise bad("not a regular file")
        if size > _MAX_SIDECAR_BYTES:
            raise bad(f"{size} bytes, more than the {_MAX_SIDECAR_BYTES} a sidecar may have")
        text = path.read_bytes().decode("utf-8")
        info = json.loads(text)
    except SidecarError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"cannot read it as JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict):
        raise bad(f"expected a JSON object, got a {type(info).__name__}")
    missing = [k for k in SIDECAR_FIELDS if k not in info]
    if missing:
        raise bad(f"missing field(s) {', '.join(missing)}")

    for key in ("name", "base"):
        if not isinstance(info[key], str) or len(info[key]) > _MAX_NAME_CHARS:
            raise bad(f"{key} must be a str of at most {_MAX_NAME_CHARS} characters, got {info[key]!r:.80}")
    if info["track"] not in ("classic", "cnn"):
        raise bad(f"track must be 'classic' or 'cnn', got {info['track']!r:.80}")
    if track is not None and info["track"] != track:
        raise bad(f"track is {info['track']!r} but the model file is a {track} model")
    color = info["color"]
    if not isinstance(color, bool):
        raise bad(f"color must be true or false, got {color!r:.80}")

    names = info["target_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= _MAX_NAME_CHARS for n in names):
        raise bad("target_names must be a list of str")
    if n_classes is not None and len(names) != n_classes:
        raise bad(f"{len(names)} target_names for a model of {n_classes} classes")

    shape = info["image_shape"]
    if shape is not None:
        if not isinstance(shape, list) or len(shape) not in (2, 3) or not all(_is_int(v) for v in shape):
            raise bad(f"image_shape must be null or a list of 2 or 3 ints, got {shape!r:.80}")
        if not all(1 <= v <= MAX_SIDE for v in shape[:2]):
            raise bad(f"image_shape {shape} has a side outside 1..{MAX_SIDE}")
        if len(shape) == 3 and shape[2] not in (1, 3, 4):
            raise bad(f"image_shape {shape} has {shape[2]} channels; expected 1, 3 or 4")
        if color and (len(shape) != 3 or shape[2] != 3):
            raise bad(f"color is true but image_shape {shape} is not (height, width, 3)")
        shape = tuple(int(v) for v in shape)

    dtype = info["dtype"]
    if dtype not in _DTYPES:
        raise bad(f"dtype must be one of {', '.join(sorted(_DTYPES))}, got {dtype!r:.80}")
    top = {"bool": 1, "uint8": 255}.get(dtype, 65535)
    if not _is_int(info["max_value"]) or not 0 <= info["max_value"] <= top:
        raise bad(f"max_value must be an int in 0..{top} for dtype {dtype}, got {info['max_value']!r:.80}")

    out = {k: info[k] for k in SIDECAR_FIELDS}
    out["image_shape"] = shape
    return out


def load_for_predict(path: str | Path) -> tuple[Any, str, dict]:
    """Load a saved model and its sidecar; returns ``(model, track, info)``.

    ``info`` is the validated sidecar (see :func:`read_sidecar`), or ``{}`` when the
    model has none (images are then used as they are).

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        When ``path`` is missing or a folder.
    SidecarError
        When the sidecar exists but is invalid (the message names it).
    """
    path = Path(path)
    model, track = load_model(path)
    side = path.with_suffix(".json")
    if not os.path.lexists(side):
        return model, track, {}
    classes = getattr(model, "classes_", None)
    n_classes = len(classes) if classes is not None else None
    return model, track, read_sidecar(side, n_classes=n_classes, track=track)


def prepare_image(image: np.ndarray, info: dict) -> np.ndarray:
    """Convert an RGB / gray uint8 image to the training images' format in ``info``."""
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
    2 if the model cannot be loaded).

    File names that are not valid in the output's encoding (e.g. non-UTF-8 bytes,
    which Python hands over as surrogate escapes) are printed with backslash escapes
    (``\\xff``) instead of raising :class:`UnicodeEncodeError`.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if top_k < 1:
        _print(f"error: --top-k must be >= 1, got {top_k}", err)
        return 2
    try:
        model, track, info = load_for_predict(model_path)
    except Exception as exc:
        _print(f"error: cannot load model {_fsname(model_path)}: {type(exc).__name__}: {exc}", err)
        return 2
    names = info.get("target_names")
    failed = 0
    for path in image_paths:
        try:
            img = prepare_image(read_image(path), info)
            scores, classes, label = class_scores(model, track, [img])
        except Exception as exc:
            failed += 1
            _print(f"error: {_fsname(path)}: {type(exc).__name__}: {exc}", err)
            continue
        s = scores[0]
        k = min(top_k, s.shape[0])
        order = np.argsort(-s, kind="stable")[:k]
        _print(_fsname(path), out)
        width = max([len("class")] + [len(_name(classes[j], names)) for j in order])
        _print(f"  {'rank':>4}  {'class':<{width}}  {label}", out)
        for rank, j in enumerate(order, 1):
            _print(f"  {rank:>4}  {_name(classes[j], names):<{width}}  {s[j]:.4f}", out)
    if failed:
        _print(f"{failed} of {len(image_paths)} image(s) could not be classified", err)
        return 1
    return 0


def _fsname(path: str | os.PathLike | bytes) -> str:
    """A file name as text: undecodable bytes (surrogate escapes) become ``\\xNN``."""
    name = os.fsdecode(path)
    try:
        return name.encode(sys.getfilesystemencoding(), "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _print(text: str, stream: TextIO) -> None:
    """``print(text, file=stream)`` that escapes what ``stream``'s encoding cannot write
    (lone surrogates from a message, characters outside an ASCII terminal's range)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeError, LookupError):
        text = _fsname(text) if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else text
        try:
            text = text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:
            text = text.encode("ascii", "backslashreplace").decode("ascii")
    print(text, file=stream)


def _name(c: Any, names: Sequence[str] | None) -> str:
    try:
        i = int(c)
    except (TypeError, ValueError):
        return str(c)
    if names and 0 <= i < len(names):
        return str(names[i])
    return str(c)
