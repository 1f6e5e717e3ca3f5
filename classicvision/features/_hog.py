"""Histograms of oriented gradients (Dalal & Triggs 2005), vectorized.

The numbers are those of :func:`skimage.feature.hog` (same gradient, same hard
orientation binning with the same bin edges, same cell averaging, same block
normalizations, same "channel with the largest gradient" rule for colour), computed
with whole-image numpy operations instead of a per-cell loop.
"""

from __future__ import annotations

from functools import lru_cache, partial
from numbers import Integral

import cv2
import numpy as np
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..base import DescriptorSet, check_image, image_name
from ..utils.validation import Interval, StrOptions
from ._common import BaseExtractor, bounded_shape, lazy_fit_sample, no_input_features, normalized_positions

__all__ = ["HOG", "hog"]

_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
_EPS = 1e-5  # as scikit-image


def _pair(value, name) -> tuple:
    if isinstance(value, (Integral, np.integer)):
        value = (int(value), int(value))
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if a < 1 or b < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return a, b


def _gradient(batch: np.ndarray):
    """Central-difference gradient (zero on the border rows/columns), as skimage.

    ``batch`` is ``(N, H, W)`` or ``(N, H, W, 3)``. Colour images keep, at each
    pixel, the gradient of the channel whose magnitude is largest (first channel on
    ties).
    """
    g_row = np.zeros_like(batch)
    g_col = np.zeros_like(batch)
    np.subtract(batch[:, 2:], batch[:, :-2], out=g_row[:, 1:-1])
    np.subtract(batch[:, :, 2:], batch[:, :, :-2], out=g_col[:, :, 1:-1])
    if batch.ndim == 4:
        # squared magnitude: exact for uint8 input, same argmax as the hypot
        mag2 = g_row * g_row
        mag2 += g_col * g_col
        best = mag2.argmax(axis=3)[..., None]
        g_row = np.take_along_axis(g_row, best, axis=3)[..., 0]
        g_col = np.take_along_axis(g_col, best, axis=3)[..., 0]
    return g_row, g_col


@lru_cache(maxsize=32)
def _hog_geometry(n_cr: int, n_cc: int, orientations: int, c_row: int, c_col: int):
    """Bin edges and each pixel's cell offset into the flat histogram (cached)."""
    # skimage compares against single-precision bin edges; use exactly those
    width32 = np.float32(180.0 / orientations)
    edges = (width32 * np.arange(orientations + 1, dtype=np.float32)).astype(np.float64)
    cell_r = (np.arange(n_cr * c_row) // c_row) * (n_cc * orientations)
    cell_c = (np.arange(n_cc * c_col) // c_col) * orientations
    return edges, cell_r[:, None] + cell_c[None, :]


def _cell_histograms(batch: np.ndarray, orientations: int, cell: tuple) -> np.ndarray:
    """(N, n_cells_row, n_cells_col, orientations) float64 orientation histograms."""
    c_row, c_col = cell
    n, h, w = batch.shape[:3]
    n_cr, n_cc = h // c_row, w // c_col
    g_row, g_col = _gradient(batch)
    # only pixels inside whole cells count (the gradient used the full image)
    g_row = g_row[:, : n_cr * c_row, : n_cc * c_col]
    g_col = g_col[:, : n_cr * c_row, : n_cc * c_col]
    magnitude = np.sqrt(g_row * g_row + g_col * g_col, dtype=np.float64)
    # skimage's orientation, rad2deg(arctan2(g_row, g_col)) % 180, in double precision,
    # without the slow floating-point remainder: 180 -> 0 and negatives + 180
    theta = np.rad2deg(np.arctan2(g_row, g_col, dtype=np.float64))
    theta[theta == 180.0] = 0.0
    np.add(theta, 180.0, out=theta, where=theta < 0)
    edges, cell_index = _hog_geometry(n_cr, n_cc, orientations, c_row, c_col)
    bins = (theta * (orientations / 180.0)).astype(np.intp)
    np.minimum(bins, orientations - 1, out=bins)
    bins -= theta < edges[bins]
    bins += theta >= edges[bins + 1]
    magnitude[bins >= orientations] = 0.0  # theta rounded up to 180: in no bin
    np.minimum(bins, orientations - 1, out=bins)
    bins += cell_index
    per_image = n_cr * n_cc * orientations
    if n > 1:
        bins += (np.arange(n) * per_image)[:, None, None]
    hist = np.bincount(bins.ravel(), weights=magnitude.ravel(), minlength=n * per_image)
    hist /= c_row * c_col
    return hist.reshape(n, n_cr, n_cc, orientations)


def _normalize_blocks(hist: np.ndarray, block: tuple, method: str) -> np.ndarray:
    """(N, n_blocks_row, n_blocks_col, b_row * b_col * orientations) normalized blocks."""
    b_row, b_col = block
    win = np.lib.stride_tricks.sliding_window_view(hist, (b_row, b_col), axis=(1, 2))
    # (N, nbr, nbc, orient, b_row, b_col) -> (N, nbr, nbc, b_row, b_col, orient)
    blocks = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3))
    blocks = blocks.reshape(blocks.shape[:3] + (-1,))
    if method == "L1":
        out = blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + _EPS)
    elif method == "L1-sqrt":
        out = np.sqrt(blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + _EPS))
    elif method == "L2":
        out = blocks / np.sqrt((blocks * blocks).sum(axis=-1, keepdims=True) + _EPS**2)
    else:  # L2-Hys
        out = blocks / np.sqrt((blocks * blocks).sum(axis=-1, keepdims=True) + _EPS**2)
        np.minimum(out, 0.2, out=out)
        out /= np.sqrt((out * out).sum(axis=-1, keepdims=True) + _EPS**2)
    return out


