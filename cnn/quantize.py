"""Post-training static int8 quantization of a fitted :class:`cnn.CNNClassifier`.

:func:`quantize_classifier` exports the classifier's network to ONNX (:func:`cnn.export.export_onnx`,
normalization in the graph), calibrates the activation ranges on a sample of the training
images and writes an int8 ONNX file that :class:`cnn.export.OnnxPredictor` runs, with the same
preprocessing and test-time flip as the classifier. Weights are int8, activations uint8, with
per-tensor scales found by min-max calibration (Jacob et al., "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018; Krishnamoorthi,
"Quantizing deep convolutional networks for efficient inference: A whitepaper", arXiv:1806.08342,
2018); the graph is in the QDQ form (QuantizeLinear / DequantizeLinear pairs that ONNX Runtime
fuses into integer kernels). The input normalization (``Cast``, ``Mul``, ``Sub`` ahead of the
network) and the network's first convolution stay in float, as is common for the first layer
(DoReFa-Net, Zhou et al., arXiv:1606.06160, 2016, keeps its first and last layers in full
precision): on CIFAR-10 (``compare --dataset cifar10 --limit 5000
--epochs 5``, 5,000 train / 5,000 test images) fastnet, whose first convolution is airbench's
frozen patch-whitening filter, fell from 68.34% in float to 45.26% in int8 with it quantized
and kept 68.10% with it in float; resnet20 gave 55.24% and 55.08% (float 55.18%).

Why ONNX Runtime's ``quantize_static`` and not ``torch.ao.quantization`` (FX graph mode, x86)
----------------------------------------------------------------------------------------------
Measured by ``python -m cnn.quantize --load FILE`` on a resnet20 trained with the settings of
``python -m cnn.quantize --epochs 10`` (10 epochs on the digits, batch 64, no flips, seed 0;
1,198 train / 599 test images), with 256 calibration images and the first convolution in
float. Latency: the median for one image, preprocessing included, on one thread, on the
project's 2-core AMD EPYC (AVX2, no VNNI) with the cores shared with other jobs, so the times
are rough.

===========================  =======  ========  ===========  ==================
model                        top-1 %  file KiB  1-thread ms  agrees with fp32 %
===========================  =======  ========  ===========  ==================
float32, PyTorch (.pt)         98.66    1093.0        8.569              100.00
float32, ONNX Runtime          98.66    1067.3        2.151              100.00
int8, ORT QDQ per-tensor       98.66     315.8        1.599              100.00
int8, ORT QDQ per-channel      98.66     324.9        1.667              100.00
int8, torch.ao FX (x86)        98.66     319.7        4.058              100.00
===========================  =======  ========  ===========  ==================

Both int8 files are 3.4x smaller than the float weights and keep top-1 here; ONNX Runtime's
int8 model is the faster (2.5x FX's, one thread) and a safe file: a protocol buffer that loads
without running Python code, where an FX-quantized model must be rebuilt by re-tracing the
network before its (pickled-tensor) state dict can be loaded, and FX graph mode quantization
is deprecated in torch 2.14 in favour of torchao. Per-tensor weight scales are the default:
on CPUs without VNNI, ONNX Runtime's u8s8 kernels can saturate (the ``reduce_range`` caveat of
its documentation), and with the first convolution quantized too, per-channel scales lost
accuracy (the same resnet20 after 3 epochs, 86.31% in float: 80.47% per channel, 85.81% per
tensor, 86.64% with FX).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from .export import _save_model_atomic, export_onnx, preprocess, read_metadata, write_metadata

__all__ = ["DEFAULT_CALIBRATION", "calibration_indices", "quantize_onnx", "quantize_classifier"]

#: Training images used to calibrate the activation ranges.
DEFAULT_CALIBRATION = 256
_CAL_BATCH = 32
#: Operators only a quantized graph holds (QDQ or QOperator form).
_INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                       "MatMulInteger"})


class _Batches(CalibrationDataReader):
    """Calibration batches of the exported graph's input (uint8 ``(n, C, S, S)``)."""

    def __init__(self, name: str, x: np.ndarray, batch: int = _CAL_BATCH) -> None:
        self._items = iter([{name: x[i:i + batch]} for i in range(0, x.shape[0], batch)])

    def get_next(self) -> dict | None:
        return next(self._items, None)


def calibration_indices(n_images: int, n: int = DEFAULT_CALIBRATION, random_state: int | None = 0) -> np.ndarray:
    """Sorted indices of ``min(n, n_images)`` training images drawn without replacement.

    >>> calibration_indices(10, 4, random_state=0).shape
    (4,)
    """
    if n < 1:
        raise ValueError(f"need at least 1 calibration image, got n={n}")
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_images, size=min(int(n), int(n_images)), replace=False))


