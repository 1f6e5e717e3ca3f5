"""Local binary patterns (Ojala et al. 2002) and their histograms, vectorized.

The codes are bit-for-bit those of :func:`skimage.feature.local_binary_pattern`
(same neighbour positions rounded to 5 decimals, same bilinear interpolation with
zero padding, evaluated in float64 with the same operation order), computed one
neighbour at a time over the whole image with numpy instead of one pixel at a
time. Pattern classes come from a lookup table, histograms from one ``bincount``.
"""

from __future__ import annotations

from functools import lru_cache, partial
from numbers import Integral, Real

import cv2
import numpy as np
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..base import DescriptorSet, check_image
from ..utils.validation import Interval, StrOptions
from ._common import BaseExtractor, no_input_features, normalized_positions

__all__ = ["LBP", "lbp", "lbp_codes", "lbp_n_bins"]

METHODS = ("uniform", "riu2", "ror", "default")
# our method name -> scikit-image's
SKIMAGE_METHOD = {"uniform": "nri_uniform", "riu2": "uniform", "ror": "ror", "default": "default"}
_MAX_LUT_P = 16


def _pattern_classes(bits: list, P: int, method: str) -> np.ndarray:
    """Class of each pattern given its P bit arrays (bit i = neighbour i >= centre).

    Follows scikit-image's definitions: transitions are counted along the open
    chain 0..P-1 (for these codes the same uniformity test as the circular count).
    """
    if method == "default":
        code = np.zeros(bits[0].shape, np.int64)
        for i, b in enumerate(bits):
            code |= b.astype(np.int64) << i
        return code
    if method == "ror":
        code = np.zeros(bits[0].shape, np.int64)
        for i, b in enumerate(bits):
            code |= b.astype(np.int64) << i
        best = code.copy()
        rot = code
        for _ in range(1, P):
            rot = (rot >> 1) | ((rot & 1) << (P - 1))
            np.minimum(best, rot, out=best)
        return best
    n_ones = np.zeros(bits[0].shape, np.int64)
    changes = np.zeros(bits[0].shape, np.int64)
    for i, b in enumerate(bits):
        n_ones += b
        if i + 1 < P:
            changes += b != bits[i + 1]
    uniform = changes <= 2
    if method == "riu2":
        return np.where(uniform, n_ones, P + 1)
    # non-rotation-invariant uniform patterns (u2): P (P - 1) + 3 classes
    stack = np.stack([np.asarray(b, bool) for b in bits])
    first_one = stack.argmax(axis=0)
    first_zero = (~stack).argmax(axis=0)
    rot_index = np.where(first_one == 0, n_ones - first_zero, P - first_one)
    code = 1 + (n_ones - 1) * P + rot_index
    code = np.where(n_ones == 0, 0, code)
    code = np.where(n_ones == P, P * (P - 1) + 1, code)
    return np.where(uniform, code, P * (P - 1) + 2)


@lru_cache(maxsize=16)
def _lookup(P: int, method: str):
    """(codes of the 2**P patterns as scikit-image, compact bin index of each)."""
    allp = np.arange(2**P, dtype=np.int64)
    bits = [((allp >> i) & 1).astype(bool) for i in range(P)]
    codes = _pattern_classes(bits, P, method)
    if method == "ror":
        values, bins = np.unique(codes, return_inverse=True)
    else:
        bins = codes
    dtype = np.uint8 if bins.max() < 256 else np.uint16
    return codes.astype(np.float64), bins.astype(dtype)


def lbp_n_bins(P: int, method: str) -> int:
    """Histogram length for ``P`` neighbours and ``method``."""
    if method == "riu2":
        return P + 2
    if method == "uniform":
        return P * (P - 1) + 3
    if method == "default":
        return 2**P
    return int(_lookup(P, method)[1].max()) + 1


def _offsets(P: int, R: float):
    rr = -R * np.sin(2 * np.pi * np.arange(P, dtype=np.float64) / P)
    cc = R * np.cos(2 * np.pi * np.arange(P, dtype=np.float64) / P)
    return np.round(rr, 5), np.round(cc, 5)


