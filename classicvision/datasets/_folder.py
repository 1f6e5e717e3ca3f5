"""ImageFolder-layout datasets, from a directory or straight from a tar archive."""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import math
import os
import tarfile
import warnings
import zlib
from collections.abc import Callable, Sequence
from numbers import Integral
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.utils import Bunch

from . import _cache
from ._decode import IMAGE_EXTENSIONS, decode_image, decode_many, resolve_max_pixels
from ._split import check_per_class_counts, select_indices

__all__ = ["load_image_folder"]

#: Folder names recognised as split folders when a layout is ambiguous
#: (``<top>/<x>/<file>`` with a single ``<top>``: a split if ``<top>`` is one of
#: these, else a wrapper folder around class folders).
SPLIT_NAMES = frozenset(
    {"train", "test", "val", "valid", "validation", "training", "testing", "trainval", "dev"}
)

_Parts = tuple  # a relative path as a tuple of its components


def _skip_name(parts: Sequence[str]) -> bool:
    """Hidden files/folders and macOS resource forks are never dataset files."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _inside(path: str, root: str) -> bool:
    """Whether the real path ``path`` is ``root`` or below it."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives (Windows)
        return False


def _scan_folder(root: Path) -> tuple[list[tuple[str, int, int]], list[str]]:
    """Every regular file under ``root`` and the symbolic links left out.

    Returns the (relative posix path, size, mtime_ns) of every file, sorted,
    and one ``"<link> -> <target> (<why>)"`` line per link that was not
    followed. A symbolic link (to a file or a folder) is followed only when it
    resolves inside ``root``'s real path; links that point outside it, broken
    links, and links that lead back to one of their own parent folders (a loop)
    are left out, so that a link to ``/etc`` or a cycle never makes the walk
    leave the dataset or run forever.
    """
    real_root = os.path.realpath(root)
    top = os.stat(root)
    out: list[tuple[str, int, int]] = []
    refused: list[str] = []
    stack = [(os.fspath(root), "", frozenset({(top.st_dev, top.st_ino)}))]
    while stack:
        folder, rel, ancestors = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith(".") or entry.name == "__MACOSX":
                    continue
                sub = f"{rel}{entry.name}"
                link = entry.is_symlink()
                if link:
                    try:
                        target = os.readlink(entry.path)
                    except OSError:  # pragma: no cover - replaced between scandir and readlink
                        target = "?"
                    try:
                        real = str(Path(entry.path).resolve(strict=True))
                    except (OSError, RuntimeError):  # RuntimeError: a loop (Python < 3.13)
                        refused.append(f"{sub} -> {target} (broken link or a loop of links)")
                        continue
                    if not _inside(real, real_root):
                        refused.append(f"{sub} -> {target} (resolves to {real}, outside {real_root})")
                        continue
                try:
                    is_dir = entry.is_dir()
                    st = entry.stat() if (is_dir or entry.is_file()) else None
                except OSError as exc:
                    if not link:
                        raise
                    refused.append(f"{sub} -> {target} ({exc.strerror or exc})")
                    continue
                if st is None:
                    continue  # FIFO, socket, device
                if is_dir:
                    ident = (st.st_dev, st.st_ino)
                    if ident in ancestors:
                        refused.append(f"{sub} -> {target} (a loop: leads back to a parent folder)")
                        continue
                    stack.append((entry.path, sub + "/", ancestors | {ident}))
                else:
                    out.append((sub, st.st_size, st.st_mtime_ns))
    out.sort()
    return out, refused


def _norm_parts(name: str) -> _Parts | None:
    """A member name as path components; None for an empty name or one with ``..``."""
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if not parts or ".." in parts:
        return None
    return parts


class _NeedTarfile(Exception):
    """The archive uses a tar feature the fast reader leaves to :mod:`tarfile`."""


class _Damaged(Exception):
    """The archive is truncated or its compressed stream is corrupt (no fallback helps)."""


class _Unreadable(str):
    """An error message that stands in for a member's bytes (decoding reports it)."""


_GZIP_MAGIC = b"\x1f\x8b"
_REGULAR = (b"0", b"\0", b"7")
_HARDLINK = b"1"
_SKIPPED = (b"2", b"3", b"4", b"5", b"6")  # symbolic links, devices, folders, FIFOs

#: Default ``max_member_bytes``: larger archive members are refused rather than
#: read into memory whole.
MAX_MEMBER_BYTES = 512 * 1024**2

_Scan = tuple  # (paths, blobs, pending hard links {link: target})


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 number (files over 8 GiB)
        raise _NeedTarfile("base-256 number")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _too_big(path: Path, parts: _Parts, size: int, limit: int) -> _Unreadable:
    return _Unreadable(
        f"{'/'.join(parts)} (in {path}): archive member of {size:,} bytes exceeds "
        f"max_member_bytes={limit:,} and was not read; pass a larger max_member_bytes= to load it"
    )


