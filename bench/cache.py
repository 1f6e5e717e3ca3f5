"""On-disk cache of the ``"features"`` step outputs of classic pipelines.

The expensive part of a classic pipeline is its first step (extraction + encoding +
pooling), which maps images to a 2-D feature matrix. Re-running a comparison with
another classifier on top (another SVM ``C``, or a second preset sharing the same
features step) should not pay for it again. This module stores, per key,

* ``train.npy`` / ``test.npy``: the float32 feature matrices,
* ``features.skops``: the fitted features step (written with :mod:`skops`, loaded
  back through :func:`bench.models_io.load_skops`, never unpickled),
* ``meta.json``: the timings measured when the entry was built and the key inputs.

Entries are never evicted on their own; ``python -m bench cache`` lists them (size,
preset, shape, age) and ``python -m bench cache clear`` removes them
(:meth:`FeatureCache.entries` / :meth:`FeatureCache.remove`).

The key hashes the dataset identity (a content digest of the train and test images and
labels), the split options (limit / seed / per-class counts), the class and parameters
of the features step (``get_params(deep=True)`` with the parameters that do not change
the output removed: ``n_jobs``, ``verbose``, callbacks) and the classicvision version.

The root folder is ``$CLASSICVISION_CACHE`` when set, else ``~/.cache/classicvision/bench``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "cache_root",
    "dataset_digest",
    "features_step_signature",
    "FeatureCache",
]

_KEY = re.compile(r"[0-9a-f]{40}")
# Parameters that change how fast a step runs or what it prints, not what it returns.
_NEUTRAL_PARAMS = ("n_jobs", "verbose", "callback", "progress", "progress_callback", "memory")


def cache_root() -> Path:
    """Return the cache folder: ``$CLASSICVISION_CACHE`` or ``~/.cache/classicvision/bench``."""
    env = os.environ.get("CLASSICVISION_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "classicvision" / "bench"


def dataset_digest(images: Any, target: Sequence[int]) -> str:
    """Content digest of an image set and its labels.

    Parameters
    ----------
    images : (N, H, W[, C]) ndarray or sequence of (H, W[, C]) ndarrays
        The images, in order.
    target : (N,) array-like of int
        The labels.

    Returns
    -------
    digest : str
        A hex BLAKE2b digest; equal digests mean the same pixels, shapes and labels.
    """
    h = hashlib.blake2b(digest_size=16)
    if isinstance(images, np.ndarray):
        arr = np.ascontiguousarray(images)
        h.update(repr((arr.shape, arr.dtype.str)).encode())
        h.update(memoryview(arr).cast("B"))
    else:
        h.update(str(len(images)).encode())
        for im in images:
            arr = np.ascontiguousarray(im)
            h.update(repr((arr.shape, arr.dtype.str)).encode())
            h.update(memoryview(arr).cast("B"))
    y = np.ascontiguousarray(np.asarray(target, dtype=np.int64))
    h.update(memoryview(y).cast("B"))
    return h.hexdigest()


def _is_neutral(key: str) -> bool:
    last = key.rsplit("__", 1)[-1]
    return last in _NEUTRAL_PARAMS


def _describe(value: Any) -> Any:
    """Stable description of a parameter value (estimators by class path only)."""
    if hasattr(value, "get_params") and not isinstance(value, type):
        cls = type(value)
        return f"<{cls.__module__}.{cls.__qualname__}>"
    if isinstance(value, np.ndarray):
        return f"ndarray{value.shape}:{hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=8).hexdigest()}"
    if isinstance(value, (list, tuple)):
        return type(value)(_describe(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if callable(value):
        return f"<callable {getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}>"
    return repr(value)


def features_step_signature(step: Any) -> str:
    """A string that identifies what a features step computes.

    Parameters
    ----------
    step : estimator
        The (unfitted) ``"features"`` step of a pipeline.

    Returns
    -------
    signature : str
        Its class path followed by its deep parameters, sorted, with nested
        estimators named by class (their own parameters appear as ``a__b`` keys)
        and the output-neutral parameters (``n_jobs``, ``verbose``...) left out.
    """
    cls = type(step)
    params = step.get_params(deep=True) if hasattr(step, "get_params") else {}
    items = sorted((k, _describe(v)) for k, v in params.items() if not _is_neutral(k))
    return f"{cls.__module__}.{cls.__qualname__}{items!r}"


class FeatureCache:
    """Folder of cached ``"features"`` step outputs.

    Parameters
    ----------
    root : path-like or None
        Cache folder; ``None`` uses :func:`cache_root`.
    enabled : bool
        When False every lookup misses and nothing is written.
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.enabled = enabled

    @staticmethod
    def make_key(*, dataset: Mapping[str, Any], step_signature: str, version: str) -> str:
        """Hash the dataset identity, the step signature and the package version."""
        payload = json.dumps(
            {"dataset": dataset, "step": step_signature, "classicvision": version},
            sort_keys=True,
            default=str,
        )
        return hashlib.blake2b(payload.encode(), digest_size=20).hexdigest()

    def _dir(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> dict | None:
        """Return ``{"train", "test", "features_path", "meta"}`` or ``None`` on a miss."""
        if not self.enabled:
            return None
        d = self._dir(key)
        meta_path = d / "meta.json"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            train = np.load(d / "train.npy", allow_pickle=False)
            test = np.load(d / "test.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None
        features_path = d / "features.skops"
        return {
            "train": train,
            "test": test,
            "features_path": features_path if features_path.is_file() else None,
            "meta": meta,
        }

    def put(
        self,
        key: str,
        *,
        train: np.ndarray,
        test: np.ndarray,
        meta: Mapping[str, Any],
        features_step: Any = None,
    ) -> bool:
        """Store one entry atomically (written to a temporary folder, then renamed).

        Returns True when the entry was written. A failure to serialize the fitted
        step only drops ``features.skops`` (the arrays are still cached); other
        failures (disk full, read-only cache) are swallowed and return False, since
        the cache is an optimisation.
        """
        if not self.enabled:
            return False
        from bench.models_io import dump_skops

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        except OSError:
            return False
        try:
            np.save(tmp / "train.npy", np.asarray(train, dtype=np.float32))
            np.save(tmp / "test.npy", np.asarray(test, dtype=np.float32))
            meta = dict(meta)
            if features_step is not None:
                try:
                    dump_skops(features_step, tmp / "features.skops")
                except Exception as exc:  # a step skops cannot write: keep the arrays
                    meta["features_step_error"] = f"{type(exc).__name__}: {exc}"
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            dest = self._dir(key)
            if dest.exists():
                shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
            return True
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return False

    def entries(self) -> list[dict]:
        """The entries in the cache folder, newest first.

        Returns
        -------
        entries : list of dict
            One per entry folder: ``key`` (40 hex digits), ``path``, ``bytes`` (on
            disk), ``modified`` (POSIX time of its newest file), ``meta`` (the parsed
            ``meta.json``, or None) and ``partial`` (True for what an interrupted
            write left behind: a temporary ``.KEY.*`` folder or an entry without a
            readable ``meta.json``). Other files and folders are not entries
            (``$CLASSICVISION_CACHE`` may also hold the decoded datasets).
        """
        if not self.root.is_dir():
            return []
        out = []
        for d in self.root.iterdir():
            name = d.name
            temp = name.startswith(".") and _KEY.fullmatch(name[1:41] or "") is not None
            if not d.is_dir() or not (temp or _KEY.fullmatch(name)):
                continue
            files = [f for f in d.iterdir() if f.is_file()]
            stats = [f.stat() for f in files]
            meta = None
            if not temp:
                try:
                    meta = json.loads((d / "meta.json").read_text())
                except (OSError, ValueError):
                    meta = None
            out.append({
                "key": name[1:41] if temp else name,
                "path": d,
                "bytes": sum(st.st_size for st in stats),
                "modified": max((st.st_mtime for st in stats), default=d.stat().st_mtime),
                "meta": meta,
                "partial": temp or meta is None,
            })
        return sorted(out, key=lambda e: e["modified"], reverse=True)

    def remove(self, *, keys: Sequence[str] = (), older_than_days: float | None = None,
               everything: bool = False) -> list[dict]:
        """Delete entries; returns the ones removed (as :meth:`entries` describes them).

        Parameters
        ----------
        keys : sequence of str
            Key prefixes (at least 6 hex digits each, as ``cache list`` prints 12);
            a prefix that matches several entries removes them all.
        older_than_days : float or None
            Also remove entries not modified for this many days.
        everything : bool
            Remove every entry.

        Raises
        ------
        ValueError
            For a prefix shorter than 6 characters or not hexadecimal.
        """
        for k in keys:
            if len(k) < 6 or not re.fullmatch(r"[0-9a-f]+", k):
                raise ValueError(f"cache key prefix {k!r}: expected at least 6 hex digits (see 'cache list')")
        cutoff = time.time() - 86400.0 * older_than_days if older_than_days is not None else None
        removed = []
        for e in self.entries():
            if (everything or any(e["key"].startswith(k) for k in keys)
                    or (cutoff is not None and e["modified"] < cutoff)):
                shutil.rmtree(e["path"], ignore_errors=True)
                removed.append(e)
        return removed
