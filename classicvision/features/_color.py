"""Colour SIFT descriptors (van de Sande, Gevers & Snoek 2010).

A dense SIFT descriptor is computed on every channel of a colour-transformed
image and the per-channel descriptors are concatenated (3 x 128 = 384-D).
"""

from __future__ import annotations

from functools import partial

import cv2
import numpy as np

from ..base import DescriptorSet, check_image
from ..utils.validation import StrOptions
from ._common import BaseExtractor, empty_set, normalized_positions, resize_max_side
from ._sift import DIM, DenseSIFT, _check_sizes, _dense_sift_gray, _stacked_sift_chunk

__all__ = ["ColorSIFT", "color_sift", "color_transform"]

COLORS = ("opponent", "rgb", "hsv", "transformed_rgb", "c")
_C_EPS = 0.01  # keeps O1/O3, O2/O3 finite on black pixels (O3 in [0, sqrt 3])


def color_transform(image: np.ndarray, color: str) -> np.ndarray:
    """Channels of ``image`` in the colour space used by a colour SIFT variant.

    Parameters
    ----------
    image : (H, W, 3) ndarray
        RGB, ``uint8`` or float in ``[0, 1]``. A gray ``(H, W)`` image is
        replicated into three equal channels.
    color : {'opponent', 'rgb', 'hsv', 'transformed_rgb', 'c'}
        ``'rgb'``: R, G, B. ``'opponent'``: O1 = (R - G) / sqrt 2,
        O2 = (R + G - 2B) / sqrt 6, O3 = (R + G + B) / sqrt 3. ``'c'`` (C-SIFT):
        O1 / O3, O2 / O3 and O3. ``'hsv'``: hue, saturation, value in ``[0, 1]``.
        ``'transformed_rgb'``: each channel standardized to zero mean and unit
        standard deviation over the image.

    Returns
    -------
    (3, H, W) ndarray of float32
    """
    arr = np.asarray(image)
    scale = 1.0 / 255.0 if arr.dtype == np.uint8 else 1.0
    rgb = arr.astype(np.float32) * np.float32(scale)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    if color == "rgb":
        chans = [r, g, b]
    elif color in ("opponent", "c"):
        o1 = (r - g) / np.float32(np.sqrt(2))
        o2 = (r + g - 2 * b) / np.float32(np.sqrt(6))
        o3 = (r + g + b) / np.float32(np.sqrt(3))
        if color == "opponent":
            chans = [o1, o2, o3]
        else:
            den = o3 + np.float32(_C_EPS)
            chans = [o1 / den, o2 / den, o3]
    elif color == "hsv":
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
        chans = [hsv[:, :, 0] / np.float32(360.0), hsv[:, :, 1], hsv[:, :, 2]]
    elif color == "transformed_rgb":
        mean = rgb.reshape(-1, 3).mean(axis=0)
        std = rgb.reshape(-1, 3).std(axis=0)
        norm = (rgb - mean) / np.maximum(std, 1e-6)
        chans = [norm[:, :, 0], norm[:, :, 1], norm[:, :, 2]]
    else:
        raise ValueError(f"color must be one of {COLORS}, got {color!r}")
    return np.ascontiguousarray(np.stack(chans), dtype=np.float32)


def _color_sift_set(image, color, sizes, step, contrast_threshold, rootsift, magnification, fast,
                    max_size) -> DescriptorSet:
    image = resize_max_side(image, max_size)
    chans = color_transform(image, color)
    parts = []
    for chan in chans:
        desc, cx, cy, scales = _dense_sift_gray(
            chan, sizes, step, contrast_threshold, rootsift, magnification, fast
        )
        parts.append(desc)
    shape = chans.shape[1:]
    if parts[0].shape[0] == 0:
        return empty_set(3 * DIM, shape)
    return DescriptorSet(
        np.concatenate(parts, axis=1), normalized_positions(cx, cy, shape), scales, shape
    )


def color_sift(
    image: np.ndarray,
    *,
    color: str = "opponent",
    sizes=(16,),
    step: int = 8,
    contrast_threshold: float = 0.005,
    rootsift: bool = False,
    magnification: float = 6.0,
    fast: bool = True,
    max_size: int | None = None,
) -> DescriptorSet:
    """Colour SIFT descriptors of one image (see :class:`ColorSIFT`).

    Returns
    -------
    DescriptorSet
        ``(n, 384)`` float32: the 128-D SIFT of each channel, concatenated.
    """
    if color not in COLORS:
        raise ValueError(f"color must be one of {COLORS}, got {color!r}")
    sizes = _check_sizes(sizes)
    image = check_image(image, min_size=max(sizes))
    return _color_sift_set(
        image, color, sizes, int(step), float(contrast_threshold), bool(rootsift),
        float(magnification), bool(fast), max_size,
    )


class ColorSIFT(DenseSIFT):
    """Dense colour SIFT: SIFT per channel of a colour space, concatenated (384-D).

    Parameters
    ----------
    color : {'opponent', 'rgb', 'hsv', 'transformed_rgb', 'c'}, default='opponent'
        Colour space (see :func:`color_transform`): OpponentSIFT, RGB-SIFT,
        HSV-SIFT, transformed-colour SIFT, C-SIFT.
    sizes, step, contrast_threshold, rootsift, magnification, fast, max_size, n_jobs
        As :class:`DenseSIFT`, applied to each channel.

    Attributes
    ----------
    n_features_out_ : int
        384.

    Notes
    -----
    * Gray images are replicated into three equal channels (so a data set mixing
      gray and colour images still works); their chromatic channels then have no
      gradient and give zero descriptors.
    * Each channel's descriptor is normalized (and contrast-thresholded)
      separately. The contrast threshold is in each channel's own units.
    * C-SIFT divides by ``O3 + 0.01`` to stay finite on black pixels.
    * As in :class:`DenseSIFT`, small same-shape images (e.g. CIFAR) are processed
      stacked, giving the same numbers as one image at a time.

    References
    ----------
    K. E. A. van de Sande, T. Gevers and C. G. M. Snoek, "Evaluating Color
    Descriptors for Object and Scene Recognition", IEEE TPAMI 32(9), 2010.
    https://doi.org/10.1109/TPAMI.2009.154
    """

    _parameter_constraints: dict = {
        **DenseSIFT._parameter_constraints,
        "color": [StrOptions(set(COLORS))],
    }

    def __init__(
        self,
        *,
        color="opponent",
        sizes=(16,),
        step=8,
        contrast_threshold=0.005,
        rootsift=False,
        magnification=6.0,
        fast=True,
        max_size=None,
        n_jobs=None,
    ):
        super().__init__(
            sizes=sizes, step=step, contrast_threshold=contrast_threshold, rootsift=rootsift,
            magnification=magnification, fast=fast, max_size=max_size, n_jobs=n_jobs,
        )
        self.color = color

    def _n_features(self, images) -> int:
        return 3 * DIM

    def _extract_chunk_function(self):
        if not self.fast:
            return BaseExtractor._extract_chunk_function(self)  # one image at a time
        params = self._sift_params()
        del params["fast"]  # the stacked kernel always uses the fast window
        return partial(
            _stacked_sift_chunk,
            one=self._extract_function(),
            channels=partial(color_transform, color=self.color),
            **params,
        )

    def _extract_function(self):
        return partial(_color_sift_set, color=self.color, **self._sift_params())
