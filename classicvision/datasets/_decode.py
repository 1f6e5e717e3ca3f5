"""Decoding image files into the ``uint8`` arrays the rest of the library expects."""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

__all__ = ["decode_image", "read_image", "IMAGE_EXTENSIONS"]

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


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, name: str = "<bytes>") -> np.ndarray:
    """Decode one encoded image file (JPEG, PNG, ...) to an RGB or grayscale array.

    Parameters
    ----------
    data : bytes-like
        The file's content.
    name : str
        How error messages name the file.

    Returns
    -------
    image : (H, W) or (H, W, 3) ndarray of uint8
        Grayscale files stay 2-D; color files are RGB (OpenCV's BGR order is
        converted); an alpha channel is dropped; 16-bit files are scaled to
        8 bits (``round(v / 257)``), floating-point files from ``[0, 1]``.

    Raises
    ------
    ValueError
        If the file is empty or cannot be decoded as an image; the message
        names the file.

    Notes
    -----
    Decoding uses ``cv2.imdecode`` with ``IMREAD_UNCHANGED`` so that grayscale
    files are not expanded to three channels and 16-bit depth is seen before
    it is reduced. That flag also means EXIF orientation tags are not applied:
    pixels are returned in stored order.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.size == 0:
        raise ValueError(f"{name}: empty file (0 bytes), not an image")
    try:
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # pragma: no cover - OpenCV raises only on odd inputs
        raise ValueError(f"{name}: cannot decode as an image ({exc})") from exc
    if arr is None or arr.size == 0:
        raise ValueError(f"{name}: not a readable image file (corrupt or unsupported format)")
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


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file from disk (see :func:`decode_image` for the conversions).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    image : (H, W) or (H, W, 3) ndarray of uint8

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is empty or not an image.
    """
    path = os.fspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    with open(path, "rb") as fh:
        data = fh.read()
    return decode_image(data, path)


def decode_many(
    blobs: Sequence[bytes], names: Sequence[str]
) -> list[np.ndarray | str]:
    """Decode a chunk; failures are returned as their error message (a ``str``)."""
    out: list[np.ndarray | str] = []
    for data, name in zip(blobs, names):
        try:
            out.append(decode_image(data, name))
        except ValueError as exc:
            out.append(str(exc))
    return out
