"""ONNX export of a fitted :class:`cnn.CNNClassifier` and an ONNX Runtime predictor.

:func:`export_onnx` writes the classifier's network to an ONNX file (the Open Neural Network
Exchange format, Microsoft and Facebook 2017, now LF AI & Data; https://onnx.ai) with its input normalization folded into
the graph, so the file takes exactly what the classifier's preprocessing produces before
normalizing; :class:`OnnxPredictor` runs such a file (or its int8 version from
:mod:`cnn.quantize`) with ONNX Runtime and the same preprocessing as the classifier, with
the scikit-learn methods ``predict``, ``predict_proba``, ``decision_function`` and ``score``.

The ONNX model
--------------
* input ``image``: ``uint8`` of shape ``(batch, in_chans, input_size, input_size)``, the
  batch axis dynamic: the images after :func:`cnn.data.images_to_tensor` (gray replicated
  to 3 channels or RGB converted to BT.601 luma to match ``in_chans_``, antialiased bilinear
  resize, stretched, to ``input_size_`` x ``input_size_``), channels first, values 0-255;
* in the graph: ``Cast`` to float32, then ``x * (1 / (255 std)) - mean / std`` per channel
  (the classifier's :func:`cnn.data.normalize`, with its ``mean_`` and ``std_``), then the
  network in eval mode (batch norms with their running statistics);
* output ``logits``: ``float32`` of shape ``(batch, n_classes)``, columns in ``classes_``
  order, for the images as given (no flip: the flip test-time augmentation of a classifier
  fitted with ``tta`` and ``flip`` is done by :class:`OnnxPredictor`, which runs the
  mirrored batch too and averages, as ``CNNClassifier`` does);
* metadata (``metadata_props``, key :data:`METADATA_KEY`): JSON with ``classes``,
  ``input_size``, ``in_chans``, ``mean``, ``std``, ``tta_flip``, ``model`` and
  ``precision`` (``"float32"``, or ``"int8"`` for a quantized file).

An ONNX file is a protocol buffer of tensors and operators: loading it executes no Python
code, like the project's other model formats (skops, ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .data import images_to_tensor

__all__ = [
    "METADATA_KEY",
    "DEFAULT_OPSET",
    "NormalizedNet",
    "export_onnx",
    "read_metadata",
    "write_metadata",
    "preprocess",
    "OnnxPredictor",
]

#: The ``metadata_props`` key of the classifier's description in an exported file.
METADATA_KEY = "cnn.CNNClassifier"
#: The ONNX opset written when none is asked for (ONNX Runtime >= 1.17 runs it).
DEFAULT_OPSET = 17
#: Images converted and run at a time by :class:`OnnxPredictor`.
_CHUNK = 256


class NormalizedNet(nn.Module):
    """A network preceded by the classifier's input normalization, for export.

    Parameters
    ----------
    net : torch.nn.Module
        The trained network (eval mode).
    mean, std : sequence of float, length C
        Per-channel statistics in ``[0, 1]`` units (``CNNClassifier.mean_`` / ``std_``).

    Notes
    -----
    ``forward`` takes ``(N, C, H, W)`` uint8 (or float in 0-255) and computes
    ``net(x.float() * (1 / (255 std)) - mean / std)``, the arithmetic of
    :func:`cnn.data.normalize`.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).view(1, -1, 1, 1))
        self.register_buffer("shift", (mean_t / std_t).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(torch.float32) * self.scale - self.shift)


def _metadata(clf: Any, precision: str) -> dict:
    return {
        "format": METADATA_KEY,
        "model": str(clf.model),
        "classes": np.asarray(clf.classes_).tolist(),
        "input_size": int(clf.input_size_),
        "in_chans": int(clf.in_chans_),
        "mean": [float(v) for v in clf.mean_],
        "std": [float(v) for v in clf.std_],
        "tta_flip": bool(clf.tta and clf.flip),
        "precision": precision,
    }


