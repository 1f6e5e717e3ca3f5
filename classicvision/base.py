"""Public data types and input checks shared by every stage of the classic track.

The classic pipeline passes two kinds of objects between its steps:

* **images**: a sequence of ``(H, W)`` or ``(H, W, 3)`` ``uint8`` arrays, or one
  ``(N, H, W[, 3])`` array when all images share a shape (what the dataset loaders
  return);
* **descriptor sets**: one :class:`DescriptorSet` per image, produced by the
  extractors in :mod:`classicvision.features` and consumed by the encoders in
  :mod:`classicvision.encoding`.

This module is public: the CNN track (:mod:`cnn.data`), the benchmarks and
user code use the same types and checks as the library's own steps.

=============================  ================================================
:class:`DescriptorSet`         local descriptors of one image, with positions
                               and scales
:func:`check_image`            validate one image (shape, dtype, value range)
:func:`check_images`           validate a sequence of images
:func:`image_list`             the images of a sequence or an ``(N, H, W[, C])``
                               array as a list, unchecked
:func:`check_descriptor_sets`  validate a sequence of :class:`DescriptorSet`
:func:`to_gray`                float32 grayscale in ``[0, 1]``
:func:`image_name`             how error messages name an image
=============================  ================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DescriptorSet",
    "check_images",
    "check_image",
    "check_descriptor_sets",
    "image_list",
    "to_gray",
    "image_name",
    "is_lazy_sequence",
]


@dataclass
class DescriptorSet:
    """Local descriptors of one image, with where and at what scale they were taken.

    Parameters
    ----------
    descriptors : (n, d) ndarray of float32
        One row per local descriptor.
    positions : (n, 2) ndarray of float32
        Patch centres as ``(x, y)``, normalized to ``[0, 1]`` by the image width
        and height, so that spatial pooling does not depend on the image size.
    scales : (n,) ndarray of float32
        Patch side (or SIFT bin size times 4) in pixels.
    image_shape : tuple of int
        ``(height, width)`` of the image the descriptors come from.

    Notes
    -----
    An image can legitimately yield zero descriptors (``n == 0``); encoders then
    produce an all-zero code for it rather than failing.
    """

    descriptors: np.ndarray
    positions: np.ndarray
    scales: np.ndarray
    image_shape: tuple = field(default=(0, 0))

    def __post_init__(self) -> None:
        d = np.asarray(self.descriptors)
        if d.ndim != 2:
            raise ValueError(f"descriptors must be 2-D (n, d), got shape {d.shape}")
        p = np.asarray(self.positions, dtype=np.float32)
        if p.shape != (d.shape[0], 2):
            raise ValueError(
                f"positions must have shape ({d.shape[0]}, 2), got {p.shape}"
            )
        s = np.asarray(self.scales, dtype=np.float32).reshape(-1)
        if s.shape[0] != d.shape[0]:
            raise ValueError(f"scales must have {d.shape[0]} entries, got {s.shape[0]}")
        self.descriptors = d
        self.positions = p
        self.scales = s
        self.image_shape = tuple(int(v) for v in self.image_shape)

    def __len__(self) -> int:
        return int(self.descriptors.shape[0])

    @property
    def n_features(self) -> int:
        """Descriptor dimension ``d``."""
        return int(self.descriptors.shape[1])

    def subset(self, index) -> DescriptorSet:
        """Return the descriptors selected by ``index`` (a mask or indices)."""
        return DescriptorSet(
            self.descriptors[index], self.positions[index], self.scales[index], self.image_shape
        )

    def with_descriptors(self, descriptors: np.ndarray) -> DescriptorSet:
        """Same positions and scales, new descriptor rows (e.g. after PCA)."""
        return DescriptorSet(descriptors, self.positions, self.scales, self.image_shape)


def image_name(index: int, filenames: Sequence[str] | None = None) -> str:
    """How error messages name image ``index``: its file name when known.

    Parameters
    ----------
    index : int
        Position of the image in its sequence.
    filenames : (N,) sequence of str or None, default=None
        File names of the images; used when ``index`` is inside it.

    Returns
    -------
    name : str
        ``"image 3"``, or ``"image 3 (cat/003.jpg)"`` with a file name.
    """
    if filenames is not None and 0 <= index < len(filenames):
        return f"image {index} ({filenames[index]})"
    return f"image {index}"


def check_image(
    image: ArrayLike, *, index: int = 0, min_size: int = 1, filenames: Sequence[str] | None = None
) -> np.ndarray:
    """Validate one image and return it as a contiguous ``uint8`` or float array.

    Accepts ``(H, W)`` grayscale, ``(H, W, 1)``, ``(H, W, 3)`` RGB and ``(H, W, 4)``
    RGBA (the alpha channel is dropped). Floating-point images must be finite
    and in ``[0, 1]``; they are kept as they are.

    Parameters
    ----------
    image : array-like of shape (H, W) or (H, W, C)
    index : int
        Position in the input sequence, used in error messages.
    min_size : int
        Smallest allowed height and width (e.g. a descriptor's patch size).
    filenames : (N,) sequence of str, optional
        File names of the images, used in error messages.

    Returns
    -------
    image : (H, W) or (H, W, 3) ndarray

    Raises
    ------
    ValueError
        If the image is empty, has an unsupported number of dimensions or
        channels, is smaller than ``min_size``, has integer values outside
        ``[0, 255]``, or float values that are NaN, infinite or outside
        ``[0, 1]`` (the message names the image: index, and file name when
        ``filenames`` is given).

    Notes
    -----
    The value checks are two reductions (``min`` and ``max``) over the image,
    with no temporary copy; NaN propagates through both, so non-finite values
    cost nothing extra to detect.
    """
    name = image_name(index, filenames)
    try:
        arr = np.asarray(image)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} is not an array: {exc}") from exc
    if arr.dtype == object or arr.size == 0:
        raise ValueError(f"{name} is empty or not a numeric array (shape {arr.shape})")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} has unsupported dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim == 3 and arr.shape[2] != 3:
        raise ValueError(
            f"{name} has {arr.shape[2]} channels; expected 1 (gray), 3 (RGB) or 4 (RGBA)"
        )
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be (H, W) or (H, W, C), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{name} has integer values outside [0, 255]")
        arr = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        lo, hi = arr.min(), arr.max()  # NaN propagates; +-inf shows up as lo or hi
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(
                f"{name} has non-finite values (NaN or infinity); float images must be "
                "finite and in [0, 1]"
            )
        if lo < 0 or hi > 1:
            hint = " (divide 0-255 images by 255, or pass them as uint8)" if hi > 1 else ""
            raise ValueError(
                f"{name} has float values outside [0, 1] (min {float(lo):.6g}, "
                f"max {float(hi):.6g}); float images must be in [0, 1]{hint}"
            )
    h, w = arr.shape[:2]
    if h < min_size or w < min_size:
        raise ValueError(
            f"{name} is {h}x{w} pixels, smaller than the {min_size}x{min_size} "
            "needed by this extractor's patch"
        )
    return np.ascontiguousarray(arr)


def is_lazy_sequence(images) -> bool:
    """Whether ``images`` is a lazy image sequence, decoded on access.

    True for :class:`classicvision.datasets.LazyImages` and anything like it: not a
    list, tuple or array, with ``len``, indexing and slicing (which give a lazy subset
    without decoding) and a ``fingerprint()`` naming its files. The estimators slice
    such a sequence into chunks and never decode it as a whole.

    Parameters
    ----------
    images : object

    Returns
    -------
    bool
    """
    return (not isinstance(images, (list, tuple, np.ndarray)) and hasattr(images, "fingerprint")
            and hasattr(images, "__len__") and hasattr(images, "__getitem__"))


def check_images(images, *, min_size: int = 1, filenames: Sequence[str] | None = None) -> list[np.ndarray]:
    """Validate a sequence of images (see :func:`check_image`).

    Parameters
    ----------
    images : sequence of array-like, or ndarray of shape (N, H, W[, C])
    min_size : int
        Smallest allowed height and width.
    filenames : (N,) sequence of str, optional
        Used to name the offending file in error messages.

    Returns
    -------
    images : list of N ndarray of shape (H, W) or (H, W, 3)

    Raises
    ------
    TypeError, ValueError
        As :func:`image_list` (not a sequence, or no image) and :func:`check_image`
        (an invalid image, named in the message).
    """
    out = [check_image(im, index=i, min_size=min_size, filenames=filenames)
           for i, im in enumerate(image_list(images))]
    return out


def image_list(images) -> list:
    """The images of a sequence or an ``(N, H, W[, C])`` array, as a list.

    No copy is made (views of the array, or the caller's own arrays), and the
    images themselves are not checked (see :func:`check_image`).

    Parameters
    ----------
    images : sequence of array-like, or ndarray of shape (N, H, W[, C])

    Returns
    -------
    images : list of N array-like

    Raises
    ------
    TypeError
        ``images`` is not a sequence (a string, a scalar).
    ValueError
        One 2-D array (a single image), an array of another rank, or no image.
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 2 and images.dtype != object:
            raise ValueError(
                f"expected a sequence of images, got one 2-D array of shape {images.shape}; "
                "wrap a single image in a list"
            )
        if images.ndim not in (1, 3, 4):
            raise ValueError(f"images array must be (N, H, W[, C]), got shape {images.shape}")
    elif isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise TypeError(f"expected a sequence of images, got {type(images).__name__}")
    out = list(images)
    if not out:
        raise ValueError("got an empty sequence of images")
    return out


def check_descriptor_sets(X) -> list[DescriptorSet]:
    """Validate a sequence of :class:`DescriptorSet` with one common dimension.

    Parameters
    ----------
    X : sequence of N DescriptorSet
        One set of ``(n_i, d)`` descriptors per image, ``d`` common to all.

    Returns
    -------
    sets : list of N DescriptorSet

    Raises
    ------
    TypeError
        If an element is not a :class:`DescriptorSet`.
    ValueError
        If the sequence is empty or descriptor dimensions differ.
    """
    if isinstance(X, DescriptorSet):
        raise TypeError("expected a sequence of DescriptorSet, got a single DescriptorSet")
    sets = list(X)
    if not sets:
        raise ValueError("got an empty sequence of descriptor sets")
    dims = set()
    for i, s in enumerate(sets):
        if not isinstance(s, DescriptorSet):
            raise TypeError(
                f"element {i} is a {type(s).__name__}, not a DescriptorSet; "
                "put a feature extractor (classicvision.features) before the encoder"
            )
        dims.add(s.n_features)
    if len(dims) > 1:
        raise ValueError(f"descriptor sets have different dimensions: {sorted(dims)}")
    return sets


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a float32 ``(H, W)`` grayscale image in ``[0, 1]``.

    RGB is converted with the ITU-R BT.601 luma weights (as OpenCV and
    scikit-image's ``rgb2gray`` up to rounding).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        ``uint8`` (scaled by 1/255) or float in ``[0, 1]``.

    Returns
    -------
    gray : (H, W) ndarray of float32
    """
    arr = np.asarray(image)
    scale = 1.0 / 255.0 if arr.dtype == np.uint8 else 1.0
    arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.ascontiguousarray(arr * scale, dtype=np.float32)
