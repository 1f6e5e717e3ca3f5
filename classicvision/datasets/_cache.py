"""On-disk cache of decoded datasets (``np.save`` arrays plus a small JSON).

Each entry is a folder ``<cache>/datasets/<key>/`` holding

* ``images.npy``: the images, one ``(N, H, W[, 3])`` array or, for images of
  several sizes, their pixels concatenated into one flat array;
* ``meta.json``: targets, class names, file names, image shapes, index fields;
* ``CLASSICVISION_ENTRY``: the marker that makes the folder the project's own,
  a JSON object with the format version and the checksums of the two files
  (CRC-32 and size of ``images.npy``, BLAKE2b of ``meta.json``).

An entry is written in a temporary folder and renamed into place, and checked
against its checksums whenever it is read: a damaged or incomplete entry is
deleted (with a ``RuntimeWarning`` naming it) and the dataset decoded and
stored again. :func:`clear_cache` removes only marked entries (and the
unmarked entries of the first format, recognised by their layout), never
other folders a user keeps there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

__all__ = ["get_cache_dir", "clear_cache", "is_cache_entry"]

# Bump when the decoded content or the stored format changes, so stale entries
# are never read. 2: marker file with checksums, pixel and member limits in the key.
_FORMAT_VERSION = 2
_HASH_MEMO: dict[tuple, str] = {}
#: Name of the file that marks a folder as one of this cache's entries.
MARKER = "CLASSICVISION_ENTRY"
_MARKER_TAG = "classicvision dataset cache entry"
_KEY_RE = re.compile(r"[0-9a-f]{32}")
# Temporary folders of save(): ".<key>-<random>".
_TMP_RE = re.compile(r"\.[0-9a-f]{32}-[A-Za-z0-9_]+")
# (entry path, inode, size, mtime_ns) of images.npy files verified by a mapped load.
_VERIFIED: set[tuple] = set()
_CHUNK = 1 << 26  # checksum 64 MiB at a time (zlib.crc32 releases the GIL)


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


def is_cache_entry(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by this cache (and so safe to delete).

    True for a folder holding the ``CLASSICVISION_ENTRY`` marker (complete
    entries, and the temporary folders of an interrupted write, which get the
    marker first), and for an unmarked folder named like an entry (a 32-digit
    hex key, or ``.<key>-<suffix>`` for a temporary folder) that holds nothing
    but ``images.npy`` and/or a ``meta.json`` with a ``format_version``: an
    entry of the first format, or one whose marker was lost. A user's own
    folder is never taken for one.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    bool
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    marker = path / MARKER
    if marker.is_file():
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(info, dict) and info.get("tag") == _MARKER_TAG
    if not (_KEY_RE.fullmatch(path.name) or _TMP_RE.fullmatch(path.name)):
        return False
    try:
        names = {p.name for p in path.iterdir()}
        if not names or not names <= {"images.npy", "meta.json"}:
            return False
        if "meta.json" not in names:
            return True
        with open(path / "meta.json", encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("format_version"), int)


def clear_cache() -> int:
    """Delete every cached decoded dataset.

    Only folders that :func:`is_cache_entry` recognises are removed; any other
    file or folder under ``<cache>/datasets`` is left alone.

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
        if is_cache_entry(entry):
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
    """Hash of a folder's listing: resolved path, and every file's relative path, size, mtime.

    Paths are hashed as their file-system bytes (:func:`os.fsencode`), so names
    that are not valid UTF-8 (kept by Python as surrogate escapes) work too.
    """
    h = hashlib.sha256(os.fsencode(root.resolve()))
    for rel, size, mtime in files:
        h.update(b"\0" + os.fsencode(rel) + f"\0{size}\0{mtime}".encode())
    return h.hexdigest()


