"""Saving and loading fitted models without unpickling arbitrary objects.

Classic pipelines are written with :mod:`skops` (``.skops``: a zip of a JSON schema and
``.npy`` arrays) and read back with :func:`load_skops`, which only constructs types that
are

* trusted by skops itself (scikit-learn estimators, numpy / scipy containers,
  builtins, numpy ufuncs), or
* in :data:`VETTED_TYPES`, the third-party types we reviewed, or
* in :func:`trusted_estimator_types`: the public estimator classes of
  ``classicvision`` (features, encoding, pooling, kernels, preprocessing, augment),
  plus the private helper types in :data:`HELPER_TYPES` that their fitted state
  needs (none today: every preset's fitted pipeline holds only public estimators
  and scikit-learn / numpy types).

Anything else is refused with an :class:`UntrustedModelError` naming the file and the
offending types, before any object is built: a tampered file naming, say,
``subprocess.Popen``, but also a class of our own packages that is not an estimator
(``bench.cache.FeatureCache``, ``classicvision.metrics.ClassificationReport``), since
constructing it from untrusted state is not something it was written for.
CNNs are written by ``CNNClassifier.save`` (weights and config only; ``torch.load``
with ``weights_only=True`` on the way back); their ONNX exports and int8 versions are
ONNX files (protocol buffers of tensors and operators, :mod:`cnn.export`), which load
without running Python code either.

Model files are written atomically (a temporary file in the destination folder, then
``os.replace``) with the usual permissions (``0o666 & ~umask``); a failed write (full
disk) leaves no partial file and raises an :class:`OSError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import inspect
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.base import BaseEstimator
from skops.io.exceptions import UntrustedTypesFoundException

from bench.specs import RunSpec, Split, safe_name

__all__ = [
    "VETTED_TYPES",
    "HELPER_TYPES",
    "ESTIMATOR_MODULES",
    "CNN_ESTIMATOR_MODULES",
    "trusted_estimator_types",
    "UntrustedModelError",
    "dump_skops",
    "load_skops",
    "skops_nbytes",
    "save_model",
    "load_model",
    "model_kind",
    "cnn_nbytes",
    "write_sidecar",
    "store_model",
]

# Third-party types skops does not trust by default and that we reviewed: plain data
# holders with no code execution on construction.
VETTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "numpy.dtypes.Float32DType",
    "numpy.dtypes.Float64DType",
    "numpy.dtypes.Int64DType",
    "numpy.dtypes.Int32DType",
    "numpy.dtypes.UInt8DType",
    "numpy.dtypes.BoolDType",
    "builtins.slice",
    "collections.OrderedDict",
    "sklearn.utils._bunch.Bunch",
)

#: The modules whose ``__all__`` lists the estimator classes a saved pipeline may hold.
ESTIMATOR_MODULES: tuple[str, ...] = (
    "classicvision.features",
    "classicvision.encoding",
    "classicvision.pooling",
    "classicvision.kernels",
    "classicvision.preprocessing",
    "classicvision.augment",
)

#: The CNN track's estimator modules (``cnn.CNNFeatures`` in the ``cnn_features_svm`` preset),
#: imported only to load a file that names one of their types, so that loading a classic
#: model never imports torch.
CNN_ESTIMATOR_MODULES: tuple[str, ...] = ("cnn.features",)

#: Private ``classicvision`` types that fitted estimators hold in their state and
#: that must be loadable too. Found by dumping every preset's fitted pipeline
#: (``skops.io.get_untrusted_types``): none today. Add a type here only after
#: checking that it is plain data.
HELPER_TYPES: tuple[str, ...] = ()


class UntrustedModelError(ValueError):
    """A model file names types outside the trusted set; it was not loaded."""


@functools.cache
def trusted_estimator_types(cnn: bool = False) -> frozenset[str]:
    """The ``module.Class`` names of our classes a ``.skops`` file may contain.

    The classes listed in the ``__all__`` of each module of :data:`ESTIMATOR_MODULES`
    that subclass :class:`sklearn.base.BaseEstimator` (named where they are defined,
    as skops names them), plus :data:`HELPER_TYPES`; with ``cnn=True`` those of
    :data:`CNN_ESTIMATOR_MODULES` too.

    Parameters
    ----------
    cnn : bool, default=False
        Include the CNN track's estimators (imports torch).

    Returns
    -------
    names : frozenset of str
    """
    names = set(HELPER_TYPES)
    for module_name in ESTIMATOR_MODULES + (CNN_ESTIMATOR_MODULES if cnn else ()):
        module = importlib.import_module(module_name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
                names.add(f"{obj.__module__}.{obj.__qualname__}")
    return frozenset(names)


def _default_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` gives a new file."""
    try:  # Linux >= 4.7: read the umask without changing it (thread-safe)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to the (new, empty) file ``path`` and flush it to disk."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_error(path: Path, exc: BaseException) -> OSError:
    """An :class:`OSError` naming the model file ``path`` and the cause ``exc``."""
    code = getattr(exc, "errno", None)
    hint = "" if code not in (None, errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else " (no space left on device?)"
    msg = f"cannot write model file {path}: {type(exc).__name__}: {exc}{hint}"
    return OSError(code, msg) if code is not None else OSError(msg)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary file next to ``path``, then move it into place.

    The file gets the usual mode (``0o666 & ~umask``, not the ``0o600`` of
    :func:`tempfile.mkstemp`). On failure the temporary file is removed, ``path`` is
    left as it was, and an ``OSError`` / ``RuntimeError`` from writing (a full disk:
    ``ENOSPC``, or torch's ``inline_container`` "file write failed") is raised again
    as an :class:`OSError` naming ``path``.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, (OSError, RuntimeError)):
            raise _write_error(path, exc) from exc
        raise


def dump_skops(obj: Any, path: str | os.PathLike) -> int:
    """Write ``obj`` to ``path`` with skops (compressed) and return its size in bytes.

    The object is serialized in memory first (an object skops cannot write raises
    before any file is touched), then written to a temporary file in the same folder
    and moved into place, so a reader never sees half a file.

    Raises
    ------
    OSError
        When the file cannot be written (e.g. no space left on device); the message
        names ``path``, and no partial file is left behind.
    """
    path = Path(path)
    data = sio.dumps(obj, compression=zipfile.ZIP_DEFLATED)
    _atomic_write(path, lambda tmp: _write_file(tmp, data))
    return path.stat().st_size


def skops_nbytes(obj: Any) -> int:
    """Size in bytes of ``obj`` serialized with skops (compressed), without touching disk."""
    return len(sio.dumps(obj, compression=zipfile.ZIP_DEFLATED))


def load_skops(path: str | os.PathLike) -> Any:
    """Load a ``.skops`` file, refusing any type outside the trusted set.

    Parameters
    ----------
    path : path-like
        A file written by :func:`dump_skops` (e.g. by ``compare --save-models``).

    Returns
    -------
    obj : object
        The reconstructed object (for a classic model, a fitted ``Pipeline``).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    IsADirectoryError
        When ``path`` is a folder.
    UntrustedModelError
        When the file contains a type that is neither trusted by skops, vetted in
        :data:`VETTED_TYPES` nor in :func:`trusted_estimator_types`. Nothing is
        constructed.
    ValueError
        When the file is not a skops file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"model path {path} is a folder, not a .skops model file")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a skops model file ({type(exc).__name__}: {exc})") from exc
    ours = trusted_estimator_types(cnn=any(t.split(".", 1)[0] == "cnn" for t in untrusted))
    allowed = [t for t in untrusted if t in VETTED_TYPES or t in ours]
    refused = sorted(set(untrusted) - set(allowed))
    if refused:
        raise UntrustedModelError(
            f"refusing to load {path}: it contains types that are not trusted: {', '.join(refused)}. "
            "Only scikit-learn / numpy / scipy types, the classicvision estimator classes "
            "(bench.models_io.trusted_estimator_types()) and the vetted types in "
            "bench.models_io.VETTED_TYPES are loaded."
        )
    try:
        return sio.load(path, trusted=allowed)
    except UntrustedTypesFoundException as exc:  # defence in depth: skops' own audit
        raise UntrustedModelError(f"refusing to load {path}: {exc}") from exc


def model_kind(path: str | os.PathLike) -> str:
    """``"classic"`` for a ``.skops`` file, ``"cnn"`` otherwise."""
    return "classic" if Path(path).suffix == ".skops" else "cnn"


def save_model(model: Any, folder: str | os.PathLike, name: str, track: str) -> Path:
    """Save a fitted model of either track into ``folder`` and return the file path.

    Classic pipelines go to ``<name>.skops``; CNN classifiers to ``<name>.pt`` through
    ``CNNClassifier.save`` (weights only). The file is written atomically and gets
    the usual mode (``0o666 & ~umask``, e.g. ``0o644``).

    Parameters
    ----------
    model : fitted Pipeline or CNNClassifier
    folder : path-like
        Created if missing.
    name : str
        File stem.
    track : {"classic", "cnn"}

    Returns
    -------
    path : Path

    Raises
    ------
    OSError
        When the file cannot be written (a full disk, a read-only folder): the
        message names the file and the cause, and no partial file is left behind.
    ValueError
        For an unknown ``track``.
    """
    if track not in ("classic", "cnn"):
        raise ValueError(f"unknown track {track!r}; expected 'classic' or 'cnn'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if track == "classic":
        path = folder / f"{name}.skops"
        dump_skops(model, path)
    else:
        path = folder / f"{name}.pt"
        _atomic_write(path, model.save)
    return path


def load_model(path: str | os.PathLike) -> tuple[Any, str]:
    """Load a model saved by :func:`save_model`, or an ``.onnx`` file of ``compare
    --export-onnx`` / a ``quantize=int8`` run (as a :class:`cnn.export.OnnxPredictor`);
    returns ``(model, track)``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    IsADirectoryError
        When ``path`` is a folder (e.g. the ``models`` folder instead of a file in it).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"model path {path} is a folder, not a model file (.skops or .pt)")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    kind = model_kind(path)
    if kind == "classic":
        return load_skops(path), kind
    if path.suffix == ".onnx":  # compare --export-onnx or a quantize=int8 run: ONNX Runtime
        from cnn.export import OnnxPredictor

        return OnnxPredictor(path), kind
    from cnn import CNNClassifier  # torch, only to load a CNN

    return CNNClassifier.load(path), kind