def _prepare(image: np.ndarray, transform_sqrt: bool, resize) -> np.ndarray:
    if resize is not None:
        h, w = image.shape[:2]
        rh, rw = resize
        if (h, w) != (rh, rw):
            interp = cv2.INTER_AREA if rh * rw < h * w else cv2.INTER_LINEAR
            image = cv2.resize(image, (rw, rh), interpolation=interp)
    # uint8 values stay on the 0-255 scale, as skimage.feature.hog does
    dtype = np.float32 if image.dtype == np.uint8 and not transform_sqrt else np.float64
    image = image.astype(dtype)
    if transform_sqrt:
        image = np.sqrt(image)
    return image


def _hog_blocks(batch, orientations, cell, block, block_norm):
    """Normalized blocks of a batch of prepared same-shape images."""
    h, w = batch.shape[1:3]
    n_br = h // cell[0] - block[0] + 1
    n_bc = w // cell[1] - block[1] + 1
    if n_br <= 0 or n_bc <= 0:
        raise ValueError(
            f"image of {h}x{w} pixels is too small for one HOG block "
            f"({block[0] * cell[0]}x{block[1] * cell[1]} pixels)"
        )
    hist = _cell_histograms(batch, orientations, cell)
    return _normalize_blocks(hist, block, block_norm)


@lru_cache(maxsize=32)
def _block_positions(h, w, cell, block):
    n_br = h // cell[0] - block[0] + 1
    n_bc = w // cell[1] - block[1] + 1
    cy = np.arange(n_br) * cell[0] + block[0] * cell[0] / 2.0 - 0.5
    cx = np.arange(n_bc) * cell[1] + block[1] * cell[1] / 2.0 - 0.5
    cyy, cxx = np.meshgrid(cy, cx, indexing="ij")
    positions = normalized_positions(cxx.ravel(), cyy.ravel(), (h, w))
    scale = float(max(block[0] * cell[0], block[1] * cell[1]))
    return positions, np.full(n_br * n_bc, scale, np.float32)


_STACK_PIXELS = 1 << 20  # pixels of one batch of same-shape images