def _neighbour_bits(image: np.ndarray, P: int, R: float) -> list:
    """P boolean arrays: neighbour i (bilinear, zero outside) >= centre pixel."""
    img = np.ascontiguousarray(image, dtype=np.float64)
    h, w = img.shape
    pad = int(np.ceil(R)) + 1
    padded = np.zeros((h + 2 * pad, w + 2 * pad), np.float64)
    padded[pad : pad + h, pad : pad + w] = img
    rows = np.arange(h, dtype=np.float64)
    cols = np.arange(w, dtype=np.float64)
    rp, cp = _offsets(P, R)
    bits = []
    for i in range(P):
        # exactly scikit-image's arithmetic: per-row / per-column fractional parts
        r_pos = rows + rp[i]
        c_pos = cols + cp[i]
        fr = int(np.floor(rp[i]))
        fc = int(np.floor(cp[i]))
        cr = int(np.ceil(rp[i]))
        ccl = int(np.ceil(cp[i]))
        top_left = padded[pad + fr : pad + fr + h, pad + fc : pad + fc + w]
        if fr == cr and fc == ccl:
            # whole-pixel offset: (1 - 0) * v + 0 * u == v exactly
            bits.append(top_left >= img)
            continue
        dr = (r_pos - np.floor(r_pos))[:, None]
        dc = c_pos - np.floor(c_pos)
        top_right = padded[pad + fr : pad + fr + h, pad + ccl : pad + ccl + w]
        bottom_left = padded[pad + cr : pad + cr + h, pad + fc : pad + fc + w]
        bottom_right = padded[pad + cr : pad + cr + h, pad + ccl : pad + ccl + w]
        one_dc = 1 - dc
        top = one_dc * top_left
        top += dc * top_right
        bottom = one_dc * bottom_left
        bottom += dc * bottom_right
        top *= 1 - dr
        bottom *= dr
        top += bottom
        bits.append(top >= img)
    return bits


def _gray_for_lbp(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        if image.dtype == np.uint8:
            return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return image


def _lbp_bins(image: np.ndarray, P: int, R: float, method: str) -> np.ndarray:
    """Compact histogram bin of every pixel, (H, W) integer array."""
    bits = _neighbour_bits(_gray_for_lbp(image), P, R)
    if P <= _MAX_LUT_P:
        dtype = np.uint16 if P > 8 else np.uint8
        code = bits[0].view(np.uint8).astype(dtype)
        for i in range(1, P):
            code |= bits[i].view(np.uint8).astype(dtype) << dtype(i)
        return _lookup(P, method)[1][code]
    return _pattern_classes(bits, P, method)


def lbp_codes(image: np.ndarray, P: int = 8, R: float = 1.0, method: str = "uniform") -> np.ndarray:
    """LBP code of every pixel, equal to scikit-image's for the same method.

    Parameters
    ----------
    image : (H, W) ndarray
        Grayscale image (RGB ``uint8`` is converted to 8-bit gray first).
    P : int
        Number of circularly symmetric neighbours.
    R : float
        Radius of the circle.
    method : {'uniform', 'riu2', 'ror', 'default'}
        ``'uniform'`` is scikit-image's ``'nri_uniform'`` (u2, ``P (P - 1) + 3``
        classes), ``'riu2'`` is scikit-image's ``'uniform'`` (rotation-invariant
        uniform, ``P + 2`` classes), ``'ror'`` and ``'default'`` are the same.

    Returns
    -------
    codes : (H, W) ndarray of float64
        As ``skimage.feature.local_binary_pattern(image, P, R, SKIMAGE_METHOD[method])``.
    """
    _check_lbp_params(P, R, method)
    image = check_image(image)
    bits = _neighbour_bits(_gray_for_lbp(image), P, R)
    return _pattern_classes(bits, P, method).astype(np.float64)


def _check_lbp_params(P, R, method) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(P, (Integral, np.integer)) or P < 1:
        raise ValueError(f"P must be a positive int, got {P!r}")
    if method in ("default", "ror") and P > _MAX_LUT_P:
        raise ValueError(
            f"method={method!r} with P={P} would give 2**{P} histogram bins; use P <= "
            f"{_MAX_LUT_P} or method='uniform'/'riu2'"
        )
    if not R > 0:
        raise ValueError(f"R must be positive, got {R!r}")


def _edges(n: int, parts: int) -> np.ndarray:
    return np.round(np.linspace(0, n, parts + 1)).astype(int)


def _lbp_set(image, P, R, method, grid, cell_size, step, normalize) -> DescriptorSet:
    bins = _lbp_bins(image, P, R, method)
    h, w = bins.shape
    n_bins = lbp_n_bins(P, method)
    if cell_size is None:
        gy, gx = grid
        ey, ex = _edges(h, gy), _edges(w, gx)
        cell_r = np.repeat(np.arange(gy), np.diff(ey))
        cell_c = np.repeat(np.arange(gx), np.diff(ex))
        index = (cell_r[:, None] * gx + cell_c[None, :]) * n_bins + bins
        hist = np.bincount(index.ravel(), minlength=gy * gx * n_bins).reshape(gy * gx, n_bins)
        cy = (ey[:-1] + ey[1:]) / 2.0 - 0.5
        cx = (ex[:-1] + ex[1:]) / 2.0 - 0.5
        scale = float(max(h / gy, w / gx))
    else:
        # sub-cells of `step` pixels, then sums of (cell_size / step)^2 sub-cells
        k = cell_size // step
        ny, nx = (h - cell_size) // step + 1, (w - cell_size) // step + 1
        sy, sx = ny - 1 + k, nx - 1 + k  # sub-cells covered
        sub_r = np.arange(sy * step) // step
        sub_c = np.arange(sx * step) // step
        crop = bins[: sy * step, : sx * step]
        index = (sub_r[:, None] * sx + sub_c[None, :]) * n_bins + crop
        sub = np.bincount(index.ravel(), minlength=sy * sx * n_bins).reshape(sy, sx, n_bins)
        if k > 1:
            integral = np.zeros((sy + 1, sx + 1, n_bins), np.int64)
            integral[1:, 1:] = sub.cumsum(0).cumsum(1)
            sub = integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k]
        hist = sub.reshape(ny * nx, n_bins)
        cy = np.arange(ny) * step + cell_size / 2.0 - 0.5
        cx = np.arange(nx) * step + cell_size / 2.0 - 0.5
        scale = float(cell_size)
    hist = hist.astype(np.float32)
    if normalize:
        hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
    cyy, cxx = np.meshgrid(cy, cx, indexing="ij")
    return DescriptorSet(
        hist, normalized_positions(cxx.ravel(), cyy.ravel(), (h, w)),
        np.full(len(hist), scale, np.float32), (h, w),
    )


