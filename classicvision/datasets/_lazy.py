"""Lazy image sequences: files listed once, decoded on access.

A :class:`LazyImages` holds where each image is (a file, or a member of a
plain ``.tar`` given by its data offset and size) and decodes one image when
it is indexed. It pickles to paths and offsets only, so a worker process or a
Dask task that receives a slice opens the files itself, and memory never
grows with the number of images beyond their names.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from numbers import Integral
from pathlib import Path

import cv2
import numpy as np

from ._decode import decode_image, resolve_max_pixels

__all__ = ["LazyImages", "index_plain_tar"]

_FILE = -1  # archive index of a plain file


def _check_max_side(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"max_side must be a positive integer (pixels) or None, got {value!r}")
    return int(value)


def _refuse_skip(on_error: str) -> None:
    """Lazy loaders decode on access, so they cannot leave unreadable files out at load time."""
    if on_error == "skip":
        raise ValueError(
            "on_error='skip' needs every image decoded at load time, which lazy=True does not do; "
            "use lazy=False to skip unreadable files, or remove them"
        )


def _pread(fh, offset: int, size: int, lock: threading.Lock) -> bytes:
    """``size`` bytes at ``offset`` of the open binary file ``fh``.

    ``os.pread`` reads at a position without moving the file's shared offset,
    so threads (and forked children) can share one handle; where it does not
    exist (Windows) a lock serialises ``seek`` + ``read``.
    """
    if hasattr(os, "pread"):
        chunks = []
        while size > 0:
            got = os.pread(fh.fileno(), size, offset)
            if not got:
                break
            chunks.append(got)
            offset += len(got)
            size -= len(got)
        return b"".join(chunks)
    with lock:  # pragma: no cover - Windows
        fh.seek(offset)
        return fh.read(size)


class _Handles:
    """Open archive handles of one process, shared by a LazyImages and its slices.

    Never pickled: after unpickling (another process) or a fork (another pid)
    the archives are opened again.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.files: dict[int, object] = {}

    def get(self, index: int, path: str, expect: tuple[int, int]):
        with self.lock:
            if self.pid != os.getpid():  # forked: the parent's handles are not ours
                self.files = {}
                self.pid = os.getpid()
            fh = self.files.get(index)
            if fh is None:
                fh = open(path, "rb", buffering=0)  # noqa: SIM115 - kept open for later reads
                st = os.fstat(fh.fileno())
                if (st.st_size, st.st_mtime_ns) != expect:
                    fh.close()
                    raise ValueError(
                        f"{path}: the archive changed since it was listed (size or modification "
                        "time differ); load the dataset again"
                    )
                self.files[index] = fh
            return fh

    def close(self) -> None:
        with self.lock:
            for fh in self.files.values():
                fh.close()
            self.files = {}