def write_metadata(model: onnx.ModelProto, meta: dict) -> None:
    """Set the classifier description ``meta`` (JSON) in ``model.metadata_props``, in place."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)


def read_metadata(model: onnx.ModelProto | str | os.PathLike, *, path: Any = None) -> dict:
    """The classifier description of an exported ONNX model (or file).

    Raises
    ------
    ValueError
        The file is not ONNX, or has no valid :data:`METADATA_KEY` entry (naming the file).
    """
    if not isinstance(model, onnx.ModelProto):
        path = model
        model = _load_model(path)
    where = f"{path}: " if path is not None else ""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ValueError(f"{where}no {METADATA_KEY!r} metadata: not a file written by cnn.export.export_onnx")
    try:
        meta = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}its {METADATA_KEY!r} metadata is not valid JSON ({exc})") from None
    need = ("classes", "input_size", "in_chans", "tta_flip")
    if not isinstance(meta, dict) or any(k not in meta for k in need):
        raise ValueError(f"{where}its {METADATA_KEY!r} metadata lacks one of {', '.join(need)}")
    if meta["in_chans"] not in (1, 3) or not isinstance(meta["input_size"], int) or meta["input_size"] < 1:
        raise ValueError(f"{where}metadata in_chans={meta['in_chans']!r} / input_size={meta['input_size']!r} "
                         "out of range")
    return meta


def _load_model(path: str | os.PathLike) -> onnx.ModelProto:
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"model path {p} is a folder, not an .onnx file")
    if not p.is_file():
        raise FileNotFoundError(f"ONNX model file not found: {p}")
    try:
        return onnx.load(str(p))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"{p} is not an ONNX model file ({type(exc).__name__}: {exc})") from None


def _save_model_atomic(model: onnx.ModelProto, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def export_onnx(clf: Any, path: str | os.PathLike, *, opset: int | None = None) -> Path:
    """Write a fitted ``CNNClassifier``'s network, input normalization included, as ONNX.

    Parameters
    ----------
    clf : cnn.CNNClassifier
        Fitted (or loaded with ``CNNClassifier.load``), on any device.
    path : path-like
        The ``.onnx`` file to write (atomically; its folder is created).
    opset : int or None, default=None
        ONNX opset version; None: :data:`DEFAULT_OPSET` (17).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    The graph takes ``image``: uint8 ``(batch, in_chans_, input_size_, input_size_)``, the
    classifier's resized images (:func:`cnn.data.images_to_tensor`), and returns ``logits``:
    float32 ``(batch, n_classes)`` in ``classes_`` order; the normalization
    ``(x / 255 - mean_) / std_`` is in the graph (:class:`NormalizedNet`), the flip
    test-time augmentation is not (:class:`OnnxPredictor` applies it). Exported with
    torch's TorchScript-based exporter (``dynamo=False``: the dynamo exporter needs
    ``onnxscript``), in eval mode, on the CPU, with a dynamic batch axis.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        ``clf`` is not fitted.
    OSError
        The file cannot be written (names it).
    """
    check_is_fitted(clf, "model_")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(clf.model_).to("cpu").float().eval()
    net = net.to(memory_format=torch.contiguous_format)
    wrapped = NormalizedNet(net, clf.mean_, clf.std_).eval()
    example = torch.zeros((2, int(clf.in_chans_), int(clf.input_size_), int(clf.input_size_)), dtype=torch.uint8)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".onnx-export-") as tmp:
        raw = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                wrapped, (example,), str(raw), dynamo=False, input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=int(opset or DEFAULT_OPSET), do_constant_folding=True,
            )
        model = onnx.load(str(raw))
    onnx.checker.check_model(model)
    write_metadata(model, _metadata(clf, "float32"))
    try:
        _save_model_atomic(model, path)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write ONNX model file {path}: {exc.strerror or exc}") from exc
    return path


def preprocess(images: Any, meta: dict, filenames: Sequence[str] | None = None) -> np.ndarray:
    """The exported graph's input for ``images``: uint8 ``(N, in_chans, size, size)``.

    The classifier's own conversion (:func:`cnn.data.images_to_tensor`) with the file's
    ``input_size`` and ``in_chans``.
    """
    x = images_to_tensor(images, size=int(meta["input_size"]), in_chans=int(meta["in_chans"]),
                         filenames=filenames)
    return np.ascontiguousarray(x.numpy())


class OnnxPredictor:
    """Predict with an ONNX file written by :func:`export_onnx` (or :mod:`cnn.quantize`).

    Parameters
    ----------
    path : path-like
        The ``.onnx`` file.
    threads : int or None, default=None
        ONNX Runtime's intra-op threads (its own pool, fixed per session; 1 inter-op
        thread). None: ONNX Runtime's default (the physical cores).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    input_size_ : int
    in_chans_ : int
    tta_flip_ : bool
        Whether each image's mirror is scored too and averaged (the classifier's
        ``tta and flip``).
    metadata_ : dict
        The file's classifier description (see the module docstring).
    session_ : onnxruntime.InferenceSession

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        ``path`` is missing or a folder.
    ValueError
        ``path`` is not an ONNX file written by :func:`export_onnx` (names the file).

    Examples
    --------
    >>> from cnn.export import OnnxPredictor, export_onnx
    >>> export_onnx(clf, "net.onnx")  # doctest: +SKIP
    >>> OnnxPredictor("net.onnx", threads=1).predict(test_images)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        self.path = Path(path)
        model = _load_model(self.path)
        self.metadata_ = read_metadata(model, path=self.path)
        self.classes_ = np.asarray(self.metadata_["classes"])
        self.input_size_ = int(self.metadata_["input_size"])
        self.in_chans_ = int(self.metadata_["in_chans"])
        self.tta_flip_ = bool(self.metadata_["tta_flip"])
        self.threads = threads
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        if threads is not None:
            if int(threads) < 1:
                raise ValueError(f"threads must be >= 1 or None, got {threads}")
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        self.session_ = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self._input = self.session_.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session_.run(None, {self._input: x})[0], dtype=np.float32)

    def _views(self, images: Any, filenames: Sequence[str] | None) -> list[np.ndarray]:
        """Logits of the images (and, with ``tta_flip_``, of their mirrors): 1 or 2 ``(N, K)`` arrays."""
        if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
            raise TypeError(f"images must be a sequence of arrays, got {type(images).__name__}")
        x = preprocess(images, self.metadata_, filenames)
        outs: list[list[np.ndarray]] = [[], []]
        for i in range(0, x.shape[0], _CHUNK):
            xb = x[i:i + _CHUNK]
            outs[0].append(self._run(xb))
            if self.tta_flip_:
                outs[1].append(self._run(np.ascontiguousarray(xb[..., ::-1])))
        return [np.concatenate(o) for o in outs if o]

    def decision_function(self, images: Any, filenames: Sequence[str] | None = None) -> np.ndarray:
        """Logits, float32 ``(N, n_classes)`` (``(N,)``: ``logit[1] - logit[0]`` for two classes),
        averaged over the flip when ``tta_flip_``, as ``CNNClassifier.decision_function``."""
        logits = np.mean(self._views(images, filenames), axis=0).astype(np.float32)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, images: Any, filenames: Sequence[str] | None = None) -> np.ndarray:
        """Class probabilities, float64 ``(N, n_classes)``: the softmax, averaged over the flip
        when ``tta_flip_``, as ``CNNClassifier.predict_proba``."""
        probs = []
        for z in self._views(images, filenames):
            z = z.astype(np.float64)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            probs.append(e / e.sum(axis=1, keepdims=True))
        return np.mean(probs, axis=0)

    def predict(self, images: Any, filenames: Sequence[str] | None = None) -> np.ndarray:
        """Predicted labels ``(N,)``, values from ``classes_``."""
        return self.classes_[self.predict_proba(images, filenames).argmax(1)]

    def score(self, images: Any, y: Any) -> float:
        """Top-1 accuracy on ``images`` against the labels ``y``."""
        return float(np.mean(self.predict(images) == np.asarray(y)))