def lbp(
    image: np.ndarray,
    *,
    P: int = 8,
    R: float = 1.0,
    method: str = "uniform",
    grid=(4, 4),
    cell_size: int | None = None,
    step: int | None = None,
    normalize: bool = True,
) -> DescriptorSet:
    """LBP histograms of one image, per grid cell or per dense patch (see :class:`LBP`).

    Returns
    -------
    DescriptorSet
        One ``lbp_n_bins(P, method)`` histogram per cell, positions at cell centres.
    """
    _check_lbp_params(P, R, method)
    gy, gx = _grid(grid)
    cell_size, step = _cells(cell_size, step)
    image = check_image(image, min_size=cell_size or max(gy, gx))
    return _lbp_set(image, int(P), float(R), method, (gy, gx), cell_size, step, bool(normalize))


def _grid(grid) -> tuple:
    if isinstance(grid, (Integral, np.integer)):
        grid = (int(grid), int(grid))
    try:
        gy, gx = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be an int or a pair of ints, got {grid!r}") from None
    if gy < 1 or gx < 1:
        raise ValueError(f"grid must be positive, got {grid!r}")
    return gy, gx


def _cells(cell_size, step) -> tuple:
    if cell_size is None:
        if step is not None:
            raise ValueError("step is only used with cell_size")
        return None, None
    cell_size = int(cell_size)
    step = cell_size if step is None else int(step)
    if cell_size < 1 or step < 1:
        raise ValueError(f"cell_size and step must be positive, got {cell_size}, {step}")
    if cell_size % step:
        raise ValueError(f"cell_size ({cell_size}) must be a multiple of step ({step})")
    return cell_size, step


