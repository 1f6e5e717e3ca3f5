"""Decoding image files into the ``uint8`` arrays the rest of the library expects."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from numbers import Integral

import cv2
import numpy as np
from PIL import Image

__all__ = ["decode_image", "read_image", "IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS"]

#: Largest image (width x height, in pixels) the decoders accept unless told
#: otherwise with ``max_pixels=``; Pillow's default. A 2.6 MB PNG can declare
#: 30000 x 30000 pixels and would take gigabytes to decode, so the size is read
#: from the file header and checked *before* decoding. Raise the limit for the
#: whole process with ``classicvision.datasets.MAX_IMAGE_PIXELS = n``.
MAX_IMAGE_PIXELS = 89_478_485

#: File extensions recognised as images when scanning a folder or an archive.
#: Files with other extensions inside a class folder are still decoded (and fail
#: loudly if they are not images); this list is only used for documentation and
#: by callers that want to pre-filter.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
    ".pnm", ".gif", ".jp2", ".exr", ".hdr",
)


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Scale any decoded depth to ``uint8`` (16-bit: divide by 257, float: [0, 1])."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        # 65535 / 257 == 255 exactly, so the full 16-bit range maps onto the 8-bit one.
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if arr.dtype == np.int8:
        return (arr.astype(np.int16) + 128).astype(np.uint8)
    if arr.dtype == np.int16:
        return ((arr.astype(np.int32) + 32768 + 128) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return np.round(np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"{name}: unsupported pixel type {arr.dtype}")


def resolve_max_pixels(max_pixels: int | None) -> int:
    """The pixel limit to apply: ``max_pixels``, or the package's :data:`MAX_IMAGE_PIXELS`.

    Raises
    ------
    ValueError
        If ``max_pixels`` (or the module default) is not a positive integer.
    """
    if max_pixels is None:
        # Read the package attribute at call time, so that
        # ``classicvision.datasets.MAX_IMAGE_PIXELS = n`` takes effect everywhere.
        package = sys.modules.get(__package__ or "")
        max_pixels = getattr(package, "MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS)
        what = "classicvision.datasets.MAX_IMAGE_PIXELS"
    else:
        what = "max_pixels"
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, Integral) or max_pixels <= 0:
        raise ValueError(
            f"{what} must be a positive integer (a number of pixels) or None for the "
            f"default, got {max_pixels!r}"
        )
    return int(max_pixels)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (the ones holding the frame size): C0-CF except
# DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(mv: memoryview) -> tuple[int, int] | None:
    """(width, height) from the first SOF segment of a JPEG, or None if not found."""
    i, n = 2, len(mv)
    while i + 4 <= n:
        if mv[i] != 0xFF:
            return None
        marker = mv[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            return (mv[i + 7] << 8) | mv[i + 8], (mv[i + 5] << 8) | mv[i + 6]
        i += 2 + ((mv[i + 2] << 8) | mv[i + 3])
    return None


def _pillow_size(mv: memoryview) -> tuple[int, int] | None:
    """(width, height) as Pillow reads it from the header alone, or None if unknown.

    Pillow's format plugins are asked directly (as ``PIL.Image.open`` does) so
    that Pillow's own process-wide decompression-bomb limit neither warns nor
    refuses here: the limit that applies is ``max_pixels``.
    """
    Image.init()
    prefix = bytes(mv[:16])
    fp = io.BytesIO(mv)
    # No warnings.catch_warnings() here: it is not thread-safe, and decoding runs
    # in threads; the plugins themselves do not run Pillow's bomb check.
    for fmt in list(Image.ID):
        try:
            factory, accept = Image.OPEN[fmt]
            result = not accept or accept(prefix)
            if not result or isinstance(result, str):
                continue
            fp.seek(0)
            im = factory(fp, "")
            width, height = im.size
            return int(width), int(height)
        except Exception:  # noqa: BLE001 - any plugin failure means "not this format"
            continue
    return None


def header_size(data: bytes | bytearray | memoryview | np.ndarray) -> tuple[int, int] | None:
    """Width and height declared by an encoded image's header, without decoding it.

    PNG and JPEG headers are parsed directly (a few microseconds); other
    formats are asked of Pillow's header readers. Returns ``None`` when no
    reader recognises the file (OpenCV may still decode it, e.g. OpenEXR).
    """
    mv = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else memoryview(
        np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    )
    if len(mv) >= 24 and mv[:8] == _PNG_SIGNATURE and mv[12:16] == b"IHDR":
        return int.from_bytes(mv[16:20], "big"), int.from_bytes(mv[20:24], "big")
    if len(mv) >= 4 and mv[0] == 0xFF and mv[1] == 0xD8:
        size = _jpeg_size(mv)
        if size is not None:
            return size
    return _pillow_size(mv)


def _too_large(name: str, width: int, height: int, limit: int) -> ValueError:
    return ValueError(
        f"{name}: image of {width}x{height} = {width * height:,} pixels exceeds the limit of "
        f"{limit:,} pixels (a possible decompression bomb); pass max_pixels= a larger "
        "number, or set classicvision.datasets.MAX_IMAGE_PIXELS, to decode it"
    )


def decode_image(
    data: bytes | bytearray | memoryview | np.ndarray,
    name: str = "<bytes>",
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode one encoded image file (JPEG, PNG, ...) to an RGB or grayscale array.

    Parameters
    ----------
    data : bytes-like
        The file's content.
    name : str
        How error messages name the file.
    max_pixels : int or None, default=None
        Largest accepted width x height; ``None`` uses
        :data:`MAX_IMAGE_PIXELS` (89,478,485, Pillow's default). The size is
        read from the file header before anything is decoded.

    Returns
    -------
    image : (H, W) or (H, W, 3) ndarray of uint8
        Grayscale files stay 2-D; color files are RGB (OpenCV's BGR order is
        converted); an alpha channel is dropped; 16-bit files are scaled to
        8 bits (``round(v / 257)``), floating-point files from ``[0, 1]``.

    Raises
    ------
    ValueError
        If the file is empty, declares more than ``max_pixels`` pixels, or
        cannot be decoded as an image; the message names the file. Also if
        ``max_pixels`` is not a positive integer.

    Notes
    -----
    Decoding uses ``cv2.imdecode`` with ``IMREAD_UNCHANGED`` so that grayscale
    files are not expanded to three channels and 16-bit depth is seen before
    it is reduced. That flag also means EXIF orientation tags are not applied:
    pixels are returned in stored order.

    The header check covers PNG and JPEG (parsed directly) and every format
    Pillow can identify; a format only OpenCV reads (OpenEXR, Radiance HDR) is
    checked after decoding, and OpenCV's own ``OPENCV_IO_MAX_IMAGE_PIXELS``
    limit bounds its decoding.
    """
    limit = resolve_max_pixels(max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.size == 0:
        raise ValueError(f"{name}: empty file (0 bytes), not an image")
    if buf.dtype != np.uint8:
        buf = np.ascontiguousarray(buf).view(np.uint8)
    size = header_size(buf)
    if size is not None and size[0] * size[1] > limit:
        raise _too_large(name, size[0], size[1], limit)
    try:
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # OpenCV raises only on odd inputs
        raise ValueError(f"{name}: cannot decode as an image ({exc})") from exc
    if arr is None or arr.size == 0:
        raise ValueError(f"{name}: not a readable image file (corrupt or unsupported format)")
    if arr.shape[0] * arr.shape[1] > limit:  # a format without a header check
        raise _too_large(name, arr.shape[1], arr.shape[0], limit)
    arr = _to_uint8(arr, name)
    if arr.ndim == 3:
        channels = arr.shape[2]
        if channels == 1:
            arr = arr[:, :, 0]
        elif channels == 2:  # gray + alpha
            arr = arr[:, :, 0]
        elif channels == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        elif channels == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
        else:
            raise ValueError(f"{name}: unsupported number of channels ({channels})")
    elif arr.ndim != 2:
        raise ValueError(f"{name}: unsupported image shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read one image file from disk (see :func:`decode_image` for the conversions).

    Parameters
    ----------
    path : str or path-like
    max_pixels : int or None, default=None
        Largest accepted width x height (``None``: :data:`MAX_IMAGE_PIXELS`),
        checked on the file header before decoding.

    Returns
    -------
    image : (H, W) or (H, W, 3) ndarray of uint8

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is empty, not an image, or larger than ``max_pixels``.
    """
    limit = resolve_max_pixels(max_pixels)
    path = os.fspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    with open(path, "rb") as fh:
        data = fh.read()
    return decode_image(data, path, max_pixels=limit)


def decode_many(
    blobs: Sequence[bytes | str], names: Sequence[str], max_pixels: int | None = None
) -> list[np.ndarray | str]:
    """Decode a chunk; failures are returned as their error message (a ``str``).

    A blob that is already a ``str`` is an error found while reading it (an
    archive member over the size limit) and is passed through.
    """
    out: list[np.ndarray | str] = []
    for data, name in zip(blobs, names):
        if isinstance(data, str):
            out.append(data)
            continue
        try:
            out.append(decode_image(data, name, max_pixels=max_pixels))
        except ValueError as exc:
            out.append(str(exc))
    return out
