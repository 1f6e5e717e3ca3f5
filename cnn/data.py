"""Image data for the CNN track: uint8 tensors held on the device, augmented per batch.

The whole training set is converted once, a few images at a time, to a
``(N, C, H, W)`` ``uint8`` tensor at the model's input size and moved to the device (4x smaller than float32, so
CIFAR-10 takes 150 MB). Every batch is then cast, normalized, randomly cropped
(with reflect padding) and flipped on the device, as airbench does, so no
per-batch host-to-device copy or DataLoader worker is needed.
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


def images_to_tensor(
    images,
    *,
    size: int,
    in_chans: int,
    filenames: Sequence[str] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> torch.Tensor:
    """Convert images to one ``(N, in_chans, size, size)`` ``uint8`` CPU tensor.

    Images are converted chunk by chunk (images of one size at a time, a few
    images per chunk for large photos): only the uint8 result and one chunk's
    float working copy (about ``chunk_bytes``) are held, never a float copy of
    the whole set, nor a stacked copy of full-size images.

    Parameters
    ----------
    images : sequence of (H, W[, C]) arrays, or (N, H, W[, C]) ndarray
        Grayscale, RGB or RGBA; ``uint8`` or float in ``[0, 1]``; any sizes.
    size : int
        Output height and width. Images of another size are resized with
        antialiased bilinear interpolation; a non-square image is stretched to
        the square (its aspect ratio is not kept, nothing is cropped or padded).
    in_chans : {1, 3}
        Output channels: gray is replicated to 3, RGB is converted to gray with
        the BT.601 luma weights.
    filenames : sequence of str, optional
        Used in error messages.
    chunk_bytes : int, default=CHUNK_BYTES
        Float32 working memory per resize chunk.

    Returns
    -------
    (N, in_chans, size, size) uint8 torch.Tensor

    Raises
    ------
    ValueError
        Empty input, or an invalid image (the message names its index / file).
    """
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
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
        """
        n = len(self)
        order = torch.randperm(n, device=self.device, generator=generator) if shuffle else None
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

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches :meth:`batches` yields."""
        n = len(self)
        if drop_last and n >= batch_size:
            return n // batch_size
        return -(-n // batch_size)
