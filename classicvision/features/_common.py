"""Machinery shared by the feature extractors.

Every extractor in :mod:`classicvision.features` is a scikit-learn transformer that
takes a sequence of images and returns one :class:`~classicvision.base.DescriptorSet`
per image.  This module holds the common base class (parameter validation, tags,
joblib over chunks of images) and small helpers (resizing, dense grids).
"""

from __future__ import annotations

from functools import partial
from numbers import Integral

import cv2
import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin

from ..base import DescriptorSet, check_images, is_lazy_sequence
from ..utils.validation import validate_estimator_params

__all__ = [
    "BaseExtractor",
    "bounded_shape",
    "empty_set",
    "normalized_positions",
    "resize_max_side",
]


def bounded_shape(shape, max_size: int | None) -> tuple:
    """``(height, width)`` of an image of ``shape`` after :func:`resize_max_side`.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W[, C])`` of the image.
    max_size : int or None
        Bound on the longer side in pixels; None means no bound.

    Returns
    -------
    (int, int)
    """
    h, w = int(shape[0]), int(shape[1])
    if max_size is None or max(h, w) <= max_size:
        return h, w
    factor = max_size / max(h, w)
    return max(1, int(round(h * factor))), max(1, int(round(w * factor)))


def resize_max_side(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """Downscale ``image`` (area interpolation) so that its longer side is ``max_size``.

    Images already small enough (and every image when ``max_size`` is None) are
    returned unchanged, not copied.

    Parameters
    ----------
    image : (H, W) or (H, W, C) ndarray
    max_size : int or None
        Bound on the longer side in pixels.

    Returns
    -------
    (h, w) or (h, w, C) ndarray
        ``(h, w) = bounded_shape(image.shape, max_size)``.
    """
    new_h, new_w = bounded_shape(image.shape, max_size)
    if (new_h, new_w) == image.shape[:2]:
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)


def no_input_features(estimator, input_features) -> None:
    """``get_feature_names_out`` of an extractor: images have no input feature names.

    Raises
    ------
    ValueError
        When ``input_features`` is given.
    """
    if input_features is not None:
        raise ValueError(
            f"{type(estimator).__name__} takes images, which have no input feature names; "
            f"call get_feature_names_out() without input_features (got {len(input_features)})"
        )


def normalized_positions(cx: np.ndarray, cy: np.ndarray, shape) -> np.ndarray:
    """Turn pixel-index centres into ``(x, y)`` positions in ``[0, 1]``.

    Pixel ``i`` is taken to span ``[i, i + 1)``, so a patch centred on pixel index
    ``c`` (possibly fractional) sits at ``(c + 0.5) / size``.

    Parameters
    ----------
    cx, cy : (n,) ndarray
        Column and row of each centre in pixel-index units.
    shape : tuple of int
        ``(height, width)`` of the image.

    Returns
    -------
    (n, 2) ndarray of float32
    """
    h, w = shape[:2]
    pos = np.empty((len(cx), 2), dtype=np.float32)
    pos[:, 0] = (np.asarray(cx, dtype=np.float64) + 0.5) / w
    pos[:, 1] = (np.asarray(cy, dtype=np.float64) + 0.5) / h
    np.clip(pos, 0.0, 1.0, out=pos)
    return pos


def _run_chunk(func, images) -> list:
    return [func(im) for im in images]


def _bounded_chunk(images, func, max_size) -> list:
    """``func`` on a chunk of images, each first downscaled to ``max_size`` (in the worker)."""
    return func([resize_max_side(im, max_size) for im in images])


#: Images (spread evenly) that ``BaseExtractor.fit`` decodes from a lazy sequence to
#: check them and learn the output width.
LAZY_FIT_SAMPLE = 64


def lazy_fit_sample(images, filenames=None):
    """What an extractor's ``fit`` checks: a lazy sequence's :data:`LAZY_FIT_SAMPLE` images
    spread over it, decoded (never the whole sequence); anything else as given.

    Returns
    -------
    images : the sample as a list of arrays, or ``images`` itself
    filenames : None for a sample (its positions are not the sequence's), else ``filenames``
    """
    if not is_lazy_sequence(images):
        return images, filenames
    n = len(images)
    idx = np.unique(np.linspace(0, n - 1, min(n, LAZY_FIT_SAMPLE)).astype(np.intp))
    return list(images[idx]), None