class LBP(BaseExtractor):
    """Local-binary-pattern histograms over a grid of cells or over dense patches.

    Parameters
    ----------
    P : int, default=8
        Number of circularly symmetric neighbours.
    R : float, default=1
        Radius of the neighbour circle in pixels.
    method : {'uniform', 'riu2', 'ror', 'default'}, default='uniform'
        Pattern classes: ``'uniform'`` = u2, the ``P (P - 1) + 2`` uniform patterns
        plus one bin for all others (59 bins for P = 8; scikit-image's
        ``'nri_uniform'``); ``'riu2'`` = rotation-invariant uniform, ``P + 2`` bins
        (scikit-image's ``'uniform'``); ``'ror'`` = rotation-invariant (36 bins for
        P = 8, indexed compactly); ``'default'`` = all ``2**P`` patterns.
    grid : int or (int, int), default=(4, 4)
        Cells ``(rows, cols)`` relative to the image size, so the output length does
        not depend on the image size. Ignored when ``cell_size`` is set.
    output : {'vector', 'descriptors'}, default='vector'
        ``'vector'``: 2-D ``(n_images, n_cells * n_bins)`` float32 array (grid mode
        only). ``'descriptors'``: one histogram per cell as a
        :class:`~classicvision.base.DescriptorSet` with cell-centre positions.
    cell_size : int or None, default=None
        Square patches of this many pixels instead of the grid (descriptor mode),
        as LBP over dense patches in the NEC system.
    step : int or None, default=None
        Patch stride when ``cell_size`` is set (default ``cell_size``: no overlap);
        ``cell_size`` must be a multiple of it.
    normalize : bool, default=True
        L1-normalize every histogram (else raw counts).
    max_size : int or None, default=None
        Images whose longer side exceeds this many pixels are downscaled to it first
        (area interpolation, aspect ratio kept). None: no bound.
    n_jobs : int or None, default=None
        Parallel jobs (joblib) over chunks of images; ``None`` means 1.

    Attributes
    ----------
    n_features_out_ : int
        Vector length (``'vector'``) or histogram length (``'descriptors'``).
    n_bins_ : int
        Histogram length per cell.
    grid_ : (int, int) or None
        Cells ``(rows, cols)`` of the ``'vector'`` output (None with ``cell_size``).

    Notes
    -----
    Codes equal :func:`skimage.feature.local_binary_pattern` (zero padding outside
    the image, so border pixels are included and see dark neighbours). RGB
    ``uint8`` images are converted to 8-bit gray (BT.601) first, so comparisons
    stay exact on integers.

    References
    ----------
    T. Ojala, M. Pietikainen and T. Maenpaa, "Multiresolution Gray-Scale and
    Rotation Invariant Texture Classification with Local Binary Patterns", IEEE
    TPAMI 24(7), 2002. https://doi.org/10.1109/TPAMI.2002.1017623

    Examples
    --------
    >>> import numpy as np
    >>> from classicvision.features import LBP
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    >>> LBP(grid=(2, 2)).fit_transform(images).shape
    (2, 236)
    """

    _parameter_constraints: dict = {
        **BaseExtractor._parameter_constraints,
        "P": [Interval(Integral, 1, None, closed="left")],
        "R": [Interval(Real, 0, None, closed="neither")],
        "method": [StrOptions(set(METHODS))],
        "grid": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "output": [StrOptions({"vector", "descriptors"})],
        "cell_size": [Interval(Integral, 1, None, closed="left"), None],
        "step": [Interval(Integral, 1, None, closed="left"), None],
        "normalize": ["boolean"],
        "max_size": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        P=8,
        R=1.0,
        method="uniform",
        grid=(4, 4),
        output="vector",
        cell_size=None,
        step=None,
        normalize=True,
        max_size=None,
        n_jobs=None,
    ):
        self.P = P
        self.R = R
        self.method = method
        self.grid = grid
        self.output = output
        self.cell_size = cell_size
        self.step = step
        self.normalize = normalize
        self.max_size = max_size
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        _check_lbp_params(self.P, self.R, self.method)
        self._grid = _grid(self.grid)
        self._cell_size, self._step = _cells(self.cell_size, self.step)
        if self.output == "vector" and self._cell_size is not None:
            raise ValueError(
                "cell_size gives a variable number of patches per image; use "
                "output='descriptors' with cell_size (or grid= for output='vector')"
            )
        if self.max_size is not None and self.max_size < self._min_size():
            raise ValueError(
                f"LBP max_size={self.max_size} is smaller than "
                + (f"cell_size={self._cell_size}" if self._cell_size else f"the grid {self._grid}")
            )

    def _min_size(self) -> int:
        return self._cell_size or max(self._grid)

    def _n_features(self, images) -> int:
        n_bins = lbp_n_bins(int(self.P), self.method)
        self.n_bins_ = n_bins
        self.grid_ = self._grid if self._cell_size is None else None
        if self.output == "vector":
            return self._grid[0] * self._grid[1] * n_bins
        return n_bins

    def _extract_function(self):
        return partial(
            _lbp_set,
            P=int(self.P),
            R=float(self.R),
            method=self.method,
            grid=self._grid,
            cell_size=self._cell_size,
            step=self._step,
            normalize=bool(self.normalize),
        )

    def transform(self, images, *, filenames=None):
        """LBP histograms: 2-D array (``'vector'``) or list of DescriptorSet.

        Parameters
        ----------
        images : sequence of (H, W) or (H, W, 3) ndarray, or (N, H, W[, 3]) ndarray
        filenames : sequence of str, optional
            Used to name an offending image in error messages.

        Returns
        -------
        (n_images, n_cells * n_bins) ndarray of float32, or list of DescriptorSet
        """
        imgs = self._validate(images, filenames)
        sets = self._map(imgs)
        if self.output == "vector":
            return np.stack([s.descriptors.ravel() for s in sets])
        return sets

    @available_if(lambda self: self.output == "vector")
    def get_feature_names_out(self, input_features=None):
        """Names of the ``output='vector'`` features, in the order of the vector.

        ``lbp_cell{r}_{c}_bin{k}``: bin ``k`` of the histogram of the grid cell in
        row ``r``, column ``c``; cells in row-major order.

        Parameters
        ----------
        input_features : None
            Images have no input feature names; must be None.

        Returns
        -------
        (n_features_out_,) ndarray of str (object dtype)
        """
        check_is_fitted(self, "grid_")
        no_input_features(self, input_features)
        gy, gx = self.grid_
        names = [f"lbp_cell{r}_{c}_bin{k}" for r in range(gy) for c in range(gx) for k in range(self.n_bins_)]
        return np.asarray(names, dtype=object)