def quantize_onnx(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    calibration: np.ndarray,
    *,
    per_channel: bool = False,
    reduce_range: bool = False,
    quant_format: str = "qdq",
    float_first_conv: bool = True,
) -> Path:
    """Statically quantize an exported float ONNX file to int8 with ONNX Runtime.

    Parameters
    ----------
    src : path-like
        A float file from :func:`cnn.export.export_onnx`.
    dst : path-like
        The int8 file to write (atomically); it keeps ``src``'s metadata, with
        ``precision="int8"`` and a ``quantization`` entry.
    calibration : (n, in_chans, S, S) uint8 ndarray
        Preprocessed calibration images (:func:`cnn.export.preprocess` of training images).
    per_channel : bool, default=False
        One weight scale per output channel instead of per tensor.
    reduce_range : bool, default=False
        7-bit weights (avoids u8s8 saturation on CPUs without VNNI).
    quant_format : {"qdq", "qoperator"}, default="qdq"
    float_first_conv : bool, default=True
        Keep the network's first convolution in float (see the module docstring: fastnet's
        frozen whitening convolution loses 23 points of top-1 in int8).

    Returns
    -------
    Path
        ``dst``.

    Raises
    ------
    ValueError
        ``calibration`` is not uint8 ``(n, C, S, S)`` with ``n >= 1`` matching the file, or
        an unknown ``quant_format``.
    RuntimeError
        The result holds no int8 operator (a file not laid out as :func:`export_onnx` writes).
    """
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    meta = read_metadata(model, path=src)
    want = (meta["in_chans"], meta["input_size"], meta["input_size"])
    cal = np.asarray(calibration)
    if cal.dtype != np.uint8 or cal.ndim != 4 or cal.shape[0] < 1 or cal.shape[1:] != want:
        raise ValueError(f"calibration must be uint8 (n >= 1, {want[0]}, {want[1]}, {want[2]}) for {src}, "
                         f"got {cal.dtype} {cal.shape}")
    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    if quant_format not in formats:
        raise ValueError(f"quant_format must be one of {sorted(formats)}, got {quant_format!r}")
    # the input normalization (outside the exported network's '/net/' scope) stays float
    exclude = [n.name for n in model.graph.node if not n.name.startswith("/net/")]
    first_conv = next((n.name for n in model.graph.node if n.op_type == "Conv"), None)
    if float_first_conv and first_conv is not None:
        exclude.append(first_conv)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".quantize-") as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(
            str(pre), str(out), _Batches(model.graph.input[0].name, np.ascontiguousarray(cal)),
            quant_format=formats[quant_format], per_channel=per_channel, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
        )
        qmodel = onnx.load(str(out))
    if not any(n.op_type in _INT8_OPS for n in qmodel.graph.node):
        raise RuntimeError(f"quantizing {src} left no int8 operator in the graph (its network's nodes are "
                           "expected under the exporter's '/net/' scope; was it written by export_onnx?)")
    meta = {**meta, "precision": "int8", "quantization": {
        "tool": "onnxruntime.quantization.quantize_static", "format": quant_format, "per_channel": per_channel,
        "reduce_range": reduce_range, "calibration_images": int(cal.shape[0]), "calibrate_method": "minmax",
        "float_first_conv": bool(float_first_conv and first_conv is not None),
        "weights": "int8", "activations": "uint8"}}
    write_metadata(qmodel, meta)
    _save_model_atomic(qmodel, dst)
    return dst


def quantize_classifier(
    clf: Any,
    path: str | os.PathLike,
    calibration_images: Any,
    *,
    n_calibration: int = DEFAULT_CALIBRATION,
    random_state: int | None = 0,
    per_channel: bool = False,
    opset: int | None = None,
) -> Path:
    """Write an int8 ONNX version of a fitted ``CNNClassifier``, calibrated on training images.

    Parameters
    ----------
    clf : cnn.CNNClassifier
        Fitted.
    path : path-like
        The int8 ``.onnx`` file to write; run it with :class:`cnn.export.OnnxPredictor`.
    calibration_images : sequence of images or (N, H, W[, C]) ndarray
        Training images (never test images); ``n_calibration`` of them, drawn with
        ``random_state``, calibrate the activation ranges.
    n_calibration : int, default=256
    random_state : int or None, default=0
    per_channel : bool, default=False
        See :func:`quantize_onnx`.
    opset : int or None
        See :func:`cnn.export.export_onnx`.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(calibration_images)
    idx = calibration_indices(n, n_calibration, random_state)
    sample = calibration_images[idx] if isinstance(calibration_images, np.ndarray) else [
        calibration_images[i] for i in idx]
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".quantize-") as tmp:
        fp32 = export_onnx(clf, Path(tmp) / "float.onnx", opset=opset)
        cal = preprocess(sample, read_metadata(fp32))
        return quantize_onnx(fp32, path, cal, per_channel=per_channel)


# ----------------------------------------------------------------------------- the measurement
def _median_ms(fn, images: Any, seconds: float = 2.0, warmup: int = 3) -> float:
    """Median time of ``fn`` on one image (cycling through ``images``), in ms."""
    batches = [images[i:i + 1] for i in range(len(images))]
    for b in batches[:warmup]:
        fn(b)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 500):
        t0 = time.perf_counter()
        fn(batches[len(times) % len(batches)])
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _fx_int8(clf: Any, cal: np.ndarray):
    """torch.ao FX graph-mode int8 (x86 backend) of the normalized network, and its state-dict bytes."""
    import copy
    import io
    import warnings

    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from .export import NormalizedNet

    torch.backends.quantized.engine = "x86"
    net = NormalizedNet(copy.deepcopy(clf.model_).cpu().eval(), clf.mean_, clf.std_).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(net, get_default_qconfig_mapping("x86"), example_inputs=(torch.from_numpy(cal[:1]),))
        with torch.inference_mode():
            for i in range(0, cal.shape[0], _CAL_BATCH):
                prepared(torch.from_numpy(cal[i:i + _CAL_BATCH]))
        qnet = convert_fx(prepared)
    buf = io.BytesIO()
    torch.save(qnet.state_dict(), buf)
    return qnet, len(buf.getvalue())


def compare_backends(clf: Any, train_images: Any, test_images: Any, test_target: Any, out_dir: str | os.PathLike,
                     *, n_calibration: int = DEFAULT_CALIBRATION, random_state: int | None = 0) -> list[dict]:
    """Top-1, file size, 1-thread latency and agreement with float32 of the int8 candidates.

    The measurement behind this module's choice: PyTorch float32, ONNX Runtime float32,
    ``torch.ao`` FX int8 (x86) and ONNX Runtime QDQ int8 per tensor and per channel, on one
    fitted classifier. Files are written to ``out_dir``. Returns one dict per model.
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # preprocessing and PyTorch on one thread, as ONNX Runtime's sessions
    try:
        return _compare(clf, train_images, test_images, test_target, out, n_calibration, random_state)
    finally:
        torch.set_num_threads(old_threads)


