"""Raw pixel patches, contrast-normalized and ZCA-whitened (Coates, Lee & Ng 2011)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..base import DescriptorSet, check_image, check_images, is_lazy_sequence
from ..utils.validation import Interval, fit_context
from ._common import BaseExtractor, normalized_positions, resize_max_side

__all__ = ["RawPatches", "raw_patches"]

_CONTRAST_EPS = 10.0  # added to the variance on the 0-255 scale, as Coates & Ng's code


def _as_channels(image: np.ndarray, n_channels: int) -> np.ndarray:
    """(H, W, C) float32 on the 0-255 scale with the requested channel count."""
    img = image.astype(np.float32)
    if image.dtype != np.uint8:
        img *= 255.0  # floats are in [0, 1]
    if img.ndim == 2:
        img = img[:, :, None]
    if n_channels == 1 and img.shape[2] == 3:
        img = (img @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
    elif n_channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img


def _patch_grid(image, patch_size, step):
    """(ny, nx, p * p * C) patches, flattened in (row, col, channel) order."""
    win = np.lib.stride_tricks.sliding_window_view(image, (patch_size, patch_size), axis=(0, 1))
    win = win[::step, ::step]  # (ny, nx, C, p, p)
    ny, nx = win.shape[:2]
    return np.ascontiguousarray(win.transpose(0, 1, 3, 4, 2)).reshape(ny, nx, -1)


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    """Per-patch brightness and contrast normalization, in place."""
    x -= x.mean(axis=1, keepdims=True)
    var = (x * x).sum(axis=1, keepdims=True) / max(x.shape[1] - 1, 1)  # MATLAB var (N - 1)
    x /= np.sqrt(var + _CONTRAST_EPS)
    return x


def _patches(image, patch_size, step, n_channels, normalize):
    img = _as_channels(image, n_channels)
    grid = _patch_grid(img, patch_size, step)
    ny, nx = grid.shape[:2]
    x = grid.reshape(ny * nx, -1)
    if normalize:
        _normalize_rows(x)
    c = np.arange(ny) * step + (patch_size - 1) / 2.0
    r = np.arange(nx) * step + (patch_size - 1) / 2.0
    cyy, cxx = np.meshgrid(c, r, indexing="ij")
    return x, normalized_positions(cxx.ravel(), cyy.ravel(), image.shape), image.shape[:2]


def raw_patches(
    image: np.ndarray, *, patch_size: int = 6, step: int = 1, normalize: bool = True
) -> DescriptorSet:
    """All ``patch_size x patch_size`` patches of one image (no whitening).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        ``uint8``, or float in ``[0, 1]`` (scaled to 0-255).
    patch_size : int
    step : int
    normalize : bool
        Subtract each patch's mean and divide by ``sqrt(var + 10)`` (0-255 scale).

    Returns
    -------
    DescriptorSet
        ``(n, patch_size**2 * C)`` float32 rows in (row, col, channel) order.
    """
    image = check_image(image, min_size=patch_size)
    n_channels = 3 if image.ndim == 3 else 1
    x, pos, shape = _patches(image, int(patch_size), int(step), n_channels, bool(normalize))
    return DescriptorSet(x, pos, np.full(len(x), patch_size, np.float32), shape)


class RawPatches(BaseExtractor):
    """Dense raw patches with contrast normalization and ZCA whitening.

    The front end of Coates, Lee & Ng (2011): every ``patch_size x patch_size``
    patch at stride ``step`` (vectorized with ``sliding_window_view``), each
    brightness- and contrast-normalized, then ZCA-whitened with a transform
    learned in :meth:`fit` from a random sample of patches.

    Parameters
    ----------
    patch_size : int, default=6
        Patch side in pixels.
    step : int, default=1
        Stride between patches.
    normalize : bool, default=True
        Per patch: subtract the mean, divide by ``sqrt(var + 10)`` (0-255 scale,
        sample variance), as in the authors' code.
    whiten : bool, default=True
        ZCA whitening ``(x - mean_) @ whitening_``.
    whiten_eps : float, default=0.1
        Added to the covariance eigenvalues (the paper's code uses 0.1).
    max_fit_patches : int, default=100_000
        Patches sampled (uniformly over images and positions) to fit the whitening.
    max_size : int or None, default=None
        Images whose longer side exceeds this many pixels are downscaled to it first
        (area interpolation, aspect ratio kept), in :meth:`fit` and
        :meth:`transform`. None: no bound.
    random_state : int, RandomState instance or None, default=None
        Seeds the patch sample.
    n_jobs : int or None, default=None
        Parallel jobs (joblib) over chunks of images; ``None`` means 1.

    Attributes
    ----------
    n_channels_ : int
        1 for gray, 3 for RGB (from the training images; other images are converted).
    mean_ : (n_features,) ndarray of float32
        Mean of the normalized training patches.
    whitening_ : (n_features, n_features) ndarray of float32
        Symmetric ZCA matrix ``V diag(1 / sqrt(d + eps)) V^T``.
    n_features_out_ : int
        ``patch_size**2 * n_channels_``.

    Notes
    -----
    Float images in ``[0, 1]`` are scaled to 0-255 so the contrast constant 10
    keeps its meaning. Gray and colour images can be mixed: they are converted to
    the channel count seen in ``fit`` (majority of the training images).

    References
    ----------
    A. Coates, H. Lee and A. Y. Ng, "An Analysis of Single-Layer Networks in
    Unsupervised Feature Learning", AISTATS 2011.
    https://proceedings.mlr.press/v15/coates11a.html
    """

    _parameter_constraints: dict = {
        **BaseExtractor._parameter_constraints,
        "patch_size": [Interval(Integral, 1, None, closed="left")],
        "step": [Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
        "whiten": ["boolean"],
        "whiten_eps": [Interval(Real, 0, None, closed="left")],
        "max_fit_patches": [Interval(Integral, 2, None, closed="left")],
        "max_size": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        patch_size=6,
        step=1,
        normalize=True,
        whiten=True,
        whiten_eps=0.1,
        max_fit_patches=100_000,
        max_size=None,
        random_state=None,
        n_jobs=None,
    ):
        self.patch_size = patch_size
        self.step = step
        self.normalize = normalize
        self.whiten = whiten
        self.whiten_eps = whiten_eps
        self.max_fit_patches = max_fit_patches
        self.max_size = max_size
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        return tags

    def _min_size(self) -> int:
        return int(self.patch_size)

    def _check_params(self) -> None:
        if self.max_size is not None and self.max_size < self.patch_size:
            raise ValueError(
                f"RawPatches max_size={self.max_size} is smaller than patch_size={self.patch_size}"
            )

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, images, y=None, *, filenames=None):
        """Learn the channel count and the ZCA whitening from a sample of patches.

        Parameters
        ----------
        images : sequence of (H, W) or (H, W, 3) ndarray, or (N, H, W[, 3]) ndarray
        y : ignored
        filenames : sequence of str, optional
            Used to name an offending image in error messages.

        A lazy sequence (:func:`~classicvision.base.is_lazy_sequence`) is decoded one
        image at a time (a pass for the shapes, then the images the patches are drawn
        from), never held whole; the sample is the same as for the decoded list.

        Returns
        -------
        self
        """
        self._check_params()
        if is_lazy_sequence(images):  # decoded one at a time: once for the shapes, again for the sample
            def image(i: int) -> np.ndarray:
                im = check_image(images[i], index=i, min_size=int(self.patch_size))
                return resize_max_side(im, self.max_size)

            shapes = []
            for i in range(len(images)):
                im = image(i)
                shapes.append(im.shape)
        else:
            imgs = check_images(images, min_size=int(self.patch_size), filenames=filenames)
            imgs = [resize_max_side(im, self.max_size) for im in imgs]
            shapes = [im.shape for im in imgs]
            image = imgs.__getitem__
        n_color = sum(len(sh) == 3 for sh in shapes)
        self.n_channels_ = 3 if n_color * 2 >= len(shapes) and n_color else 1
        p, s = int(self.patch_size), int(self.step)
        dim = p * p * self.n_channels_
        self.n_features_out_ = dim
        if not self.whiten:
            self.mean_ = np.zeros(dim, np.float32)
            self.whitening_ = np.eye(dim, dtype=np.float32)
            return self
        rng = check_random_state(self.random_state)
        counts = np.array([((sh[0] - p) // s + 1) * ((sh[1] - p) // s + 1) for sh in shapes])
        total = int(counts.sum())
        n_take = min(int(self.max_fit_patches), total)
        chosen = np.sort(rng.choice(total, size=n_take, replace=False))
        owner = np.searchsorted(np.cumsum(counts), chosen, side="right")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sample = []
        for i in np.unique(owner):
            x, _, _ = _patches(image(i), p, s, self.n_channels_, bool(self.normalize))
            sample.append(x[chosen[owner == i] - starts[i]])
        X = np.concatenate(sample).astype(np.float64)
        mean = X.mean(axis=0)
        X -= mean
        cov = X.T @ X / max(len(X) - 1, 1)
        evals, evecs = np.linalg.eigh(cov)
        evals = np.clip(evals, 0, None)
        whitening = (evecs / np.sqrt(evals + float(self.whiten_eps))) @ evecs.T
        self.mean_ = mean.astype(np.float32)
        self.whitening_ = whitening.astype(np.float32)
        return self

    def _extract_function(self):
        return _WhitenedPatches(
            int(self.patch_size), int(self.step), self.n_channels_, bool(self.normalize),
            self.mean_, self.whitening_, bool(self.whiten),
        )

    def transform(self, images, *, filenames=None) -> list:
        """Normalized (and whitened) patches of every image.

        Parameters
        ----------
        images : sequence of (H, W) or (H, W, 3) ndarray, or (N, H, W[, 3]) ndarray
        filenames : sequence of str, optional
            Used to name an offending image in error messages.

        Returns
        -------
        list of DescriptorSet
            ``(n_patches, patch_size**2 * n_channels_)`` float32 each.
        """
        check_is_fitted(self, "whitening_")
        self._check_params()
        imgs = check_images(images, min_size=int(self.patch_size), filenames=filenames)
        return self._map(imgs)


class _WhitenedPatches:
    """Picklable per-image function: patches -> normalized -> whitened."""

    def __init__(self, p, s, n_channels, normalize, mean, whitening, whiten):
        self.args = (p, s, n_channels, normalize)
        self.mean = mean
        self.whitening = whitening
        self.whiten = whiten

    def __call__(self, image) -> DescriptorSet:
        p = self.args[0]
        x, pos, shape = _patches(image, *self.args)
        if self.whiten:
            x -= self.mean
            x = x @ self.whitening
        return DescriptorSet(
            np.ascontiguousarray(x, dtype=np.float32), pos, np.full(len(x), p, np.float32), shape
        )
