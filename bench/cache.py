"""On-disk cache of the ``"features"`` step outputs of classic pipelines.

The expensive part of a classic pipeline is its first step (extraction + encoding +
pooling), which maps images to a 2-D feature matrix. Re-running a comparison with
another classifier on top (another SVM ``C``, or a second preset sharing the same
features step) should not pay for it again. This module stores, per key,

* ``train.npy`` / ``test.npy``: the float32 feature matrices,
* ``features.skops``: the fitted features step (written with :mod:`skops`, loaded
  back through :func:`bench.models_io.load_skops`, never unpickled),
* ``meta.json``: the timings measured when the entry was built and the key inputs,
  the marker field ``"bench_feature_cache"`` (the format version) and the BLAKE2b
  checksums of the other files and of ``meta.json`` itself.

:meth:`FeatureCache.get` verifies every checksum before it serves an entry; an entry
that does not verify (a file changed, truncated or missing, ``meta.json`` unreadable)
is removed with a :class:`RuntimeWarning` naming its folder, and the lookup misses, so
the caller recomputes the features and writes the entry again.

Entries are never evicted on their own; ``python -m bench cache`` lists them (size,
preset, shape, age) and ``python -m bench cache clear`` removes them
(:meth:`FeatureCache.entries` / :meth:`FeatureCache.remove`). Only folders this module
wrote are entries: a ``meta.json`` with the marker field, or the temporary folder of a
write in progress (or interrupted); anything else in the cache folder is left alone.

The key hashes the dataset identity (a content digest of the train and test images and
labels), the split options (limit / seed / per-class counts), the class and parameters
of the features step (``get_params(deep=True)`` with the parameters that do not change
the output removed: ``n_jobs``, ``verbose``, callbacks), a digest of the source code of
that step (:func:`step_source_digest`: editing the HOG code invalidates the HOG
entries) and the classicvision version.

The root folder is ``$CLASSICVISION_CACHE`` when set, else ``~/.cache/classicvision/bench``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.models_io import dump_skops
from bench.specs import is_lazy

__all__ = [
    "cache_root",
    "dataset_digest",
    "features_step_signature",
    "step_source_digest",
    "FeatureCache",
]

_KEY = re.compile(r"[0-9a-f]{40}")
#: Marker field of the ``meta.json`` this module writes (its value: the entry format).
MARKER = "bench_feature_cache"
_FORMAT = 2
#: The files an entry (or its temporary folder) may hold.
_ENTRY_FILES = frozenset({"train.npy", "test.npy", "features.skops", "meta.json"})
_ARRAYS = ("train.npy", "test.npy")
_CHUNK = 1 << 23  # bytes hashed per read
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
    images : (N, H, W[, C]) ndarray, sequence of (H, W[, C]) ndarrays, or lazy sequence
        The images, in order. A lazy sequence (:func:`bench.specs.is_lazy`) is
        identified by its ``fingerprint()`` (file names, sizes, modification times and
        size bound), without decoding.
    target : (N,) array-like of int
        The labels.

    Returns
    -------
    digest : str
        A hex BLAKE2b digest; equal digests mean the same pixels, shapes and labels.
    """
    h = hashlib.blake2b(digest_size=16)
    if is_lazy(images):  # the files' identity (names, sizes, times, bound), nothing decoded
        h.update(f"lazy:{len(images)}:{images.fingerprint()}".encode())
    elif isinstance(images, np.ndarray):
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
        and the output-neutral parameters (``n_jobs``, ``verbose``...) left out,
        then ``source=`` and the :func:`step_source_digest` of the step, so that a
        change of the code that computes the features changes the signature.
    """
    cls = type(step)
    params = step.get_params(deep=True) if hasattr(step, "get_params") else {}
    items = sorted((k, _describe(v)) for k, v in params.items() if not _is_neutral(k))
    return f"{cls.__module__}.{cls.__qualname__}{items!r} source={step_source_digest(step)}"


# ----------------------------------------------------------------------------- source digest
# (path, st_mtime_ns, st_size) -> digest of the file's bytes; memoized per process, and a
# file rewritten since (new mtime or size) is hashed again.
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    memo = (path, st.st_mtime_ns, st.st_size)
    digest = _FILE_DIGESTS.get(memo)
    if digest is None:
        try:
            digest = _hash_file(Path(path), digest_size=16)
        except OSError:
            return "unreadable"
        _FILE_DIGESTS[memo] = digest
    return digest


def _source_file(obj: Any) -> str | None:
    """The source file of a class or function (its module's ``__file__`` as a fallback)."""
    try:
        f = inspect.getsourcefile(obj)
    except (TypeError, OSError):
        f = None
    if f is None:
        mod = sys.modules.get(getattr(obj, "__module__", None) or "")
        f = getattr(mod, "__file__", None)
    return os.path.abspath(f) if f else None


def _top_package(name: str | None) -> str:
    return (name or "").split(".", 1)[0]


def _module_files(module_name: str | None) -> set[str]:
    """The module's file and those of the same-package modules it imports names from.

    One level of imports is followed (``from ._common import helper`` in the HOG module
    brings ``_common.py`` in), within the module's top-level package only.
    """
    mod = sys.modules.get(module_name or "")
    if mod is None:
        return set()
    files = set()
    own = getattr(mod, "__file__", None)
    if own:
        files.add(os.path.abspath(own))
    top = _top_package(module_name)
    for value in list(vars(mod).values()):
        if inspect.ismodule(value):
            name = value.__name__
        elif inspect.isclass(value) or inspect.isfunction(value):
            name = getattr(value, "__module__", None)
        else:
            continue
        if name and name != module_name and _top_package(name) == top:
            sub = getattr(sys.modules.get(name), "__file__", None)
            if sub:
                files.add(os.path.abspath(sub))
    return files


def step_source_digest(step: Any) -> str:
    """Digest of the source files of the code a features step runs.

    Parameters
    ----------
    step : estimator
        The ``"features"`` step.

    Returns
    -------
    digest : str
        A hex BLAKE2b digest of the bytes of the source files of: the module of every
        class in the method resolution order of the step and of every estimator among
        its ``get_params(deep=True)`` values (nested steps, encoders...), the modules of
        the functions among those values, and the same-package modules those modules
        import names from. File digests are memoized per process (keyed by path,
        modification time and size).
    """
    seen: set[int] = set()
    classes: set[type] = set()
    funcs: list[Any] = []

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)
            return
        if isinstance(obj, dict):
            for v in obj.values():
                visit(v)
            return
        if isinstance(obj, type):
            return
        if hasattr(obj, "get_params"):
            classes.update(c for c in type(obj).__mro__ if c is not object)
            try:
                params = obj.get_params(deep=True)
            except Exception:
                params = {}
            for v in params.values():
                visit(v)
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            funcs.append(obj)

    visit(step)
    files: set[str] = set()
    for cls in classes:
        files |= _module_files(cls.__module__)
        f = _source_file(cls)
        if f:
            files.add(f)
    for fn in funcs:
        f = _source_file(fn)
        if f:
            files.add(f)
    h = hashlib.blake2b(digest_size=16)
    for f in sorted(files):
        h.update(f"{os.path.basename(f)}:{_file_digest(f)};".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- entries
def _hash_file(path: Path, digest_size: int = 32) -> str:
    """BLAKE2b of a file's bytes, read in chunks."""
    h = hashlib.blake2b(digest_size=digest_size)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


#: Rows copied at a time into a cache file from a store or a memmap.
_COPY_ROWS = 4096


def _save_rows(path: Path, X: Any, dtype: str = "float32") -> None:
    """``X`` (array, memmap or store) as the ``.npy`` file ``path`` of ``dtype``, block by block."""
    dt = np.dtype(dtype)
    if isinstance(X, np.ndarray) and not isinstance(X, np.memmap):
        np.save(path, np.asarray(X, dtype=dt))
        return
    n, d = (int(v) for v in X.shape)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dt, shape=(n, d))
    try:
        for a in range(0, n, _COPY_ROWS):
            out[a : a + _COPY_ROWS] = np.asarray(X[a : a + _COPY_ROWS], dtype=dt)
        out.flush()
    finally:
        del out


