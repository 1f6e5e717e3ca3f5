"""Image data for the CNN track: uint8 tensors held on the device, augmented per batch.

The whole training set is converted once, a few images at a time, to a
``(N, C, H, W)`` ``uint8`` tensor at the model's input size and moved to the device (4x smaller than float32, so
CIFAR-10 takes 150 MB). Every batch is then cast, normalized, randomly cropped
(with reflect padding) and flipped on the device, as airbench does, so no
per-batch host-to-device copy or DataLoader worker is needed.

A lazy sequence of images (any sequence that is not a list, tuple or ndarray, such as
:class:`classicvision.datasets.LazyImages`, which decodes a file on ``x[i]``) is read
by index, a chunk at a time, and never materialized: only the uint8 result at the
input size and one chunk of decoded images are held (:func:`is_lazy`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from classicvision.base import check_image, image_list

if TYPE_CHECKING:
    from .augment import BatchAugment

__all__ = [
    "images_to_tensor",
    "channel_stats",
    "normalize",
    "random_crop",
    "random_flip",
    "DeviceData",
    "CHUNK_BYTES",
    "is_lazy",
    "image_shapes",
]

_LUMA = (0.299, 0.587, 0.114)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    # check_image keeps floats (expected in [0, 1]) and casts valid integer images.
    return np.clip(np.rint(np.asarray(arr, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _stack_channels(arr: np.ndarray, in_chans: int) -> np.ndarray:
    """(N, H, W[, 3]) uint8 -> (N, H, W, in_chans) uint8."""
    if arr.ndim == 3:
        arr = arr[..., None]
    c = arr.shape[-1]
    if c == in_chans:
        return arr
    if c == 1:
        return np.repeat(arr, in_chans, axis=-1)
    if in_chans == 1:
        gray = arr.astype(np.float32) @ np.asarray(_LUMA, dtype=np.float32)
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None]
    raise ValueError(f"cannot convert {c}-channel images to {in_chans} channels")


def _resize_batch(x: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize (N, C, H, W) uint8 to (N, C, size, size) with antialiased bilinear."""
    if x.shape[-2:] == (size, size):
        return x
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, x.shape[0], chunk):
        xf = x[i : i + chunk].float()
        y = F.interpolate(xf, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


#: Float32 working memory of one resize chunk in :func:`images_to_tensor` (bytes).
CHUNK_BYTES = 32 * 2**20


def _chunk_len(h: int, w: int, size: int, in_chans: int, chunk_bytes: int) -> int:
    """Images per chunk so that the chunk's float32 input and output fit ``chunk_bytes``."""
    per_image = 4 * in_chans * (h * w + size * size)
    return max(1, int(chunk_bytes) // per_image)


def _fill(out: torch.Tensor, idx, arr: np.ndarray, size: int, in_chans: int) -> None:
    """Write the (B, H, W[, C]) uint8 chunk ``arr``, resized, into ``out[idx]``."""
    arr = _stack_channels(np.ascontiguousarray(arr), in_chans)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    out[idx] = _resize_batch(t, size)


def _one_image(image, index: int, filenames, in_chans: int) -> np.ndarray:
    """Validate one image and return it as (H, W, in_chans) uint8."""
    arr = _to_uint8(check_image(image, index=index, filenames=filenames))
    return _stack_channels(arr[None], in_chans)[0]


def is_lazy(images) -> bool:
    """Whether ``images`` is read by index without being materialized.

    True for a sequence (``len`` and indexing) that is not a list, tuple or
    ndarray, e.g. :class:`classicvision.datasets.LazyImages`, whose
    ``np.asarray`` raises on purpose and whose items are decoded on access.
    """
    if isinstance(images, (np.ndarray, list, tuple, str, bytes)):
        return False
    return hasattr(images, "__len__") and hasattr(images, "__getitem__")


def _lazy_filenames(images, filenames):
    """``filenames``, else the sequence's own ``filenames`` (LazyImages has them) when one per image."""
    if filenames is not None:
        return filenames
    own = getattr(images, "filenames", None)
    try:
        return own if own is not None and len(own) == len(images) else None
    except TypeError:
        return None


def image_shapes(images, filenames: Sequence[str] | None = None) -> list[tuple[int, ...]]:
    """The shape of every image, reading (for a lazy sequence: decoding) one image at a time.

    Parameters
    ----------
    images : sequence of (H, W[, C]) arrays, lazy sequence, or (N, H, W[, C]) ndarray
    filenames : sequence of str, optional
        Used in error messages.

    Returns
    -------
    list of tuple
        ``(H, W)`` or ``(H, W, C)`` per image; no image is kept.
    """
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        return [tuple(images.shape[1:])] * images.shape[0]
    if not is_lazy(images):
        return [tuple(np.shape(im)) for im in image_list(images)]
    filenames = _lazy_filenames(images, filenames)
    return [tuple(check_image(images[i], index=i, filenames=filenames).shape) for i in range(len(images))]


def _is_gray(arr: np.ndarray) -> bool:
    return arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1)


def _lazy_to_tensor(images, indices, size: int, in_chans: int | None, filenames, chunk_bytes: int) -> torch.Tensor:
    """``images[i]`` for ``i`` in ``indices``, read a chunk at a time, as ``(len(indices), C, size, size)`` uint8.

    A chunk holds decoded images until their float32 working copy reaches
    ``chunk_bytes``; its images are resized by shape group and written into the
    result, then dropped. ``in_chans=None``: 1 channel while every image is
    gray, widened to 3 (the gray ones replicated, as 3-channel conversion
    does) at the first colour image.
    """
    n = len(indices)
    if n == 0:
        raise ValueError("got an empty set of images")
    c = in_chans or 1
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    pending: list[tuple[int, np.ndarray]] = []
    held = 0

    def flush() -> None:
        groups: dict = {}
        for j, arr in pending:
            groups.setdefault(arr.shape, []).append((j, arr))
        for items in groups.values():
            _fill(out, torch.as_tensor([j for j, _ in items]), np.stack([a for _, a in items]), size, c)
        pending.clear()

    for j, i in enumerate(indices):
        arr = _to_uint8(check_image(images[int(i)], index=int(i), filenames=filenames))
        if in_chans is None and c == 1 and not _is_gray(arr):
            flush()
            out, c = out.repeat(1, 3, 1, 1), 3  # images j.. are overwritten below
        arr = _stack_channels(arr[None], c)[0]
        pending.append((j, arr))
        held += 4 * c * (arr.shape[0] * arr.shape[1] + size * size)
        if held >= chunk_bytes:
            flush()
            held = 0
    flush()
    return out


def images_to_tensor(
    images,
    *,
    size: int,
    in_chans: int | None,
    filenames: Sequence[str] | None = None,
    chunk_bytes: int | None = None,
    indices: Sequence[int] | None = None,
) -> torch.Tensor:
    """Convert images to one ``(N, in_chans, size, size)`` ``uint8`` CPU tensor.

    Images are converted chunk by chunk (images of one size at a time, a few
    images per chunk for large photos): only the uint8 result and one chunk's
    float working copy (about ``chunk_bytes``) are held, never a float copy of
    the whole set, nor a stacked copy of full-size images. A lazy sequence
    (:func:`is_lazy`, e.g. :class:`classicvision.datasets.LazyImages`) is read
    by index in order, each image once, and never materialized: at most one
    chunk of decoded images (about ``chunk_bytes / 4`` bytes of uint8 pixels)
    is alive at a time.

    Parameters
    ----------
    images : sequence of (H, W[, C]) arrays, lazy sequence, or (N, H, W[, C]) ndarray
        Grayscale, RGB or RGBA; ``uint8`` or float in ``[0, 1]``; any sizes.
    size : int
        Output height and width. Images of another size are resized with
        antialiased bilinear interpolation (Bradski, *OpenCV*, 2000, via
        ``torch.nn.functional.interpolate``); a non-square image is stretched to
        the square (its aspect ratio is not kept, nothing is cropped or padded).
    in_chans : {1, 3} or None
        Output channels: gray is replicated to 3, RGB is converted to gray with
        the BT.601 luma weights. None: 1 when every image is gray, else 3 (read
        the channels off the result).
    filenames : sequence of str, optional
        Used in error messages; for a lazy sequence with a ``filenames``
        attribute (one per image), that one by default.
    chunk_bytes : int or None, default=None
        Float32 working memory per resize chunk; None: :data:`CHUNK_BYTES`.
    indices : sequence of int, optional
        Convert only ``images[i]`` for these ``i`` (in this order); error
        messages name the images by their index in ``images``.

    Returns
    -------
    (N, in_chans, size, size) uint8 torch.Tensor
        ``N = len(indices)`` when given, else ``len(images)``. For the same
        images the values do not depend on the input's type (list, array or
        lazy sequence) nor on ``chunk_bytes``.

    Raises
    ------
    ValueError
        Empty input, or an invalid image (the message names its index / file).
    """
    if in_chans not in (1, 3, None):
        raise ValueError(f"in_chans must be 1, 3 or None, got {in_chans}")
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES
    if in_chans is None and isinstance(images, np.ndarray) and images.ndim in (3, 4):
        in_chans = 1 if images.ndim == 3 or images.shape[-1] == 1 else 3
    if indices is not None or in_chans is None or is_lazy(images):
        if not is_lazy(images) and not isinstance(images, np.ndarray):
            images = image_list(images)
        filenames = _lazy_filenames(images, filenames)
        idx = range(len(images)) if indices is None else indices
        return _lazy_to_tensor(images, idx, size, in_chans, filenames, chunk_bytes)
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim in (3, 4) and (
        images.ndim == 3 or images.shape[-1] in (1, 3, 4)
    ):
        n = images.shape[0]
        if n == 0:
            raise ValueError("got an empty set of images")
        h, w = images.shape[1:3]
        out = torch.empty((n, in_chans, size, size), dtype=torch.uint8)
        step = _chunk_len(h, w, size, in_chans, chunk_bytes)
        for i in range(0, n, step):
            arr = images[i : i + step]
            if arr.ndim == 4 and arr.shape[-1] == 4:
                arr = arr[..., :3]
            if arr.ndim == 4 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            _fill(out, slice(i, i + arr.shape[0]), arr, size, in_chans)
        return out

    images = image_list(images)  # views of an (N, H, W[, C]) array, or the caller's own arrays
    by_shape: dict = {}
    for i, im in enumerate(images):
        try:
            key = tuple(np.shape(im)[:2])
        except ValueError:  # ragged nested lists: check_image names the image
            key = ("bad", i)
        by_shape.setdefault(key, []).append(i)
    out = torch.empty((len(images), in_chans, size, size), dtype=torch.uint8)
    for key, idx in by_shape.items():
        h, w = key if len(key) == 2 and key[0] != "bad" else (size, size)
        step = _chunk_len(int(h), int(w), size, in_chans, chunk_bytes)
        for j in range(0, len(idx), step):
            part = idx[j : j + step]
            arr = np.stack([_one_image(images[i], i, filenames, in_chans) for i in part])
            _fill(out, torch.as_tensor(part), arr, size, in_chans)
    return out


def channel_stats(x: torch.Tensor, chunk: int | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, in ``[0, 1]`` units.

    Parameters
    ----------
    x : (N, C, H, W) uint8 tensor
    chunk : int, optional
        Images converted to float64 at a time; None: as many as fit in
        :data:`CHUNK_BYTES`.

    Returns
    -------
    mean, std : list of float, length C
        Computed in float64 over all pixels; ``std`` is floored at 1e-3 so a
        constant channel does not divide by zero.
    """
    c = x.shape[1]
    if chunk is None:
        chunk = max(1, CHUNK_BYTES // max(1, 8 * x[0].numel()))
    s = torch.zeros(c, dtype=torch.float64, device=x.device)
    s2 = torch.zeros(c, dtype=torch.float64, device=x.device)
    for i in range(0, x.shape[0], chunk):
        xf = x[i : i + chunk].to(torch.float64) / 255.0
        s += xf.sum((0, 2, 3))
        s2 += (xf * xf).sum((0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / count
    std = (s2 / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 ``(x / 255 - mean) / std`` (mean, std in [0, 1] units)."""
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (mean / std).view(1, -1, 1, 1)
    return x.to(torch.float32).mul_(scale).sub_(shift)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translation by up to ``padding`` pixels: reflect-pad, then crop back, per image.

    Parameters
    ----------
    x : (B, C, H, W) float tensor
    padding : int
    generator : torch.Generator, optional
        On ``x``'s device.

    Returns
    -------
    (B, C, H, W) tensor
    """
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    mode = "reflect" if padding < min(h, w) else "replicate"
    xp = F.pad(x, (padding, padding, padding, padding), mode=mode)
    dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    mask = torch.rand((x.shape[0], 1, 1, 1), device=x.device, generator=generator) < 0.5
    return torch.where(mask, x.flip(3), x)


class DeviceData:
    """A labelled image set held on one device as uint8, served in normalized batches.

    Parameters
    ----------
    x : (N, C, H, W) uint8 tensor
    y : (N,) integer tensor, optional
    mean, std : sequence of float, length C
        Normalization statistics in ``[0, 1]`` units.
    device : torch.device or str
    channels_last : bool
        Return batches in channels-last memory format.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, mean, std, device, channels_last: bool = False):
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = None if y is None else y.to(self.device, torch.int64)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.channels_last = bool(channels_last)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def _finish(self, xb: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        generator: torch.Generator | None = None,
        augment: BatchAugment | None = None,
        order: torch.Tensor | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Yield ``(images, labels)`` batches: float32, normalized, augmented on the device.

        Order per batch: ``augment``'s pixel stage (AutoAugment, RandAugment)
        on the uint8 images, normalization, random crop, flip, then
        ``augment``'s occlusions (Cutout, ...) and mixing (Mixup, CutMix).

        Parameters
        ----------
        batch_size : int
        shuffle : bool
            Random order (``torch.randperm`` with ``generator``).
        drop_last : bool
            Skip a last, smaller batch.
        crop_padding : int
            Random-crop translation range in pixels (0: none).
        flip : bool
            Random horizontal flips.
        generator : torch.Generator, optional
            Source of every random draw, on this data's device, so that runs
            repeat exactly.
        augment : cnn.augment.BatchAugment, optional
            Extra per-batch augmentations. With Mixup or CutMix the labels are
            soft targets, ``(B, n_classes)`` float rows summing to one.
        order : (M,) int64 tensor, optional
            The indices to serve, in this order (e.g. this rank's shard of a
            data-parallel epoch, :func:`cnn.distributed.shard_indices`);
            replaces ``shuffle``.
        """
        if order is None:
            n = len(self)
            order = torch.randperm(n, device=self.device, generator=generator) if shuffle else None
        else:
            order = order.to(self.device)
            n = int(order.shape[0])
        stop = n - (n % batch_size) if (drop_last and n >= batch_size) else n
        for i in range(0, stop, batch_size):
            idx = order[i : i + batch_size] if order is not None else slice(i, i + batch_size)
            xb = self.x[idx]
            if augment is not None and augment.pixels:
                xb = augment.on_pixels(xb, generator)
            xb = normalize(xb, self.mean, self.std)
            if crop_padding:
                xb = random_crop(xb, crop_padding, generator)
            if flip:
                xb = random_flip(xb, generator)
            yb = None if self.y is None else self.y[idx]
            if augment is not None:
                xb, yb = augment.on_normalized(xb, yb, generator)
            yield self._finish(xb), yb

    def num_batches(self, batch_size: int, drop_last: bool = False, n: int | None = None) -> int:
        """Number of batches :meth:`batches` yields (serving ``n`` indices of ``order``, when given)."""
        n = len(self) if n is None else int(n)
        if drop_last and n >= batch_size:
            return n // batch_size
        return -(-n // batch_size)
