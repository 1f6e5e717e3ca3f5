"""On-disk cache of decoded datasets (``np.save`` arrays plus a small JSON)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

__all__ = ["get_cache_dir", "clear_cache"]

# Bump when the decoded content or the stored format changes, so stale entries
# are never read.
_FORMAT_VERSION = 1
_HASH_MEMO: dict[tuple, str] = {}


def get_cache_dir() -> Path:
    """Folder of the dataset cache.

    ``$CLASSICVISION_CACHE`` when set, else ``~/.cache/classicvision``
    (``$XDG_CACHE_HOME/classicvision`` when that variable is set). Decoded
    datasets live in its ``datasets`` subfolder.

    Returns
    -------
    pathlib.Path
    """
    env = os.environ.get("CLASSICVISION_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "classicvision"


def clear_cache() -> int:
    """Delete every cached decoded dataset.

    Returns
    -------
    int
        Number of cache entries removed.
    """
    root = get_cache_dir() / "datasets"
    if not root.is_dir():
        return 0
    n = 0
    for entry in root.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            n += 1
    return n


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoized per process on (path, size, mtime)."""
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key in _HASH_MEMO:
        return _HASH_MEMO[memo_key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    _HASH_MEMO[memo_key] = h.hexdigest()
    return _HASH_MEMO[memo_key]


def folder_fingerprint(root: Path, files: list[tuple[str, int, int]]) -> str:
    """Hash of a folder's listing: resolved path, and every file's relative path, size, mtime."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for rel, size, mtime in files:
        h.update(f"\0{rel}\0{size}\0{mtime}".encode())
    return h.hexdigest()


def make_key(source_id: str, **params) -> str:
    """Cache key: the source's fingerprint and every parameter that changes the result."""
    payload = json.dumps({"v": _FORMAT_VERSION, "src": source_id, **params}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def load(key: str) -> dict | None:
    """Return the cached fields for ``key``, or ``None`` when absent or unreadable.

    The result holds the Bunch fields plus ``skipped``: the files that
    ``on_error="skip"`` left out when the entry was made.
    """
    entry = get_cache_dir() / "datasets" / key
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
        pixels = np.load(entry / "images.npy", allow_pickle=False)
        if meta.get("shapes") is None:
            images = pixels
        else:
            images, start = [], 0
            for shape in meta["shapes"]:
                size = int(np.prod(shape))
                images.append(pixels[start : start + size].reshape(shape))
                start += size
        extra = {k: np.asarray(v, dtype=np.int64) for k, v in meta.get("index_fields", {}).items()}
        return {
            "images": images,
            "target": np.asarray(meta["target"], dtype=np.int64),
            "target_names": list(meta["target_names"]),
            "filenames": np.asarray(meta["filenames"], dtype=str),
            "skipped": list(meta.get("skipped", [])),
            **extra,
        }
    except Exception as exc:  # a damaged entry is ignored and rewritten
        warnings.warn(f"ignoring unreadable dataset cache entry {entry}: {exc}", RuntimeWarning)
        return None


def save(
    key: str, images, target, target_names, filenames, index_fields: dict, skipped: list[str] | None = None
) -> None:
    """Store a decoded dataset atomically (write to a temp folder, then rename).

    Failures (read-only home, full disk) only warn: the cache is an optimization.
    """
    root = get_cache_dir() / "datasets"
    entry = root / key
    if entry.is_dir():
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            if isinstance(images, np.ndarray):
                np.save(tmp / "images.npy", images, allow_pickle=False)
                shapes = None
            else:
                shapes = [list(im.shape) for im in images]
                flat = np.concatenate([im.reshape(-1) for im in images]) if images else np.empty(0, np.uint8)
                np.save(tmp / "images.npy", flat, allow_pickle=False)
            meta = {
                "format_version": _FORMAT_VERSION,
                "shapes": shapes,
                "target": np.asarray(target).tolist(),
                "target_names": list(target_names),
                "filenames": [str(f) for f in filenames],
                "index_fields": {k: np.asarray(v).tolist() for k, v in index_fields.items()},
                "skipped": list(skipped or []),
            }
            with open(tmp / "meta.json", "w", encoding="utf-8") as fh:
                json.dump(meta, fh)
            try:
                os.rename(tmp, entry)
            except OSError:  # another process stored the same entry first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache in {root}: {exc}", RuntimeWarning)