def _meta_checksum(meta: Mapping[str, Any]) -> str:
    """Checksum of ``meta.json``'s content (without its own ``"checksum"`` field)."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=32).hexdigest()


def _read_meta(d: Path) -> dict | None:
    """The parsed ``meta.json`` of ``d`` when it carries the marker field, else None."""
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and MARKER in meta else None


def _json_ok(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def _looks_like_entry(d: Path) -> bool:
    """An entry whose ``meta.json`` is gone or unreadable: entry files only, with an array."""
    try:
        names = {f.name for f in d.iterdir()}
    except OSError:
        return False
    return names <= _ENTRY_FILES and bool(names & set(_ARRAYS))


def _is_temp_dir(d: Path) -> bool:
    """A temporary ``.KEY.*`` folder of a write, holding nothing but entry files."""
    name = d.name
    if not (name.startswith(".") and len(name) > 42 and name[41] == "." and _KEY.fullmatch(name[1:41])):
        return False
    try:
        return all(f.name in _ENTRY_FILES for f in d.iterdir())
    except OSError:
        return False


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

    def key_for(self, features: Any, data_identity: Mapping[str, Any]) -> str:
        """The key of a features step on a dataset: :meth:`make_key` of the data identity,
        the step's signature (:func:`features_step_signature`) and the classicvision version."""
        import classicvision

        return self.make_key(dataset=data_identity, step_signature=features_step_signature(features),
                             version=getattr(classicvision, "__version__", "0"))

    def _dir(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> dict | None:
        """Return the verified entry of ``key``, or ``None`` on a miss.

        Parameters
        ----------
        key : str
            A key from :meth:`make_key`.

        Returns
        -------
        entry : dict or None
            ``{"train", "test", "features_path", "meta"}``: ``train`` (n_train,
            n_features) and ``test`` (n_test, n_features) float32 arrays, memory-mapped
            copy-on-write from the entry's files (writing to them never changes the
            files), the path of the fitted step (None when it could not be stored) and
            the parsed ``meta.json``. None when there is no entry, or when the entry
            does not verify against the checksums in its ``meta.json``: such an entry
            is removed with a :class:`RuntimeWarning` naming its folder, so the caller
            recomputes the features and :meth:`put` writes them again.
        """
        if not self.enabled:
            return None
        d = self._dir(key)
        if not d.is_dir():
            return None
        problem = None
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            meta, problem = None, f"meta.json unreadable ({type(exc).__name__}: {exc})"
            if not _looks_like_entry(d):
                warnings.warn(f"features cache: {d} is not an entry of this cache (no readable meta.json, "
                              "files an entry does not hold); ignoring it", RuntimeWarning, stacklevel=2)
                return None
        if meta is not None and (not isinstance(meta, dict) or MARKER not in meta):
            # not written by this module (or by a version without checksums): not ours to delete
            warnings.warn(f"features cache: {d} is not an entry of this cache (its meta.json has no "
                          f"{MARKER!r} field); ignoring it", RuntimeWarning, stacklevel=2)
            return None
        if problem is None:
            problem = self._verify(d, meta)
        if problem is None:
            try:
                train = np.load(d / "train.npy", mmap_mode="c", allow_pickle=False)
                test = np.load(d / "test.npy", mmap_mode="c", allow_pickle=False)
                if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
                    problem = f"arrays of shapes {train.shape} and {test.shape}"
            except (OSError, ValueError) as exc:
                problem = f"arrays unreadable ({type(exc).__name__}: {exc})"
        if problem is not None:
            self._discard(d)
            warnings.warn(f"features cache entry {d} is corrupt: {problem}; removed it, the features "
                          "will be recomputed", RuntimeWarning, stacklevel=2)
            return None
        features_path = d / "features.skops"
        return {
            "train": train,
            "test": test,
            "features_path": features_path if "features.skops" in meta["checksums"] else None,
            "meta": meta,
        }

    @staticmethod
    def _verify(d: Path, meta: Mapping[str, Any]) -> str | None:
        """What is wrong with the entry in ``d`` (None when every checksum matches)."""
        if meta.get("checksum") != _meta_checksum(meta):
            return "meta.json does not match its checksum"
        sums = meta.get("checksums")
        if not isinstance(sums, Mapping) or not all(name in sums for name in _ARRAYS):
            return "meta.json has no checksums of train.npy and test.npy"
        for name, expected in sums.items():
            if name not in _ENTRY_FILES or name == "meta.json":
                return f"meta.json lists an unexpected file {name!r}"
            try:
                actual = _hash_file(d / name)
            except OSError as exc:
                return f"{name} unreadable ({type(exc).__name__}: {exc})"
            if actual != expected:
                return f"{name} does not match its checksum"
        return None

    def _discard(self, d: Path) -> None:
        """Remove an entry folder: renamed to a temporary ``.KEY.*`` name first, then deleted
        (a removal cut short leaves a folder :meth:`entries` lists as partial)."""
        trash = d.with_name(f".{d.name}.{os.getpid()}-{secrets.token_hex(4)}.old")
        try:
            os.replace(d, trash)
        except OSError:
            trash = d
        shutil.rmtree(trash, ignore_errors=True)

    def put(
        self,
        key: str,
        *,
        train: np.ndarray,
        test: np.ndarray,
        meta: Mapping[str, Any],
        features_step: Any = None,
        dtype: str = "float32",
    ) -> bool:
        """Store one entry atomically (written to a temporary folder, then renamed).

        ``train`` and ``test`` are arrays, memmaps or on-disk
        :class:`~classicvision.store.FeatureStore` objects (``compare --stream``):
        written to ``.npy`` files of ``dtype`` ("float32", or "float16" for the
        streamed features) block by block, never read whole into memory; :meth:`get`
        gives them back memory-mapped, to be read block by block again.

        ``meta.json`` gets ``meta``, the marker field, the checksums of the files
        (``"checksums"``: file name -> BLAKE2b hex digest) and its own ``"checksum"``.

        Returns True when the entry was written. A failure to serialize the fitted
        step only drops ``features.skops`` (the arrays are still cached); other
        failures (disk full, read-only cache) are swallowed and return False, since
        the cache is an optimisation. A folder of that name that this module did not
        write is left alone (False, with a :class:`RuntimeWarning`).
        """
        if not self.enabled:
            return False
        dest = self._dir(key)
        if dest.exists() and _read_meta(dest) is None and not _looks_like_entry(dest):
            warnings.warn(f"features cache: {dest} exists and is not an entry of this cache; "
                          "not overwriting it", RuntimeWarning, stacklevel=2)
            return False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        except OSError:
            return False
        try:
            _save_rows(tmp / "train.npy", train, dtype)
            _save_rows(tmp / "test.npy", test, dtype)
            meta = dict(meta)
            if features_step is not None:
                try:
                    dump_skops(features_step, tmp / "features.skops")
                except Exception as exc:  # a step skops cannot write: keep the arrays
                    meta["features_step_error"] = f"{type(exc).__name__}: {exc}"
                    (tmp / "features.skops").unlink(missing_ok=True)
            meta[MARKER] = _FORMAT
            meta["checksums"] = {f.name: _hash_file(f) for f in sorted(tmp.iterdir()) if f.name in _ENTRY_FILES}
            meta = json.loads(json.dumps(meta, default=str))  # the types meta.json gives back
            meta["checksum"] = _meta_checksum(meta)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if dest.exists():
                self._discard(dest)
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
            write left behind, a temporary ``.KEY.*`` folder holding only entry files,
            and for a ``KEY`` folder of entry files whose ``meta.json`` is gone or
            unreadable). Only folders this module wrote are entries: those, and ``KEY``
            folders whose ``meta.json`` has the marker field; other files and
            folders (``$CLASSICVISION_CACHE`` may also hold the decoded datasets, or a
            folder of the user's named like a key) are not listed, hence never removed.
        """
        if not self.root.is_dir():
            return []
        out = []
        for d in self.root.iterdir():
            if not d.is_dir():
                continue
            name = d.name
            temp = _is_temp_dir(d)
            meta = None
            if not temp:
                if not _KEY.fullmatch(name):
                    continue
                meta = _read_meta(d)
                if meta is None and ((d / "meta.json").is_file() and _json_ok(d / "meta.json")
                                     or not _looks_like_entry(d)):
                    continue  # a folder this module did not write
            try:
                stats = [f.stat() for f in d.iterdir() if f.is_file()]
                dir_mtime = d.stat().st_mtime
            except OSError:  # removed meanwhile
                continue
            out.append({
                "key": name[1:41] if temp else name,
                "path": d,
                "bytes": sum(st.st_size for st in stats),
                "modified": max((st.st_mtime for st in stats), default=dir_mtime),
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
            Remove every entry (every folder :meth:`entries` lists; other folders
            in the cache folder are left alone).

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