def _discard(read, n: int) -> None:
    """Read and drop ``n`` bytes in bounded chunks (never one ``n``-byte buffer)."""
    while n > 0:
        got = len(read(min(n, 1 << 20)))
        if got == 0:
            raise _Damaged("the archive ends inside a member")
        n -= got


def _add_member(
    blobs: dict, pending: dict, parts: _Parts, data: bytes | None, link: _Parts | None | bool,
    path: Path | None = None,
) -> None:
    """Record a kept member: its bytes, or (``link`` not False) the hard link's target."""
    pending.pop(parts, None)  # a later copy of a repeated name wins, as when unpacking
    if link is False:
        blobs[parts] = data
    elif link is None:
        blobs[parts] = _Unreadable(
            f"{'/'.join(parts)} (in {path}): hard link to a name outside the archive (empty or with '..')"
        )
    elif link in pending:  # a link to a link whose target is still to be read
        pending[parts] = pending[link]
        blobs.pop(parts, None)
    elif link in blobs:  # the target's bytes (its latest copy before the link) are at hand
        blobs[parts] = blobs[link]
    else:
        pending[parts] = link
        blobs.pop(parts, None)


def _scan_tar_fast(
    path: Path, keep: Callable[[_Parts], bool], max_member_bytes: int = MAX_MEMBER_BYTES,
    hidden: bool = False,
) -> _Scan:
    """Read a plain ustar archive (raw or gzip) with a minimal header parser.

    :mod:`tarfile` spends about 50 us of Python per member parsing headers,
    which dominates for 60,000 small JPEGs (CIFAR-10); this reader parses only
    what an ImageFolder archive needs (name, ustar prefix, size, type, hard
    link target, checksum) and raises :class:`_NeedTarfile` on anything else
    (pax or GNU long-name headers, base-256 sizes, bad checksums, truncation,
    other compressions), so :mod:`tarfile` then reads the archive instead.

    Returns the visible file names (hidden ones are never dataset files), the
    bytes of the members ``keep`` wants (an :class:`_Unreadable` message for a
    member over ``max_member_bytes``, which is skipped unread), and the hard
    links among them whose target's bytes were not kept (``{link: target}``).
    ``hidden=True`` lets ``keep`` also select hidden members (hard link targets).
    """
    with open(path, "rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == _GZIP_MAGIC else open
    seen: dict[_Parts, None] = {}
    blobs: dict[_Parts, bytes] = {}
    pending: dict[_Parts, _Parts] = {}
    try:
        with opener(path, "rb") as fh:
            _fast_members(fh.read, path, keep, max_member_bytes, hidden, seen, blobs, pending)
            if opener is gzip.open:  # read to the end: a cut or a bad CRC only shows there
                while fh.read(1 << 20):
                    pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # the gzip stream ends early or is garbled
        raise _Damaged(f"{type(exc).__name__}: {exc}") from exc
    return list(seen), blobs, pending


def _fast_members(read, path, keep, max_member_bytes, hidden, seen, blobs, pending) -> None:
    """The member loop of :func:`_scan_tar_fast` (fills ``seen``, ``blobs``, ``pending``)."""
    while True:
        header = read(512)
        if not header:  # no end-of-archive marker: leave the verdict to tarfile
            raise _NeedTarfile("no end-of-archive marker")
        if len(header) < 512:
            raise _Damaged("the archive ends inside a member header")
        if header.count(0) == 512:  # end-of-archive marker
            break
        if header[257:262] != b"ustar":  # POSIX "ustar\0" or GNU "ustar "; old V7 tar has none
            raise _NeedTarfile("not a ustar header")
        stored = _octal(header[148:156])
        if stored != sum(header[:148]) + 256 + sum(header[156:]):
            raise _NeedTarfile("checksum")
        size = _octal(header[124:136])
        kind = header[156:157]
        if kind not in _REGULAR and kind != _HARDLINK and kind not in _SKIPPED:
            raise _NeedTarfile(f"member type {kind!r}")
        name = header[:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\x00":  # POSIX ustar: 155-byte name prefix
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        parts = None if kind in _SKIPPED else _norm_parts(name.decode("utf-8", "surrogateescape"))
        visible = parts is not None and not _skip_name(parts)
        wanted = parts is not None and (visible or hidden) and keep(parts)
        pad = -size % 512
        if wanted and kind in _REGULAR and size <= max_member_bytes:
            data = read(size)
            if len(data) < size:
                raise _Damaged("the archive ends inside a member")
            if pad and len(read(pad)) < pad:
                raise _Damaged("the archive ends inside a member's padding")
        else:
            data = None
            _discard(read, size + pad)
        if parts is None:
            continue
        if visible:
            seen[parts] = None
        if not wanted:
            continue
        if kind == _HARDLINK:
            target = header[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            _add_member(blobs, pending, parts, None, _norm_parts(target), path)
        elif data is None:
            _add_member(blobs, pending, parts, _too_big(path, parts, size, max_member_bytes), False)
        else:
            _add_member(blobs, pending, parts, data, False)


def _scan_tar_once(
    path: Path, keep: Callable[[_Parts], bool], max_member_bytes: int, hidden: bool = False
) -> _Scan:
    """One pass over the archive: the fast reader, else :mod:`tarfile`'s stream mode.

    Truncation and corrupt compressed data are errors (``ValueError``), never
    a shorter listing: :mod:`tarfile`'s own stream reader ends quietly at a
    cut, so compressed archives are decompressed here with :mod:`gzip`,
    :mod:`bz2` or :mod:`lzma` (which check their trailers and CRCs) and read
    to the end.
    """
    try:
        return _scan_tar_fast(path, keep, max_member_bytes, hidden)
    except _Damaged as exc:
        raise ValueError(f"truncated or corrupt archive {path}: {exc}") from exc
    except (_NeedTarfile, ValueError, OSError):
        pass  # tarfile reads it (and reports real damage with its own message)
    seen: dict[_Parts, None] = {}  # ordered set: a name repeated in the archive counts once
    blobs: dict[_Parts, bytes] = {}
    pending: dict[_Parts, _Parts] = {}
    opener = _decompressor(path)  # None: plain tar, or a compression only tarfile knows
    try:
        with (opener(path, "rb") if opener else open(path, "rb")) as fh, tarfile.open(
            fileobj=fh, mode="r|" if opener else "r|*"
        ) as tf:
            for member in tf:
                if not (member.isfile() or member.islnk()):
                    continue
                parts = _norm_parts(member.name)
                if parts is None:
                    continue
                visible = not _skip_name(parts)
                if visible:
                    seen[parts] = None
                if not ((visible or hidden) and keep(parts)):
                    continue
                if member.islnk():
                    _add_member(blobs, pending, parts, None, _norm_parts(member.linkname), path)
                elif member.size > max_member_bytes:
                    too_big = _too_big(path, parts, member.size, max_member_bytes)
                    _add_member(blobs, pending, parts, too_big, False)
                else:
                    fm = tf.extractfile(member)
                    _add_member(blobs, pending, parts, fm.read() if fm is not None else b"", False)
            if opener:  # read to the end: a cut or a bad CRC only shows there
                while fh.read(1 << 20):
                    pass
    except Exception as exc:  # noqa: BLE001 - tarfile, gzip, bz2, lzma and zlib all raise their own
        raise ValueError(f"truncated or corrupt archive {path}: {type(exc).__name__}: {exc}") from exc
    return list(seen), blobs, pending


def _scan_tar(
    path: Path, keep: Callable[[_Parts], bool], max_member_bytes: int = MAX_MEMBER_BYTES
) -> tuple[list[_Parts], dict[_Parts, bytes]]:
    """Stream the archive once: every file's path, and the bytes of those ``keep`` wants.

    The archive is read sequentially, so compressed archives are decompressed
    once and nothing is written to disk. Plain ustar archives (raw or gzip)
    go through a fast header parser; anything else through ``tarfile``'s
    stream mode. A hard link (tar type ``1``) reads as the member it links to;
    when that member's bytes were not kept on the way (it lies outside the
    selected split) a further pass reads them.
    """
    paths, blobs, pending = _scan_tar_once(path, keep, max_member_bytes)
    for _ in range(8):  # each pass resolves one more level of links to links
        if not pending:
            break
        wanted = set(pending.values())
        _, got, more = _scan_tar_once(path, wanted.__contains__, max_member_bytes, hidden=True)
        still: dict[_Parts, _Parts] = {}
        for link, target in pending.items():
            if target in got:
                blobs[link] = got[target]
            elif target in more:
                still[link] = more[target]
            else:
                blobs[link] = _Unreadable(
                    f"{'/'.join(link)} (in {path}): hard link to {'/'.join(target)!r}, "
                    "which is not in the archive"
                )
        pending = still
    for link, target in pending.items():
        blobs[link] = _Unreadable(f"{'/'.join(link)} (in {path}): hard links nested too deep")
    return paths, blobs


def _decompressor(path: Path):
    """``gzip.open``, ``bz2.open`` or ``lzma.open`` after the file's magic number, else None."""
    with open(path, "rb") as raw:
        magic = raw.read(6)
    if magic.startswith(_GZIP_MAGIC):
        return gzip.open
    if magic.startswith(b"BZh"):
        return bz2.open
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open
    return None


def check_tar_archive(path: Path) -> bool:
    """Whether ``path`` is a tar archive; a damaged one is a ValueError naming it.

    :func:`tarfile.is_tarfile` lets a gzip file that ends early raise a bare
    ``EOFError``, and calls a cut bzip2 / xz file "not a tar archive"; both
    become ``ValueError("truncated or corrupt archive <path>: ...")``.
    """
    try:
        if tarfile.is_tarfile(path):
            return True
        opener = _decompressor(path)
        if opener is not None:
            with opener(path, "rb") as fh:
                fh.read(512)  # a compressed file that decompresses (and is no tar) is not damaged
    except Exception as exc:  # noqa: BLE001 - EOFError, zlib / bz2 / lzma errors, OSError
        raise ValueError(f"truncated or corrupt archive {path}: {type(exc).__name__}: {exc}") from exc
    return False


def _resolve_layout(
    paths: list[_Parts], split: str | None, where: str
) -> tuple[_Parts, bool, list[_Parts]]:
    """Find the ImageFolder layout of a file listing.

    Returns the wrapper prefix stripped, whether the layout has split folders,
    and the files (relative to the prefix) that are inside class folders.
    Non-image files shallower than the class level (a README next to the class
    folders) are ignored; image files at two different depths are an error.
    """
    prefix: _Parts = ()
    files = [p for p in paths if len(p) >= 2]
    while True:
        if not files:
            raise ValueError(
                f"no class subfolders with files found in {where}; expected the "
                "ImageFolder layout <root>/<class>/<file> or <root>/<split>/<class>/<file>"
            )
        depth = max(len(p) for p in files)
        stray = [p for p in files if len(p) < depth and p[-1].lower().endswith(IMAGE_EXTENSIONS)]
        if stray:
            deep = next(p for p in files if len(p) == depth)
            raise ValueError(
                f"mixed folder depths in {where}: image files such as "
                f"{'/'.join(prefix + stray[0])!r} and {'/'.join(prefix + deep)!r} sit at "
                "different levels; expected <class>/<file> or <split>/<class>/<file> throughout"
            )
        files = [p for p in files if len(p) == depth]
        tops = sorted({p[0] for p in files})
        single_wrapper = len(tops) == 1 and tops[0].lower() not in SPLIT_NAMES and tops[0] != split
        if depth == 2:
            return prefix, False, files
        if depth == 3 and not single_wrapper:
            return prefix, True, files
        if len(tops) != 1:
            example = "/".join(prefix + files[0])
            raise ValueError(
                f"unrecognised folder layout in {where}: files such as {example!r} are "
                f"{depth + len(prefix)} levels deep under several top folders {tops[:5]}; "
                "expected <class>/<file> or <split>/<class>/<file>, optionally inside one "
                "top folder"
            )
        prefix = prefix + (tops[0],)
        files = [p[1:] for p in files]
        files = [p for p in files if len(p) >= 2]


def _run_chunks(func, items: list, n_jobs) -> list:
    """Apply ``func`` to chunks of ``items`` (joblib threads), concatenating the results."""
    n = len(items)
    if n == 0:
        return []
    workers = max(1, min(effective_n_jobs(n_jobs), n))
    if workers == 1:
        return func(items)
    size = int(min(4096, max(64, math.ceil(n / (workers * 8)))))
    chunks = [items[i : i + size] for i in range(0, n, size)]
    # cv2.imdecode / cvtColor release the GIL, so threads decode in parallel
    # without copying the encoded bytes into worker processes.
    results = Parallel(n_jobs=workers, prefer="threads")(delayed(func)(c) for c in chunks)
    return [r for part in results for r in part]


def _decode_blob_items(items, max_pixels=None):
    return decode_many([b for b, _ in items], [n for _, n in items], max_pixels)


def _decode_file_items(items, max_pixels=None):
    out = []
    for fpath, name in items:
        try:
            with open(fpath, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            out.append(f"{name}: cannot read file ({exc})")
            continue
        try:
            out.append(decode_image(data, name, max_pixels=max_pixels))
        except ValueError as exc:
            out.append(str(exc))
    return out


def _assemble(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """One (N, H, W[, 3]) array when every image has the same shape, else a list.

    When grayscale and color images are mixed, the grayscale ones are replicated
    to three channels so that every image of the dataset has the same kind.
    """
    if any(im.ndim == 3 for im in images) and any(im.ndim == 2 for im in images):
        images = [cv2.cvtColor(im, cv2.COLOR_GRAY2RGB) if im.ndim == 2 else im for im in images]
    if images and all(im.shape == images[0].shape for im in images):
        out = np.empty((len(images),) + images[0].shape, dtype=np.uint8)
        for i, im in enumerate(images):
            out[i] = im
        return out
    return list(images)


def _warn_skipped(root: Path, skipped: list[str], stacklevel: int = 3) -> None:
    warnings.warn(
        f"skipped {len(skipped)} unreadable file(s) in {root}: " + ", ".join(skipped),
        UserWarning,
        stacklevel=stacklevel,
    )


def _warn_links(root: Path, refused: list[str]) -> None:
    warnings.warn(
        f"ignored {len(refused)} symbolic link(s) in {root} that point outside it, are broken "
        "or loop: " + ", ".join(refused),
        UserWarning,
        stacklevel=3,
    )


def _check_member_bytes(value) -> int:
    if value is None:
        return MAX_MEMBER_BYTES
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"max_member_bytes must be a positive integer (bytes) or None, got {value!r}")
    return int(value)


def _check_split_arg(split) -> None:
    if split is not None and (not isinstance(split, str) or not split or "/" in split):
        raise ValueError(f"split must be None or a split folder name such as 'train', got {split!r}")


def _check_load_args(split, on_error, train_per_class, test_per_class) -> None:
    _check_split_arg(split)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    check_per_class_counts(train_per_class, test_per_class)


def _source(root: Path, cache: bool) -> tuple[str, list | None, list[str]]:
    """What ``root`` is: its cache identity, a folder's listing (None for an archive)
    and the symbolic links of a folder that were not followed."""
    if not root.exists():
        raise FileNotFoundError(f"image folder or archive not found: {root}")
    if root.is_dir():
        listing, refused_links = _scan_folder(root)
        return "folder:" + _cache.folder_fingerprint(root, listing), listing, refused_links
    if root.is_file():
        if not check_tar_archive(root):
            raise ValueError(
                f"{root} is neither a folder nor a tar archive (.tar, .tar.gz, .tgz)"
            )
        return ("tar:" + _cache.file_sha256(root) if cache else ""), None, []
    raise ValueError(f"{root} is neither a folder nor a tar archive")


def _list_files(root: Path, listing: list | None, split: str | None, member_limit: int):
    """Every file (as path components) and, for an archive, the bytes of those that
    may be selected (the members under a folder named ``split``; all with ``split=None``)."""
    if listing is not None:
        return [tuple(rel.split("/")) for rel, _, _ in listing], None
    if split is None:
        keep = lambda parts: True  # noqa: E731
    else:
        keep = lambda parts: split in parts[:-2]  # noqa: E731
    return _scan_tar(root, keep, member_limit)


def _pool(paths: list[_Parts], root: Path, split: str | None, train_per_class):
    """The files to draw from, after the layout: ``(prefix, pool, class_names, target, fixed)``.

    ``prefix`` is the wrapper folder(s) stripped, ``pool`` the sorted files of
    the selected split (every split with ``split=None``), ``target`` their
    class indices into the sorted ``class_names``, ``fixed`` whether the pool
    is one fixed split folder.
    """
    prefix, has_splits, files = _resolve_layout(paths, split, str(root))
    if has_splits:
        splits = sorted({p[0] for p in files})
        class_names = sorted({p[1] for p in files})
        if split is not None and split not in splits:
            raise ValueError(f"split {split!r} not found in {root}; available splits: {splits}")
        pool = files if split is None else [p for p in files if p[0] == split]
        fixed = split is not None
    else:
        class_names = sorted({p[0] for p in files})
        if split is not None and train_per_class is None:
            raise ValueError(
                f"{root} has no split folders (layout <class>/<file>), so split={split!r} "
                "does not exist; pass split=None, or train_per_class= (and "
                "test_per_class=) to draw a per-class train/test split"
            )
        pool = files
        fixed = False
    pool = sorted(pool)
    pool_classes = [p[1] if has_splits else p[0] for p in pool]
    class_index = {c: i for i, c in enumerate(class_names)}
    target = np.fromiter((class_index[c] for c in pool_classes), dtype=np.int64, count=len(pool))
    return prefix, pool, class_names, target, fixed


def _select(paths: list[_Parts], root: Path, split, train_per_class, test_per_class, random_state):
    """The layout of ``paths`` and the files to return: ``(prefix, pool, class_names,
    target, chosen, extra)`` (:func:`_pool`, then the per-class draws of :func:`select_indices`)."""
    prefix, pool, class_names, target_all, fixed = _pool(paths, root, split, train_per_class)
    chosen, extra = select_indices(
        target_all,
        split=split,
        fixed=fixed,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        random_state=random_state,
        target_names=class_names,
    )
    return prefix, pool, class_names, target_all, chosen, extra


def _decode_selected(root: Path, parts: list[_Parts], rel_names: list[str], blobs: dict | None,
                     member_limit: int, pixel_limit: int, n_jobs) -> list:
    """Decode the selected files (``parts`` below ``root``): an image, or an error message, each."""
    if blobs is None:
        items = [(root / rel, str(root / rel)) for rel in rel_names]
        return _run_chunks(functools.partial(_decode_file_items, max_pixels=pixel_limit), items, n_jobs)
    missing = set(parts) - blobs.keys()
    if missing:
        # The first pass kept only files under a folder named like ``split``;
        # a per-class split of a layout without split folders needs a second one.
        blobs.update(_scan_tar(root, missing.__contains__, member_limit)[1])
    items = [(blobs[p], f"{rel} (in {root})") for p, rel in zip(parts, rel_names)]
    return _run_chunks(functools.partial(_decode_blob_items, max_pixels=pixel_limit), items, n_jobs)


def _drop_unreadable(root: Path, decoded: list, rel_names: list[str], target: np.ndarray, extra: dict,
                     on_error: str):
    """Raise on the first unreadable file, or (``on_error="skip"``) leave them out with one warning.

    Returns the images, names, targets and part positions (``extra``) without
    the skipped files, and the skipped names.
    """
    failed = [i for i, r in enumerate(decoded) if isinstance(r, str)]
    skipped: list[str] = []
    if failed:
        if on_error == "raise":
            more = f" ({len(failed) - 1} more unreadable files)" if len(failed) > 1 else ""
            raise ValueError(decoded[failed[0]] + more)
        skipped = [rel_names[i] for i in failed]
        _warn_skipped(root, skipped, stacklevel=4)
        ok = np.ones(len(decoded), dtype=bool)
        ok[failed] = False
        if extra:
            # Re-map the part positions onto the arrays without the skipped files.
            new_pos = np.cumsum(ok) - 1
            extra = {k: new_pos[v[ok[v]]] for k, v in extra.items()}
        decoded = [r for r, good in zip(decoded, ok) if good]
        rel_names = [r for r, good in zip(rel_names, ok) if good]
        target = target[ok]
        if not decoded:
            raise ValueError(f"no readable image in {root} (all {len(failed)} files skipped)")
    if not decoded:
        raise ValueError(f"no images selected in {root}")
    return decoded, rel_names, target, extra, skipped


def load_image_folder(
    path: str | os.PathLike,
    split: str | None = None,
    *,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
    on_error: Literal["raise", "skip"] = "raise",
    cache: bool = True,
    n_jobs: int | None = -1,
    max_pixels: int | None = None,
    max_member_bytes: int | None = MAX_MEMBER_BYTES,
    lazy: bool = False,
    max_side: int | None = None,
    rgb: bool = False,
) -> Bunch:
    """Load an image-classification dataset stored in the ImageFolder layout.

    ``path`` is a directory or a ``.tar`` / ``.tar.gz`` / ``.tgz`` (any
    compression :mod:`tarfile` reads) archive holding either
    ``<class>/<file>`` or ``<split>/<class>/<file>``, optionally inside one
    top folder (``cifar10/train/airplane/0000.jpg``). Archives are streamed
    once and never unpacked to disk. Class names are the sorted class folder
    names (the union over all splits, so labels agree between splits).

    Parameters
    ----------
    path : str or path-like
        Folder or tar archive.
    split : str or None, default=None
        Which split folder to load (e.g. ``"train"``, ``"test"``). ``None``
        loads every split pooled together (the 15-Scene protocol redraws its
        splits from the pool). On a folder without split folders, ``"train"``
        and ``"test"`` are available when ``train_per_class`` is given.
    train_per_class, test_per_class : int or None, default=None
        Per-class counts for :func:`split_per_class`: exactly
        ``train_per_class`` training images and *up to* ``test_per_class``
        test images per class (all that remain after training when a class has
        fewer, as in the Caltech-101 protocol). On a fixed split they subsample
        it (up to ``test_per_class`` per class for a test/val split, else
        exactly ``train_per_class``; ``None`` keeps all). Otherwise they split
        the pool: ``split="train"``/``"test"`` returns that part, ``split=None``
        returns both parts with ``train_index`` / ``test_index``.
    random_state : int, RandomState instance or None, default=0
        Seed of the per-class draws. Only integer seeds are cached.
    on_error : {"raise", "skip"}, default="raise"
        What a corrupt, empty or non-image file does: raise a ``ValueError``
        naming it, or be left out with one warning listing every skipped file.
    cache : bool, default=True
        Reuse / store the decoded arrays in the cache folder
        (:func:`get_cache_dir`), keyed by the archive's SHA-256 (or a folder's
        path, file sizes and modification times) and every argument above.
    n_jobs : int or None, default=-1
        Decoding threads (joblib semantics: -1 means all cores, None means 1).
    max_pixels : int or None, default=None
        Largest width x height accepted per image, read from each file's
        header before decoding (``None``: :data:`MAX_IMAGE_PIXELS`, 89,478,485).
        A larger image is an unreadable file: an error, or skipped with
        ``on_error="skip"``.
    max_member_bytes : int or None, default=512 MiB
        Archives only: a member larger than this is not read into memory but
        reported as unreadable (an error naming the archive and the member, or
        skipped with ``on_error="skip"``). ``None`` means the default.
    lazy : bool, default=False
        Return the images as a :class:`LazyImages` that decodes each image when
        it is indexed, instead of decoding them all now: listing reads the
        folder's directory entries or the archive's member headers only, and
        no decoded-array cache is read or written (``cache`` and ``n_jobs``
        are unused). Folders and *uncompressed* ``.tar`` archives (members
        read at their offsets); a compressed archive is a ``ValueError``. The
        Bunch is the same otherwise (targets, names, per-class draws with the
        same seed). Header checks (``max_pixels``) and decoding errors happen
        when an image is accessed, so ``on_error="skip"`` is refused; an
        archive member over ``max_member_bytes``, or a hard link to a missing
        member, is an error at listing.
    max_side : int or None, default=None
        Downscale decoded images whose longer side is larger to this many
        pixels (area interpolation, as the extractors' ``max_size``); with
        ``lazy=True`` each image as it is accessed.
    rgb : bool, default=False
        Replicate grayscale images to three channels. Without it the eager
        loader does so only when the dataset mixes grayscale and colour files,
        and the lazy one never (it cannot know without decoding): pass
        ``rgb=True`` on such a dataset for the same arrays both ways.

    Returns
    -------
    Bunch
        images : (N, H, W[, 3]) ndarray of uint8, list of N (H, W[, 3]) ndarrays, or LazyImages
            One array when every image has the same shape, else a list
            (``lazy=True``: a :class:`LazyImages` of N images).
            Grayscale files give (H, W) images, color files RGB (H, W, 3).
        target : (N,) ndarray of int64
            Index into ``target_names``.
        target_names : list of str
            Sorted class folder names.
        filenames : (N,) ndarray of str
            Paths relative to ``path`` (inside the archive for an archive).
        split : str or None
            The ``split`` argument.
        train_index, test_index : ndarray of int64
            Only with ``split=None`` and per-class counts on data without a fixed
            split: positions of the two parts in the returned arrays.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For a file that is not a folder or tar archive, a truncated or corrupt
        archive, a folder without class subfolders, an unknown split (the
        message lists the available ones), a class with fewer than
        ``train_per_class`` images (or none left for testing when
        ``test_per_class`` asks for some), or a file that cannot be decoded, is
        over ``max_pixels`` or over ``max_member_bytes`` (with
        ``on_error="raise"``).

    Notes
    -----
    * Images are decoded with OpenCV (:func:`decode_image`): RGB order, alpha
      dropped, 16-bit scaled to 8-bit, grayscale kept 2-D, EXIF orientation
      not applied.
    * When grayscale and color images are mixed in one dataset, the grayscale
      ones are replicated to three channels, so every image has the same kind.
    * Hidden files and folders (names starting with ``.``) and files outside
      class folders are ignored; any other file inside a class folder must be
      an image.
    * Symbolic links in a folder are followed only when they resolve inside
      ``path``; links that point outside it (a class folder linking to
      ``/etc``), broken links and link loops are left out with one warning
      naming each link and its target. Symbolic links inside an archive are
      ignored; hard links read as the member they link to.
    * Archives are read in one sequential pass. Plain ustar archives (raw or
      gzip, as ``tar czf`` and :mod:`tarfile` write them) go through a small
      header parser about 3x faster than :mod:`tarfile` on many small
      members; pax / GNU long-name headers and other compressions fall back to
      :mod:`tarfile`. Decoding runs in ``n_jobs`` threads (OpenCV releases
      the GIL).

    Examples
    --------
    >>> data = load_image_folder("cifar10.tar.gz", split="test")  # doctest: +SKIP
    >>> data.images.shape, data.target_names[:2]  # doctest: +SKIP
    ((10000, 32, 32, 3), ['airplane', 'automobile'])
    """
    _check_load_args(split, on_error, train_per_class, test_per_class)
    pixel_limit = resolve_max_pixels(max_pixels)
    member_limit = _check_member_bytes(max_member_bytes)
    root = Path(os.path.expanduser(os.fspath(path)))
    if lazy:
        return _load_lazy(root, split, train_per_class, test_per_class, random_state, on_error,
                          max_pixels, member_limit, max_side, rgb)
    from ._lazy import _check_max_side

    max_side = _check_max_side(max_side)
    source_id, listing, refused_links = _source(root, cache)
    if refused_links:
        _warn_links(root, refused_links)
    is_tar = listing is None

    key = None
    if cache and isinstance(random_state, Integral):
        key = _cache.make_key(
            source_id,
            split=split,
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            random_state=int(random_state),
            on_error=on_error,
            max_pixels=pixel_limit,
            max_member_bytes=member_limit if is_tar else None,
            # Only when set, so that the keys of earlier caches stay valid:
            **({"rgb": True} if rgb else {}),
            **({"max_side": max_side} if max_side is not None else {}),
        )
        hit = _cache.load(key)
        if hit is not None:
            skipped = hit.pop("skipped")
            if skipped:
                _warn_skipped(root, skipped)
            return Bunch(split=split, **hit)

    paths, blobs = _list_files(root, listing, split, member_limit)
    prefix, pool, class_names, target_all, chosen, extra = _select(
        paths, root, split, train_per_class, test_per_class, random_state
    )
    rel_names = ["/".join(prefix + pool[i]) for i in chosen]
    decoded = _decode_selected(root, [prefix + pool[i] for i in chosen], rel_names, blobs, member_limit,
                               pixel_limit, n_jobs)
    del blobs
    decoded, rel_names, target, extra, skipped = _drop_unreadable(
        root, decoded, rel_names, target_all[chosen], extra, on_error
    )
    if rgb or max_side is not None:
        from ..features._common import resize_max_side  # features imports datasets: import late

        decoded = [resize_max_side(cv2.cvtColor(im, cv2.COLOR_GRAY2RGB) if rgb and im.ndim == 2 else im,
                                   max_side) for im in decoded]
    images = _assemble(decoded)
    filenames = np.asarray(rel_names, dtype=str)
    if key is not None:
        _cache.save(key, images, target, class_names, filenames, extra, skipped)
    return Bunch(
        images=images,
        target=target,
        target_names=list(class_names),
        filenames=filenames,
        split=split,
        **extra,
    )


def _load_lazy(root: Path, split, train_per_class, test_per_class, random_state, on_error, max_pixels,
               member_limit: int, max_side, rgb: bool) -> Bunch:
    """:func:`load_image_folder` with ``lazy=True``: list, select, and wrap in a LazyImages."""
    from ._lazy import LazyImages, _check_max_side, _interned, _refuse_skip, index_plain_tar

    _check_max_side(max_side)
    _refuse_skip(on_error)
    _, listing, refused_links = _source(root, cache=False)
    if refused_links:
        _warn_links(root, refused_links)
    if listing is None:
        if _decompressor(root) is not None:
            raise ValueError(
                f"{root} is a compressed archive, which cannot be read by offset (lazy=True reads "
                "each image at its position in the archive); unpack it (tar xf) or recompress it "
                "as a plain .tar (e.g. gunzip -c x.tar.gz > x.tar), or pass lazy=False"
            )
        paths, where = index_plain_tar(root)
        stats = None
    else:
        paths = [_interned(tuple(rel.split("/"))) for rel, _, _ in listing]
        stats = {rel: (size, mtime) for rel, size, mtime in listing}
        del listing
    prefix, pool, class_names, target_all, chosen, extra = _select(
        paths, root, split, train_per_class, test_per_class, random_state
    )
    del paths
    rel_names = ["/".join(prefix + pool[i]) for i in chosen]
    if not rel_names:
        raise ValueError(f"no images selected in {root}")
    if stats is not None:
        sizes = np.fromiter((stats[r][0] for r in rel_names), dtype=np.int64, count=len(rel_names))
        mtimes = np.fromiter((stats[r][1] for r in rel_names), dtype=np.int64, count=len(rel_names))
        images = LazyImages._from_listing(root, rel_names, sizes, mtimes, max_side=max_side,
                                          max_pixels=max_pixels, rgb=rgb)
    else:
        spots = [where[prefix + pool[i]] for i in chosen]
        for rel, spot in zip(rel_names, spots):
            if isinstance(spot, str):
                raise ValueError(spot)
            if spot[1] > member_limit:
                raise ValueError(_too_big(root, tuple(rel.split("/")), spot[1], member_limit))
        offsets = np.fromiter((s[0] for s in spots), dtype=np.int64, count=len(spots))
        sizes = np.fromiter((s[1] for s in spots), dtype=np.int64, count=len(spots))
        images = LazyImages._from_listing(root, rel_names, sizes, None, archive=root, offsets=offsets,
                                          max_side=max_side, max_pixels=max_pixels, rgb=rgb)
    return Bunch(
        images=images,
        target=target_all[chosen],
        target_names=list(class_names),
        filenames=np.asarray(rel_names, dtype=str),
        split=split,
        **extra,
    )