def make_key(source_id: str, **params) -> str:
    """Cache key: the source's fingerprint and every parameter that changes the result."""
    payload = json.dumps({"v": _FORMAT_VERSION, "src": source_id, **params}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _crc32(header: bytes, array: np.ndarray) -> int:
    """CRC-32 of an ``.npy`` file from its header bytes and its (C-contiguous) data."""
    crc = zlib.crc32(header)
    flat = memoryview(array.reshape(-1)).cast("B") if array.size else memoryview(b"")
    for start in range(0, len(flat), _CHUNK):
        crc = zlib.crc32(flat[start : start + _CHUNK], crc)
    return crc


def _npy_header(path: Path) -> tuple[bytes, tuple, np.dtype]:
    """The header bytes of an ``.npy`` file, its shape and dtype (C order only)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if fortran or dtype != np.uint8:
            raise ValueError(f"unexpected array layout (fortran={fortran}, dtype={dtype})")
        offset = fh.tell()
        fh.seek(0)
        return fh.read(offset), tuple(shape), dtype


class _BadEntry(Exception):
    """A cache entry that fails its checks (damaged, incomplete or tampered with)."""


def _drop(entry: Path, why: str) -> None:
    if not is_cache_entry(entry):  # never delete a folder this cache did not write
        warnings.warn(
            f"ignoring {entry}: it is in the dataset cache but not a cache entry ({why})",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    warnings.warn(
        f"deleting damaged or incomplete dataset cache entry {entry} ({why}); the dataset "
        "will be decoded and stored again",
        RuntimeWarning,
        stacklevel=3,
    )
    shutil.rmtree(entry, ignore_errors=True)


def _read_entry(entry: Path, mmap: bool) -> dict:
    """Read and verify an entry; :class:`_BadEntry` when any check fails."""
    try:
        info = json.loads((entry / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _BadEntry(f"no {MARKER} marker") from None
    except (OSError, ValueError) as exc:
        raise _BadEntry(f"unreadable {MARKER}: {exc}") from exc
    if not isinstance(info, dict) or info.get("tag") != _MARKER_TAG:
        raise _BadEntry(f"{MARKER} is not this cache's marker")
    if info.get("format_version") != _FORMAT_VERSION or "images_crc32" not in info:
        raise _BadEntry(f"format {info.get('format_version')!r} or an unfinished write")
    try:
        meta_bytes = (entry / "meta.json").read_bytes()
    except OSError as exc:
        raise _BadEntry(f"meta.json: {exc}") from exc
    if hashlib.blake2b(meta_bytes, digest_size=32).hexdigest() != info.get("meta_blake2b"):
        raise _BadEntry("meta.json does not match its checksum")
    images_path = entry / "images.npy"
    try:
        st = images_path.stat()
        if st.st_size != info.get("images_bytes"):
            raise _BadEntry(f"images.npy has {st.st_size} bytes, expected {info.get('images_bytes')}")
        header, shape, _ = _npy_header(images_path)
        if mmap:
            pixels = np.load(images_path, mmap_mode="r", allow_pickle=False)
        else:
            pixels = np.load(images_path, allow_pickle=False)
    except _BadEntry:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or garbled .npy
        raise _BadEntry(f"images.npy: {exc}") from exc
    memo = (str(images_path), st.st_ino, st.st_size, st.st_mtime_ns)
    if not (mmap and memo in _VERIFIED):
        if _crc32(header, pixels) != info["images_crc32"]:
            raise _BadEntry("images.npy does not match its checksum")
        if mmap:
            _VERIFIED.add(memo)
    meta = json.loads(meta_bytes)
    if meta.get("shapes") is None:
        images = pixels
        n = len(pixels)
    else:
        images, start = [], 0
        for shape in meta["shapes"]:
            size = int(np.prod(shape))
            images.append(pixels[start : start + size].reshape(shape))
            start += size
        if start != pixels.size:
            raise _BadEntry("images.npy does not hold the pixels of the stored shapes")
        n = len(images)
    if len(meta["target"]) != n or len(meta["filenames"]) != n:
        raise _BadEntry("meta.json does not describe the stored images")
    extra = {k: np.asarray(v, dtype=np.int64) for k, v in meta.get("index_fields", {}).items()}
    return {
        "images": images,
        "target": np.asarray(meta["target"], dtype=np.int64),
        "target_names": list(meta["target_names"]),
        "filenames": np.asarray(meta["filenames"], dtype=str),
        "skipped": list(meta.get("skipped", [])),
        **extra,
    }


def load(key: str, mmap: bool = False) -> dict | None:
    """Return the cached fields for ``key``, or ``None`` when absent or damaged.

    The result holds the Bunch fields plus ``skipped``: the files that
    ``on_error="skip"`` left out when the entry was made. The entry is checked
    against the checksums stored with it; a damaged or incomplete entry is
    deleted with a ``RuntimeWarning`` naming it, and ``None`` returned so that
    the caller decodes and stores the dataset again.

    Parameters
    ----------
    key : str
        From :func:`make_key`.
    mmap : bool, default=False
        Map ``images.npy`` read-only (``np.load(mmap_mode="r")``) instead of
        reading it: ``images`` is then a read-only memory-mapped array, or a
        list of views into the mapped flat array. Its checksum is still
        verified (reading the file once through the page cache, not into the
        process's memory), once per process for an unchanged file.
    """
    entry = get_cache_dir() / "datasets" / key
    if not entry.exists():
        return None
    try:
        return _read_entry(entry, mmap)
    except _BadEntry as exc:
        _drop(entry, str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a meta.json of the wrong structure
        _drop(entry, f"{type(exc).__name__}: {exc}")
    return None


def _write_marker(folder: Path, info: dict) -> None:
    with open(folder / MARKER, "w", encoding="utf-8") as fh:
        json.dump({"tag": _MARKER_TAG, "format_version": _FORMAT_VERSION, **info}, fh)


def save(
    key: str, images, target, target_names, filenames, index_fields: dict, skipped: list[str] | None = None
) -> None:
    """Store a decoded dataset atomically (write to a temp folder, then rename).

    The marker is written first (so even an interrupted write is recognisably
    this cache's) and completed with the checksums last. An existing complete
    entry is kept; an existing incomplete or foreign one is replaced.
    Failures (read-only home, full disk) only warn: the cache is an optimization.
    """
    root = get_cache_dir() / "datasets"
    entry = root / key
    if entry.is_dir():
        try:
            info = json.loads((entry / MARKER).read_text(encoding="utf-8"))
            if info.get("tag") == _MARKER_TAG and "images_crc32" in info:
                return  # complete (load() verifies its content)
        except (OSError, ValueError, AttributeError):
            pass
        if is_cache_entry(entry):
            shutil.rmtree(entry, ignore_errors=True)
        else:
            warnings.warn(
                f"not writing the dataset cache entry {entry}: a folder that is not a cache "
                "entry is in the way",
                RuntimeWarning,
                stacklevel=2,
            )
            return
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            _write_marker(tmp, {})
            if isinstance(images, np.ndarray):
                pixels = np.ascontiguousarray(images, dtype=np.uint8)
                shapes = None
            else:
                shapes = [list(im.shape) for im in images]
                pixels = np.concatenate([im.reshape(-1) for im in images]) if images else np.empty(0, np.uint8)
                pixels = pixels.astype(np.uint8, copy=False)
            with open(tmp / "images.npy", "wb") as fh:
                np.lib.format.write_array(fh, pixels, allow_pickle=False)
            header, _, _ = _npy_header(tmp / "images.npy")
            meta = {
                "format_version": _FORMAT_VERSION,
                "shapes": shapes,
                "target": np.asarray(target).tolist(),
                "target_names": list(target_names),
                "filenames": [str(f) for f in filenames],
                "index_fields": {k: np.asarray(v).tolist() for k, v in index_fields.items()},
                "skipped": list(skipped or []),
            }
            meta_bytes = json.dumps(meta).encode("utf-8")
            (tmp / "meta.json").write_bytes(meta_bytes)
            _write_marker(
                tmp,
                {
                    "images_bytes": (tmp / "images.npy").stat().st_size,
                    "images_crc32": _crc32(header, pixels),
                    "meta_blake2b": hashlib.blake2b(meta_bytes, digest_size=32).hexdigest(),
                },
            )
            try:
                os.rename(tmp, entry)
            except OSError:  # another process stored the same entry first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache in {root}: {exc}", RuntimeWarning)