class LazyImages(Sequence):
    """A sequence of images decoded on access (files, or members of a plain tar).

    Listing costs a name, an offset and a size per image; nothing is decoded
    until an image is indexed. ``x[i]`` decodes image ``i``; ``x[a:b]``,
    ``x[[i, j]]``, ``x[int_array]`` and ``x[bool_mask]`` return a new
    LazyImages over those sources, decoding nothing. Pickling keeps the paths
    and offsets only (never pixels or open handles), so a worker process
    opens the files itself.

    Parameters
    ----------
    sources : sequence or 1-D ndarray
        One entry per image: a path (``str`` or path-like; relative ones are
        below ``root``), or a tuple ``(archive, offset, size)`` /
        ``(archive, offset, size, member_name)`` for a member of an
        *uncompressed* tar archive, where ``offset`` is the position of the
        member's data in the archive file and ``size`` its length in bytes.
    root : str, path-like or None, default=None
        Folder that relative file paths are below; :attr:`filenames` are the
        paths as given.
    max_side : int or None, default=None
        Decoded images whose longer side exceeds this are downscaled to it
        (area interpolation, :func:`classicvision.features._common.resize_max_side`,
        the one the extractors use).
    max_pixels : int or None, default=None
        Largest width x height accepted per image, read from the header before
        decoding (``None``: :data:`classicvision.datasets.MAX_IMAGE_PIXELS`,
        read in the process that decodes).
    rgb : bool, default=False
        Replicate grayscale images to three channels, so that every image is
        ``(H, W, 3)``. The eager :func:`load_image_folder` does that only when
        a dataset mixes grayscale and colour files; pass ``rgb=True`` for such
        a dataset to get the same arrays.

    Attributes
    ----------
    filenames : list of str
        The name of each image: the path as given (relative to ``root``), or
        the member name (``"<archive>@<offset>"`` when none was given).
    max_side : int or None

    Raises
    ------
    FileNotFoundError
        If a file or archive does not exist (construction stats each source).
    ValueError
        For a malformed source or an invalid ``max_side`` / ``max_pixels``.

    Notes
    -----
    Sizes and modification times are recorded when the sources are listed;
    :meth:`fingerprint` hashes them (no file is read), and an access that
    finds a file or archive of another size or time raises ``ValueError``
    rather than decode data the fingerprint does not describe.

    ``np.asarray(x)`` raises ``TypeError``: converting would decode every image
    at once. Index, slice or iterate instead.

    Examples
    --------
    >>> import numpy as np, cv2, tempfile, os
    >>> from classicvision.datasets import LazyImages
    >>> folder = tempfile.mkdtemp()
    >>> for k in range(3):
    ...     _ = cv2.imwrite(os.path.join(folder, f"{k}.png"), np.full((4, 6, 3), 40 * k, np.uint8))
    >>> images = LazyImages(["0.png", "1.png", "2.png"], root=folder)
    >>> len(images), images[1].shape, int(images[2][0, 0, 0])
    (3, (4, 6, 3), 80)
    >>> images[1:].filenames
    ['1.png', '2.png']
    """

    def __init__(
        self,
        sources: Sequence,
        *,
        root: str | os.PathLike | None = None,
        max_side: int | None = None,
        max_pixels: int | None = None,
        rgb: bool = False,
    ) -> None:
        if isinstance(sources, (str, os.PathLike)) or not isinstance(sources, (Sequence, np.ndarray)):
            raise TypeError(
                "sources must be a sequence of file paths or (archive, offset, size[, member]) "
                f"tuples, got {type(sources).__name__}"
            )
        base = os.path.abspath(os.path.expanduser(os.fspath(root))) if root is not None else ""
        archives: dict[str, int] = {}
        arch_stats: list[tuple[int, int]] = []
        n = len(sources)
        arch = np.full(n, _FILE, dtype=np.int32)
        offsets = np.full(n, -1, dtype=np.int64)
        sizes = np.zeros(n, dtype=np.int64)
        mtimes = np.zeros(n, dtype=np.int64)
        names: list[str] = []
        for i, src in enumerate(sources):
            if isinstance(src, (str, os.PathLike)):
                name = os.fspath(src)
                full = os.path.join(base, name) if base else name
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    raise FileNotFoundError(f"image file not found: {full}") from None
                sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
                names.append(name)
                continue
            if not isinstance(src, (tuple, list)) or len(src) not in (3, 4):
                raise ValueError(
                    f"source {i} must be a path or an (archive, offset, size[, member]) tuple, got {src!r}"
                )
            archive, offset, size = src[:3]
            if not all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 0 for v in (offset, size)):
                raise ValueError(f"source {i}: offset and size must be non-negative integers, got {src!r}")
            apath = os.path.abspath(os.path.expanduser(os.fspath(archive)))
            if apath not in archives:
                try:
                    st = os.stat(apath)
                except FileNotFoundError:
                    raise FileNotFoundError(f"archive not found: {apath}") from None
                archives[apath] = len(archives)
                arch_stats.append((st.st_size, st.st_mtime_ns))
            k = archives[apath]
            if offset + size > arch_stats[k][0]:
                raise ValueError(
                    f"source {i}: bytes {offset}..{offset + size} lie beyond the end of {apath} "
                    f"({arch_stats[k][0]} bytes)"
                )
            arch[i], offsets[i], sizes[i] = k, int(offset), int(size)
            names.append(str(src[3]) if len(src) == 4 else f"{apath}@{int(offset)}")
        self._setup(base, tuple(archives), tuple(arch_stats), names, arch, offsets, sizes, mtimes,
                    _check_max_side(max_side), max_pixels, bool(rgb), _Handles())

    def _setup(self, root, archives, arch_stats, names, arch, offsets, sizes, mtimes, max_side,
               max_pixels, rgb, handles) -> None:
        if max_pixels is not None:
            resolve_max_pixels(max_pixels)  # validate now; None is resolved where decoding runs
        self._root = root
        self._archives = archives
        self._arch_stats = arch_stats
        self._names = names
        self._arch = arch
        self._offsets = offsets
        self._sizes = sizes
        self._mtimes = mtimes
        self._max_side = max_side
        self._max_pixels = max_pixels
        self._rgb = rgb
        self._handles = handles

    @classmethod
    def _from_listing(cls, root, names, sizes, mtimes, *, archive=None, offsets=None, max_side=None,
                      max_pixels=None, rgb=False) -> LazyImages:
        """Build from a listing already made (no stat per file).

        Files below the folder ``root`` with their recorded ``sizes`` and
        ``mtimes``; or, with ``archive``, members of that plain tar at
        ``offsets`` (``mtimes`` unused: the archive's own is recorded).
        """
        self = cls.__new__(cls)
        n = len(names)
        sizes = np.asarray(sizes, dtype=np.int64).reshape(n)
        if archive is None:
            base = os.path.abspath(os.fspath(root))
            self._setup(base, (), (), list(names), np.full(n, _FILE, np.int32), np.full(n, -1, np.int64),
                        sizes, np.asarray(mtimes, dtype=np.int64).reshape(n), _check_max_side(max_side),
                        max_pixels, bool(rgb), _Handles())
        else:
            apath = os.path.abspath(os.fspath(archive))
            st = os.stat(apath)
            self._setup("", (apath,), ((st.st_size, st.st_mtime_ns),), list(names), np.zeros(n, np.int32),
                        np.asarray(offsets, dtype=np.int64).reshape(n), sizes, np.zeros(n, np.int64),
                        _check_max_side(max_side), max_pixels, bool(rgb), _Handles())
        return self

    def _subset(self, idx: np.ndarray) -> LazyImages:
        other = type(self).__new__(type(self))
        other._setup(self._root, self._archives, self._arch_stats, [self._names[i] for i in idx],
                     self._arch[idx], self._offsets[idx], self._sizes[idx], self._mtimes[idx],
                     self._max_side, self._max_pixels, self._rgb, self._handles)
        return other

    # -- the Sequence protocol -------------------------------------------------

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, key):
        if isinstance(key, Integral) and not isinstance(key, bool):
            n = len(self._names)
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"image index {i} out of range for {n} images")
            return self._decode(i % n if i < 0 else i)
        if isinstance(key, slice):
            return self._subset(np.arange(len(self._names))[key])
        if isinstance(key, (list, tuple, np.ndarray, range)):
            idx = np.asarray(key)
            if idx.size == 0:
                idx = idx.astype(np.int64)
            if idx.ndim != 1:
                raise IndexError(f"an index array must be 1-D, got shape {idx.shape}")
            n = len(self._names)
            if idx.dtype == bool:
                if idx.size != n:
                    raise IndexError(f"boolean mask of length {idx.size} for {n} images")
                return self._subset(np.flatnonzero(idx))
            if not np.issubdtype(idx.dtype, np.integer):
                raise IndexError(f"image indices must be integers or booleans, got dtype {idx.dtype}")
            bad = (idx < -n) | (idx >= n)
            if bad.any():
                raise IndexError(f"image index {int(idx[bad][0])} out of range for {n} images")
            return self._subset(np.where(idx < 0, idx + n, idx).astype(np.int64))
        raise TypeError(
            f"LazyImages indices must be integers, slices or 1-D integer/boolean arrays, "
            f"not {type(key).__name__}"
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self._names)):
            yield self._decode(i)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            f"a LazyImages of {len(self)} images decodes images on access and is not converted "
            "to an array implicitly (that would decode them all at once); index it (x[i]), "
            "slice it (x[a:b]) or iterate over it, e.g. np.stack(list(x[:100]))"
        )

    def __repr__(self) -> str:
        where = self._root or ", ".join(self._archives) or "nowhere"
        bound = f", max_side={self._max_side}" if self._max_side is not None else ""
        return f"LazyImages({len(self)} images from {where}{bound})"

    # -- pickling: paths and offsets, never handles ---------------------------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_handles"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._handles = _Handles()

    # -- public API -------------------------------------------------------------

    @property
    def filenames(self) -> list[str]:
        """The name of each image (path relative to ``root``, or archive member)."""
        return list(self._names)

    @property
    def max_side(self) -> int | None:
        """Bound on the longer side of decoded images (None: full size)."""
        return self._max_side

    def with_max_side(self, max_side: int | None) -> LazyImages:
        """A copy over the same sources whose images are bounded to ``max_side``.

        Parameters
        ----------
        max_side : int or None
            Bound on the longer side in pixels (None: full size).

        Returns
        -------
        LazyImages
        """
        other = self._subset(np.arange(len(self._names)))
        other._max_side = _check_max_side(max_side)
        return other

    def fingerprint(self) -> str:
        """A hash of the sources, their sizes and modification times, and the options.

        Computed from what was recorded at listing (no file is read or
        decoded), so it is cheap for a million images; use it in cache keys.

        Returns
        -------
        str
            32 hexadecimal digits (BLAKE2b, 128 bits).
        """
        h = hashlib.blake2b(digest_size=16)
        h.update(repr(("LazyImages/1", self._root, self._archives, self._arch_stats, self._max_side,
                       self._rgb)).encode("utf-8", "surrogateescape"))
        h.update("\0".join(self._names).encode("utf-8", "surrogateescape"))
        for arr in (self._arch, self._offsets, self._sizes, self._mtimes):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def close(self) -> None:
        """Close the archive handles this process opened (they reopen on the next access)."""
        self._handles.close()

    # -- decoding ---------------------------------------------------------------

    def _label(self, i: int) -> str:
        """How error messages name image ``i`` (as the eager loader does)."""
        k = int(self._arch[i])
        if k == _FILE:
            return os.path.join(self._root, self._names[i]) if self._root else self._names[i]
        return f"{self._names[i]} (in {self._archives[k]})"

    def _read(self, i: int) -> bytes:
        k = int(self._arch[i])
        if k == _FILE:
            path = os.path.join(self._root, self._names[i]) if self._root else self._names[i]
            try:
                with open(path, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    if (st.st_size, st.st_mtime_ns) != (int(self._sizes[i]), int(self._mtimes[i])):
                        raise ValueError(
                            f"{path}: the file changed since it was listed (size or modification "
                            "time differ); load the dataset again"
                        )
                    return fh.read()
            except OSError as exc:
                raise ValueError(f"{path}: cannot read file ({exc})") from exc
        fh = self._handles.get(k, self._archives[k], self._arch_stats[k])
        size = int(self._sizes[i])
        data = _pread(fh, int(self._offsets[i]), size, self._handles.lock)
        if len(data) != size:
            raise ValueError(f"{self._label(i)}: the archive ends inside this member (truncated)")
        return data

    def _decode(self, i: int) -> np.ndarray:
        from ..features._common import resize_max_side  # features imports datasets: import late

        image = decode_image(self._read(i), self._label(i), max_pixels=self._max_pixels)
        if self._rgb and image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        return resize_max_side(image, self._max_side)

    def _decode_or_message(self, indices: Sequence[int]) -> list:
        """Decode each of ``indices``; a failure is returned as its message (a ``str``)."""
        out: list = []
        for i in indices:
            try:
                out.append(self._decode(int(i)))
            except ValueError as exc:
                out.append(str(exc))
        return out


# -- offsets of the members of a plain tar ---------------------------------------

_Parts = tuple


def _interned(parts: _Parts) -> _Parts:
    """``parts`` with its folder names interned: one string per class folder, not per file."""
    return tuple(sys.intern(p) for p in parts[:-1]) + parts[-1:]


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``key=value`` records of a pax extended header."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        if length <= 0:
            raise ValueError("bad pax record length")
        record = data[space + 1 : pos + length - 1]  # without the trailing newline
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class _Fallback(Exception):
    """A tar feature the offset reader leaves to :mod:`tarfile`."""


def _index_fast(path: Path, fh, file_size: int) -> Iterator[tuple[str, int, int, bytes, str]]:
    """(name, data offset, size, type, link target) of every member, by seeking over the data."""
    from ._folder import _octal

    pos = 0
    long_name = long_link = None
    pax: dict[str, str] = {}
    while True:
        fh.seek(pos)
        header = fh.read(512)
        if len(header) < 512 or header.count(0) == 512:
            if not header or header.count(0) == 512:
                return
            raise ValueError(f"truncated or corrupt archive {path}: it ends inside a member header")
        if header[257:262] != b"ustar":
            raise _Fallback("not a ustar header")
        try:
            stored, size = _octal(header[148:156]), _octal(header[124:136])
        except Exception as exc:  # noqa: BLE001 - _NeedTarfile (base-256) or a bad octal field
            raise _Fallback(str(exc)) from exc
        if stored != sum(header[:148]) + 256 + sum(header[156:]):
            raise _Fallback("checksum")
        kind = header[156:157]
        data_at = pos + 512
        if "size" in pax:
            size = int(pax["size"])
        if data_at + size > file_size:
            raise ValueError(f"truncated or corrupt archive {path}: it ends inside a member")
        pos = data_at + size + (-size % 512)
        if kind in (b"L", b"K", b"x"):
            fh.seek(data_at)
            data = fh.read(size)
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"K":
                long_link = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            else:
                pax = _pax_records(data)
            continue
        if kind == b"g":  # pax global header: nothing an image listing needs
            continue
        if kind not in (b"0", b"\0", b"7", b"1", b"2", b"3", b"4", b"5", b"6"):
            raise _Fallback(f"member type {kind!r}")
        name = header[:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\x00":
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        text = pax.get("path") or long_name or name.decode("utf-8", "surrogateescape")
        link = pax.get("linkpath") or long_link or header[157:257].split(b"\0", 1)[0].decode(
            "utf-8", "surrogateescape"
        )
        yield text, data_at, size, kind, link
        long_name = long_link = None
        pax = {}


def _index_tarfile(path: Path) -> Iterator[tuple[str, int, int, bytes, str]]:
    import tarfile

    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                kind = b"0" if m.isfile() else b"1" if m.islnk() else b"5"
                yield m.name, m.offset_data, m.size, kind, m.linkname
    except Exception as exc:  # noqa: BLE001 - tarfile raises many kinds
        raise ValueError(f"truncated or corrupt archive {path}: {type(exc).__name__}: {exc}") from exc


def _collect(path: Path, members) -> tuple[list[_Parts], dict]:
    """The visible files and where each file's bytes lie (see :func:`index_plain_tar`)."""
    from ._folder import _norm_parts, _skip_name

    seen: dict[_Parts, None] = {}
    where: dict[_Parts, tuple[int, int] | str] = {}
    for name, offset, size, kind, link in members:
        if kind not in (b"0", b"\0", b"7", b"1"):
            continue
        parts = _norm_parts(name)
        if parts is None:
            continue
        parts = _interned(parts)
        if kind == b"1":
            target = _norm_parts(link)
            got = where.get(target) if target is not None else None
            where[parts] = got if got is not None else (
                f"{'/'.join(parts)} (in {path}): hard link to {link!r}, which is not in the archive"
            )
        else:
            where[parts] = (offset, size)
        if not _skip_name(parts):
            seen[parts] = None
    return list(seen), where


def index_plain_tar(path: str | os.PathLike) -> tuple[list[_Parts], dict[_Parts, tuple[int, int] | str]]:
    """Where every file's bytes lie in an uncompressed tar archive, without reading them.

    Headers are read by seeking from one to the next (the member data is
    skipped, never read), so listing 50,000 members reads about 25 MB of
    headers whatever the images weigh. ustar, GNU long names and pax
    headers are read directly; anything else falls back to :mod:`tarfile`.

    Parameters
    ----------
    path : str or path-like
        A plain (uncompressed) ``.tar``.

    Returns
    -------
    paths : list of tuple of str
        The visible files (hidden names and ``__MACOSX`` left out), as path
        components, in archive order; a name repeated counts once.
    where : dict
        For every file: ``(data offset, size)``, or an error message (``str``)
        for a hard link whose target is not in the archive. A hard link reads
        as the latest earlier copy of its target; a later copy of a repeated
        name wins, as when unpacking.

    Raises
    ------
    ValueError
        For a truncated or corrupt archive (naming it).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        try:
            return _collect(path, _index_fast(path, fh, file_size))
        except _Fallback:
            pass
    return _collect(path, _index_tarfile(path))