def cnn_nbytes(model: Any) -> int:
    """Size in bytes of the weights file ``CNNClassifier.save`` writes."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "model.pt"
        model.save(p)
        return p.stat().st_size


def write_sidecar(path: Path, spec: RunSpec, train: Split) -> None:
    """Describe a saved model for ``bench predict``: class names and input format."""
    shape = None
    if isinstance(train.images, np.ndarray):
        shape = list(train.images.shape[1:])
    else:
        shapes = {tuple(np.shape(im)) for im in train.images[:1000]}
        if len(shapes) == 1:
            shape = list(next(iter(shapes)))
    first = np.asarray(train.images[0])
    info = {
        "name": spec.name,
        "track": spec.track,
        "base": spec.base,
        "target_names": list(train.target_names),
        "color": bool(first.ndim == 3 and first.shape[-1] == 3),
        "image_shape": shape,
        "dtype": str(first.dtype),
        "max_value": int(np.iinfo(first.dtype).max) if np.issubdtype(first.dtype, np.integer) else 1,
    }
    path.with_suffix(".json").write_text(json.dumps(info, indent=1))


def store_model(model: Any, track: str, spec: RunSpec, train: Split, models_dir: str | os.PathLike | None) -> dict:
    """Save a fitted run's model with its sidecar under ``models_dir``, or only size it.

    Parameters
    ----------
    model : estimator
        A fitted classic pipeline (``track="classic"``, saved with skops) or a fitted
        ``cnn.CNNClassifier`` (``track="cnn"``).
    track : {"classic", "cnn"}
    spec : RunSpec
        Names the file (``safe_name(spec.name)``) and fills the sidecar.
    train : Split
        The training split (class names and input format for the sidecar).
    models_dir : path or None
        ``None``: nothing is written and only the size of the file that would be is
        measured.

    Returns
    -------
    dict
        The run record's ``model_bytes``, and ``model_path`` when the model was saved.
    """
    if models_dir is not None:
        path = save_model(model, models_dir, safe_name(spec.name), track)
        write_sidecar(path, spec, train)
        return {"model_path": str(path), "model_bytes": path.stat().st_size}
    return {"model_bytes": skops_nbytes(model) if track == "classic" else cnn_nbytes(model)}