class BaseExtractor(TransformerMixin, BaseEstimator):
    """Base class of the image -> descriptor-set transformers.

    Subclasses implement ``_extract_function()`` (a picklable callable mapping one
    validated image to a :class:`DescriptorSet`), ``_min_size()`` and
    ``_n_features()``.  The base class validates parameters and images, and runs
    the extraction over chunks of images with joblib when ``n_jobs`` is set.

    An extractor with a ``max_size`` parameter (int or None) has every image whose
    longer side exceeds it downscaled first (:func:`resize_max_side`, area
    interpolation), inside the worker, before its extraction function sees it; so
    positions and ``DescriptorSet.shape`` refer to the downscaled image.
    """

    _parameter_constraints: dict = {"n_jobs": [Integral, None]}

    # -- to implement -------------------------------------------------------------
    def _extract_function(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _min_size(self) -> int:
        return 1

    def _n_features(self, images) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- sklearn API ----------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = []
        return tags

    def _check_params(self) -> None:
        """Checks beyond ``_parameter_constraints`` (overridden by subclasses)."""

    def _validate(self, images, filenames=None) -> list:
        validate_estimator_params(self)
        self._check_params()
        return check_images(images, min_size=self._min_size(), filenames=filenames)

    def fit(self, images, y=None, *, filenames=None):
        """Validate the parameters and the images; learn the output dimension.

        Parameters
        ----------
        images : sequence of (H, W) or (H, W, 3) ndarray, or (N, H, W[, 3]) ndarray
            The images (``uint8``, or floats in ``[0, 1]``).
        y : ignored
        filenames : sequence of str, optional
            Used to name an offending image in error messages.

        A lazy sequence (:func:`~classicvision.base.is_lazy_sequence`) is not decoded
        as a whole: :data:`LAZY_FIT_SAMPLE` images spread over it are checked and give
        the output width (the others are checked when transformed).

        Returns
        -------
        self
        """
        images, filenames = lazy_fit_sample(images, filenames)
        imgs = self._validate(images, filenames)
        self.n_features_out_ = int(self._n_features(imgs))
        return self

    def transform(self, images, *, filenames=None) -> list:
        """Extract the local descriptors of every image.

        Parameters
        ----------
        images : sequence of (H, W) or (H, W, 3) ndarray, or (N, H, W[, 3]) ndarray
        filenames : sequence of str, optional
            Used to name an offending image in error messages.

        Returns
        -------
        list of DescriptorSet
            One per image, descriptors ``float32``.
        """
        imgs = self._validate(images, filenames)
        return self._map(imgs)

    def _extract_chunk_function(self):
        """Callable mapping a list of images to their descriptor sets.

        The default applies ``_extract_function()`` to each image; extractors that
        can process several images at once (e.g. small images stacked together)
        override it.
        """
        return partial(_run_chunk, self._extract_function())

    def _map(self, imgs: list) -> list:
        func = self._extract_chunk_function()
        max_size = getattr(self, "max_size", None)
        if max_size is not None:
            func = partial(_bounded_chunk, func=func, max_size=int(max_size))
        n_jobs = effective_n_jobs(self.n_jobs) if self.n_jobs is not None else 1
        if n_jobs == 1 or len(imgs) < 2:
            return func(imgs)
        n_chunks = min(len(imgs), 4 * n_jobs)
        bounds = np.linspace(0, len(imgs), n_chunks + 1).astype(int)
        # threads by default: OpenCV and numpy release the GIL, and no image is copied
        parts = Parallel(n_jobs=n_jobs, prefer="threads")(
            delayed(func)(imgs[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a
        )
        return [d for part in parts for d in part]


def empty_set(dim: int, shape) -> DescriptorSet:
    """A descriptor set with no rows (used when an image yields nothing)."""
    return DescriptorSet(
        np.zeros((0, dim), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32), shape
    )
