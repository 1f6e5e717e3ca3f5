"""Saving and loading fitted models without unpickling arbitrary objects.

Classic pipelines are written with :mod:`skops` (``.skops``: a zip of a JSON schema and
``.npy`` arrays) and read back with :func:`load_skops`, which only constructs types that
are

* trusted by skops itself (scikit-learn estimators, numpy / scipy containers,
  builtins, numpy ufuncs), or
* in :data:`VETTED_TYPES`, the third-party types we reviewed, or
* classes defined in our own packages (``classicvision`` / ``cnn``), which we ship
  and review, and which must resolve to a class that really lives there.

Anything else (a tampered file naming, say, ``subprocess.Popen``) is refused with an
:class:`UntrustedModelError` naming the offending types, before any object is built.
CNNs are written by ``CNNClassifier.save`` (weights and config only; ``torch.load``
with ``weights_only=True`` on the way back).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

__all__ = [
    "VETTED_TYPES",
    "UntrustedModelError",
    "dump_skops",
    "load_skops",
    "skops_nbytes",
    "save_model",
    "load_model",
    "model_kind",
    "cnn_nbytes",
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

_OWN_PACKAGES = ("classicvision", "cnn", "bench")


class UntrustedModelError(ValueError):
    """A model file names types outside the trusted set; it was not loaded."""


def _is_own_type(name: str) -> bool:
    """True when ``name`` (``module.Class``) is a class defined in one of our packages."""
    module_name, _, qualname = name.rpartition(".")
    if not module_name or module_name.split(".")[0] not in _OWN_PACKAGES:
        return False
    try:
        module = importlib.import_module(module_name)
    except Exception:
        return False
    obj = getattr(module, qualname, None)
    return isinstance(obj, type) and obj.__module__ == module_name


def dump_skops(obj: Any, path: str | os.PathLike) -> int:
    """Write ``obj`` to ``path`` with :func:`skops.io.dump` (compressed) and return its size.

    The file is written to ``path + ".tmp"`` first and moved into place, so a reader
    never sees half a file.
    """
    import zipfile

    import skops.io as sio

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    sio.dump(obj, tmp, compression=zipfile.ZIP_DEFLATED)
    os.replace(tmp, path)
    return path.stat().st_size


def skops_nbytes(obj: Any) -> int:
    """Size in bytes of ``obj`` serialized with skops (compressed), without touching disk."""
    import zipfile

    import skops.io as sio

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
    UntrustedModelError
        When the file contains a type that is neither trusted by skops, vetted in
        :data:`VETTED_TYPES` nor one of our own classes. Nothing is constructed.
    ValueError
        When the file is not a skops file.
    """
    import zipfile

    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a skops model file ({type(exc).__name__}: {exc})") from exc
    allowed = [t for t in untrusted if t in VETTED_TYPES or _is_own_type(t)]
    refused = sorted(set(untrusted) - set(allowed))
    if refused:
        raise UntrustedModelError(
            f"refusing to load {path}: it contains types that are not trusted: {', '.join(refused)}. "
            "Only scikit-learn / numpy / scipy types, classicvision and cnn classes and the vetted "
            "types in bench.models_io.VETTED_TYPES are loaded."
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
    ``CNNClassifier.save`` (weights only).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if track == "classic":
        path = folder / f"{name}.skops"
        dump_skops(model, path)
    elif track == "cnn":
        path = folder / f"{name}.pt"
        tmp = folder / f".{name}.tmp.pt"
        model.save(tmp)
        os.replace(tmp, path)
    else:
        raise ValueError(f"unknown track {track!r}; expected 'classic' or 'cnn'")
    return path


def load_model(path: str | os.PathLike) -> tuple[Any, str]:
    """Load a model saved by :func:`save_model`; returns ``(model, track)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    kind = model_kind(path)
    if kind == "classic":
        return load_skops(path), kind
    from cnn import CNNClassifier

    return CNNClassifier.load(path), kind


def cnn_nbytes(model: Any) -> int:
    """Size in bytes of the weights file ``CNNClassifier.save`` writes."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "model.pt"
        model.save(p)
        return p.stat().st_size