def _compare(clf, train_images, test_images, test_target, out: Path, n_calibration, random_state) -> list[dict]:
    import torch

    from .export import OnnxPredictor

    y = np.asarray(test_target)
    idx = calibration_indices(len(train_images), n_calibration, random_state)
    cal_images = train_images[idx] if isinstance(train_images, np.ndarray) else [train_images[i] for i in idx]
    fp32 = export_onnx(clf, out / "float32.onnx")
    meta = read_metadata(fp32)
    cal = preprocess(cal_images, meta)
    pt_path = out / "float32.pt"
    clf.save(pt_path)
    ref = clf.predict(test_images)
    one = test_images[:16]
    rows = [{"model": "float32, PyTorch", "top1": float(np.mean(ref == y)), "bytes": pt_path.stat().st_size,
             "ms_1thread": _median_ms(clf.predict_proba, one), "agreement": 1.0}]
    candidates = [("float32, ONNX Runtime", fp32)]
    for name, pc in (("int8, ORT QDQ per-tensor", False), ("int8, ORT QDQ per-channel", True)):
        t0 = time.perf_counter()
        candidates.append((name, quantize_onnx(fp32, out / f"int8_{'channel' if pc else 'tensor'}.onnx", cal,
                                               per_channel=pc)))
        print(f"{name}: quantized in {time.perf_counter() - t0:.1f} s")
    for name, path in candidates:
        pred = OnnxPredictor(path, threads=1)
        p = pred.predict(test_images)
        rows.append({"model": name, "top1": float(np.mean(p == y)), "bytes": path.stat().st_size,
                     "ms_1thread": _median_ms(pred.predict_proba, one), "agreement": float(np.mean(p == ref))})
    qnet, nbytes = _fx_int8(clf, cal)
    flip = bool(meta["tta_flip"])

    def fx_proba(images):
        x = torch.from_numpy(preprocess(images, meta))
        with torch.inference_mode():
            views = [qnet(x)] + ([qnet(x.flip(3))] if flip else [])
            return torch.stack([v.double().softmax(-1) for v in views]).mean(0).numpy()

    p = clf.classes_[fx_proba(test_images).argmax(1)]
    rows.append({"model": "int8, torch.ao FX (x86)", "top1": float(np.mean(p == y)), "bytes": nbytes,
                 "ms_1thread": _median_ms(fx_proba, one), "agreement": float(np.mean(p == ref))})
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m cnn.quantize``: train a CNN on the digits and print :func:`compare_backends`."""
    import argparse

    from classicvision.datasets import load_digits_images

    from .classifier import CNNClassifier

    ap = argparse.ArgumentParser(prog="python -m cnn.quantize", description=compare_backends.__doc__)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--load", default=None, help="a CNNClassifier.save file instead of training")
    ap.add_argument("--out", default="runs/quantize-backends")
    args = ap.parse_args(argv)
    tr, te = load_digits_images(split="train"), load_digits_images(split="test")
    if args.load:
        clf = CNNClassifier.load(args.load, device="cpu")
    else:
        clf = CNNClassifier(model=args.model, epochs=args.epochs, batch_size=64, flip=False, random_state=0,
                            device="cpu").fit(tr.images, tr.target)
    rows = compare_backends(clf, tr.images, te.images, te.target, args.out)
    print(f"{'model':<28} {'top-1 %':>8} {'file KiB':>9} {'1-thread ms':>12} {'agrees %':>9}")
    for r in rows:
        print(f"{r['model']:<28} {100 * r['top1']:8.2f} {r['bytes'] / 1024:9.1f} {r['ms_1thread']:12.3f} "
              f"{100 * r['agreement']:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