def _hog_chunk(images, orientations, cell, block, block_norm, transform_sqrt, resize) -> list:
    """HOG descriptor sets of a list of images, same-shape images batched."""
    prepared = [_prepare(im, transform_sqrt, resize) for im in images]
    out = [None] * len(images)
    groups: dict = {}
    for i, im in enumerate(prepared):
        groups.setdefault((im.shape, im.dtype.str), []).append(i)
    for (shape, _), idx in groups.items():
        h, w = shape[:2]
        per_batch = max(1, _STACK_PIXELS // (h * w))
        positions, scales = _block_positions(h, w, cell, block)
        for a in range(0, len(idx), per_batch):
            part = idx[a : a + per_batch]
            batch = np.stack([prepared[i] for i in part])
            blocks = _hog_blocks(batch, orientations, cell, block, block_norm)
            blocks = blocks.reshape(len(part), -1, blocks.shape[-1]).astype(np.float32)
            for k, i in enumerate(part):
                out[i] = DescriptorSet(blocks[k], positions.copy(), scales.copy(), (h, w))
    return out


def hog(
    image: np.ndarray,
    *,
    orientations: int = 9,
    pixels_per_cell=(8, 8),
    cells_per_block=(2, 2),
    block_norm: str = "L2-Hys",
    transform_sqrt: bool = False,
) -> DescriptorSet:
    """HOG block descriptors of one image.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        ``uint8`` (used on its 0-255 scale, as :func:`skimage.feature.hog` does) or
        float. Colour images use, per pixel, the channel with the strongest gradient.
    orientations : int, default=9
        Number of unsigned orientation bins over [0, 180) degrees.
    pixels_per_cell : int or (int, int), default=(8, 8)
        Cell size ``(rows, cols)`` in pixels.
    cells_per_block : int or (int, int), default=(2, 2)
        Block size ``(rows, cols)`` in cells; blocks overlap with a stride of one cell.
    block_norm : {'L1', 'L1-sqrt', 'L2', 'L2-Hys'}, default='L2-Hys'
        Block normalization (eps = 1e-5, as scikit-image).
    transform_sqrt : bool, default=False
        Square-root (gamma) compression of the image first.

    Returns
    -------
    DescriptorSet
        One ``cells_per_block[0] * cells_per_block[1] * orientations`` descriptor per
        block, in row-major block order; positions are block centres, scales the
        block side in pixels (the larger one if blocks are not square). Concatenated,
        the rows equal ``skimage.feature.hog(..., feature_vector=True)``.

    References
    ----------
    N. Dalal and B. Triggs, "Histograms of Oriented Gradients for Human Detection",
    CVPR 2005. https://doi.org/10.1109/CVPR.2005.177
    """
    if block_norm not in _BLOCK_NORMS:
        raise ValueError(f"block_norm must be one of {_BLOCK_NORMS}, got {block_norm!r}")
    if not isinstance(orientations, (Integral, np.integer)) or orientations < 1:
        raise ValueError(f"orientations must be a positive int, got {orientations!r}")
    cell = _pair(pixels_per_cell, "pixels_per_cell")
    block = _pair(cells_per_block, "cells_per_block")
    image = check_image(image)
    return _hog_set(image, int(orientations), cell, block, block_norm, bool(transform_sqrt), None)


def _hog_set(image, orientations, cell, block, block_norm, transform_sqrt, resize) -> DescriptorSet:
    return _hog_chunk([image], orientations, cell, block, block_norm, transform_sqrt, resize)[0]


class HOG(BaseExtractor):
    """Histogram-of-oriented-gradients extractor (Dalal & Triggs 2005).

    Gives the same numbers as :func:`skimage.feature.hog` with the same parameters
    (tested to float32 precision), several times faster: the gradient, the
    orientation binning, the cell histograms (one ``np.bincount``) and the block
    normalization are whole-image array operations.

    Parameters
    ----------
    orientations : int, default=9
        Number of unsigned orientation bins over [0, 180) degrees.
    pixels_per_cell : int or (int, int), default=(8, 8)
        Cell size ``(rows, cols)`` in pixels.
    cells_per_block : int or (int, int), default=(2, 2)
        Block size in cells; blocks overlap with a one-cell stride.
    block_norm : {'L1', 'L1-sqrt', 'L2', 'L2-Hys'}, default='L2-Hys'
        Block normalization.
    transform_sqrt : bool, default=False
        Square-root (gamma) compression of the image first.
    resize : (int, int) or None, default=None
        ``(height, width)`` every image is resized to first (area interpolation when
        shrinking, bilinear when enlarging). Needed by ``output="vector"`` when the
        images differ in size.
    max_size : int or None, default=None
        Images whose longer side exceeds this many pixels are downscaled to it first
        (area interpolation, aspect ratio kept; before ``resize``). None: no bound.
    output : {'descriptors', 'vector'}, default='descriptors'
        ``'descriptors'``: a list of :class:`~classicvision.base.DescriptorSet`, one
        row per block (positions = block centres). ``'vector'``: a 2-D
        ``(n_images, n_features)`` float32 array, each row the flattened blocks in
        scikit-image's order (all images must then give the same number of blocks).
    n_jobs : int or None, default=None
        Parallel jobs (joblib) over chunks of images; ``None`` means 1.

    Attributes
    ----------
    n_features_out_ : int
        Descriptor length (``'descriptors'``) or vector length (``'vector'``).
    image_shape_ : tuple of int
        ``(height, width)`` the vector length refers to (after ``max_size`` and
        ``resize``).
    orientations_ : int
        Orientation bins.
    cell_size_ : (int, int)
        Cell ``(rows, cols)`` in pixels, from ``pixels_per_cell``.
    block_size_ : (int, int)
        Block ``(rows, cols)`` in cells, from ``cells_per_block``.
    resize_ : (int, int) or None
        From ``resize``.
    blocks_shape_ : (int, int) or None
        Blocks ``(rows, cols)`` per image (``output='vector'``; else None).

    :meth:`transform` uses these fitted values (as they were at :meth:`fit`),
    so ``set_params`` after ``fit`` cannot silently change the output width; a
    ``HOG`` that was never fitted uses its parameters directly.

    Notes
    -----
    Like scikit-image (and unlike Dalal & Triggs), orientation votes are not
    interpolated between bins or cells, and the Gaussian block window is not used.
    Pixels beyond the last whole cell are ignored.

    References
    ----------
    N. Dalal and B. Triggs, "Histograms of Oriented Gradients for Human Detection",
    CVPR 2005. https://doi.org/10.1109/CVPR.2005.177

    Examples
    --------
    >>> import numpy as np
    >>> from classicvision.features import HOG
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    >>> HOG(output="vector").fit_transform(images).shape
    (2, 324)
    """

    _parameter_constraints: dict = {
        **BaseExtractor._parameter_constraints,
        "orientations": [Interval(Integral, 1, None, closed="left")],
        "pixels_per_cell": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "cells_per_block": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "block_norm": [StrOptions(set(_BLOCK_NORMS))],
        "transform_sqrt": ["boolean"],
        "resize": [tuple, list, None],
        "output": [StrOptions({"descriptors", "vector"})],
        "max_size": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        orientations=9,
        pixels_per_cell=(8, 8),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        transform_sqrt=False,
        resize=None,
        output="descriptors",
        max_size=None,
        n_jobs=None,
    ):
        self.orientations = orientations
        self.pixels_per_cell = pixels_per_cell
        self.cells_per_block = cells_per_block
        self.block_norm = block_norm
        self.transform_sqrt = transform_sqrt
        self.resize = resize
        self.output = output
        self.max_size = max_size
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        if hasattr(self, "cell_size_"):  # fitted: keep the geometry of fit
            self._orientations = self.orientations_
            self._cell, self._block, self._resize = self.cell_size_, self.block_size_, self.resize_
            return
        self._orientations = int(self.orientations)
        self._cell = _pair(self.pixels_per_cell, "pixels_per_cell")
        self._block = _pair(self.cells_per_block, "cells_per_block")
        self._resize = None if self.resize is None else _pair(self.resize, "resize")
        if self._resize is None and self.max_size is not None:
            need = max(self._block[0] * self._cell[0], self._block[1] * self._cell[1])
            if self.max_size < need:
                raise ValueError(
                    f"HOG max_size={self.max_size} is smaller than one HOG block "
                    f"({self._block[0] * self._cell[0]}x{self._block[1] * self._cell[1]} pixels)"
                )

    def _min_size(self) -> int:
        return 1 if self._resize is not None else min(
            self._block[0] * self._cell[0], self._block[1] * self._cell[1]
        )

    def _extract_chunk_function(self):
        return partial(
            _hog_chunk,
            orientations=self._orientations,
            cell=self._cell,
            block=self._block,
            block_norm=self.block_norm,
            transform_sqrt=bool(self.transform_sqrt),
            resize=self._resize,
        )

    def _extract_function(self):
        return partial(
            _hog_set,
            orientations=self._orientations,
            cell=self._cell,
            block=self._block,
            block_norm=self.block_norm,
            transform_sqrt=bool(self.transform_sqrt),
            resize=self._resize,
        )

    def _vector_shape(self, imgs, filenames=None) -> tuple:
        """Common (h, w) after ``max_size`` and resizing, or a clear error."""
        if self._resize is not None:
            return self._resize
        shape = bounded_shape(imgs[0].shape, self.max_size)
        for i, im in enumerate(imgs):
            other = bounded_shape(im.shape, self.max_size)
            if other != shape:
                bound = "" if self.max_size is None else f" (after max_size={self.max_size})"
                raise ValueError(
                    f"HOG(output='vector') needs images of one size{bound}: "
                    f"{image_name(0, filenames)} is {shape[0]}x{shape[1]} but "
                    f"{image_name(i, filenames)} is {other[0]}x{other[1]}; pass "
                    "resize=(height, width) or use output='descriptors'"
                )
        return shape

    def _check_sizes(self, imgs, filenames=None) -> None:
        if self._resize is not None:
            shapes = [self._resize]
            names = ["resize"]
        else:
            shapes = [bounded_shape(im.shape, self.max_size) for im in imgs]
            names = [image_name(i, filenames) for i in range(len(imgs))]
        need = (self._block[0] * self._cell[0], self._block[1] * self._cell[1])
        for name, (h, w) in zip(names, shapes):
            if h < need[0] or w < need[1]:
                raise ValueError(
                    f"{name} is {h}x{w} pixels, smaller than one HOG block "
                    f"({need[0]}x{need[1]} pixels)"
                )

    def _n_blocks(self, shape) -> tuple:
        return (
            shape[0] // self._cell[0] - self._block[0] + 1,
            shape[1] // self._cell[1] - self._block[1] + 1,
        )

    def fit(self, images, y=None, *, filenames=None):
        """Validate parameters and images; record the output length.

        Parameters
        ----------
        images : sequence of (H, W) or (H, W, 3) ndarray, or (N, H, W[, 3]) ndarray
        y : ignored
        filenames : sequence of str, optional
            Used to name an offending image in error messages.

        A lazy sequence is not decoded as a whole: as in ``BaseExtractor.fit``, a
        sample of ``LAZY_FIT_SAMPLE`` images spread over it is checked and gives the
        geometry (the others are checked when transformed).

        Returns
        -------
        self
        """
        for attr in ("orientations_", "cell_size_", "block_size_", "resize_"):
            self.__dict__.pop(attr, None)  # a new fit derives the geometry afresh
        images, filenames = lazy_fit_sample(images, filenames)  # a lazy sequence: a sample, not all of it
        imgs = self._validate(images, filenames)
        self._check_sizes(imgs, filenames)
        d = self._block[0] * self._block[1] * self._orientations
        if self.output == "vector":
            shape = self._vector_shape(imgs, filenames)
            nb = self._n_blocks(shape)
            self.image_shape_ = tuple(int(v) for v in shape)
            self.blocks_shape_ = (int(nb[0]), int(nb[1]))
            self.n_features_out_ = int(nb[0] * nb[1] * d)
        else:
            self.image_shape_ = None if self._resize is None else self._resize
            self.blocks_shape_ = None
            self.n_features_out_ = int(d)
        self.orientations_ = self._orientations
        self.cell_size_ = self._cell
        self.block_size_ = self._block
        self.resize_ = self._resize
        return self

    @available_if(lambda self: self.output == "vector")
    def get_feature_names_out(self, input_features=None):
        """Names of the ``output='vector'`` features, in the order of the vector.

        ``hog_block{i}_{j}_cell{r}_{c}_ori{k}``: orientation bin ``k`` of cell
        ``(r, c)`` (within its block) of the block in row ``i``, column ``j``;
        blocks in row-major order, as scikit-image flattens them.

        Parameters
        ----------
        input_features : None
            Images have no input feature names; must be None.

        Returns
        -------
        (n_features_out_,) ndarray of str (object dtype)
        """
        check_is_fitted(self, "blocks_shape_")
        no_input_features(self, input_features)
        nbr, nbc = self.blocks_shape_
        br, bc = self.block_size_
        names = [
            f"hog_block{i}_{j}_cell{r}_{c}_ori{k}"
            for i in range(nbr) for j in range(nbc)
            for r in range(br) for c in range(bc) for k in range(self.orientations_)
        ]
        return np.asarray(names, dtype=object)

    def transform(self, images, *, filenames=None):
        """HOG descriptors (``output='descriptors'``) or vectors (``output='vector'``).

        Parameters
        ----------
        images : sequence of (H, W) or (H, W, 3) ndarray, or (N, H, W[, 3]) ndarray
        filenames : sequence of str, optional
            Used to name an offending image in error messages.

        Returns
        -------
        list of DescriptorSet, or (n_images, n_features) ndarray of float32
        """
        imgs = self._validate(images, filenames)
        self._check_sizes(imgs, filenames)
        if self.output == "vector":
            shape = self._vector_shape(imgs, filenames)
            fitted = getattr(self, "image_shape_", None)
            if fitted is not None and tuple(shape) != tuple(fitted):
                raise ValueError(
                    f"HOG(output='vector') was fitted on {fitted[0]}x{fitted[1]} images but got "
                    f"{shape[0]}x{shape[1]}; pass resize=(height, width)"
                )
        sets = self._map(imgs)
        if self.output == "vector":
            return np.stack([s.descriptors.ravel() for s in sets]).astype(np.float32, copy=False)
        return sets
