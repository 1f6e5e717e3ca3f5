"""VLAD: vector of locally aggregated descriptors, with intra-normalization."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from ..utils.validation import Interval
from ._base import (
    BaseEncoder,
    fit_kmeans,
    l2_normalize_rows,
    nearest_codeword,
    signed_power,
)

__all__ = ["VLAD", "hard_assignment_stats"]


def hard_assignment_stats(X, words, atom, n_atoms, n_words):
    """Counts and descriptor sums per (atom, word), without per-descriptor K*d codes.

    Returns
    -------
    stats : (n_atoms, n_words * (1 + d)) ndarray of float32
        For every word, ``[count, sum of x (d)]``.
    """
    n, d = X.shape
    key = atom * n_words + words
    M = sp.csr_matrix(
        (np.ones(n, dtype=np.float32), (key, np.arange(n))), shape=(n_atoms * n_words, n)
    )
    sums = np.asarray(M @ X, dtype=np.float32)  # (n_atoms*K, d)
    counts = np.bincount(key, minlength=n_atoms * n_words).astype(np.float32)
    return np.concatenate([counts[:, None], sums], axis=1).reshape(n_atoms, -1)


class _HardAssignmentMixin:
    """Shared by VLAD and SuperVector: k-means codebook, hard-assignment statistics."""

    def _fit_sample(self, X, rng):
        self.codebook_ = fit_kmeans(X, self.n_words, self.kmeans, rng, max_iter=self.max_iter)
        self._codebook_sq = np.einsum("ij,ij->i", self.codebook_, self.codebook_)

    def _stat_dim(self):
        return self.n_words * (1 + self.n_features_in_)

    def _per_descriptor_elements(self):
        return self.n_words + self.n_features_in_

    def _atom_stats(self, X, atom, n_atoms):
        words = nearest_codeword(X, self.codebook_, self._codebook_sq)
        return hard_assignment_stats(X, words, atom, n_atoms, self.n_words)

    def _split(self, cells):
        n_img, n_cells, _ = cells.shape
        S = cells.reshape(n_img * n_cells, self.n_words, 1 + self.n_features_in_).astype(np.float64)
        return S[:, :, 0], S[:, :, 1:]


class VLAD(_HardAssignmentMixin, BaseEncoder):
    """VLAD with intra-normalization and power normalization.

    Every descriptor is assigned to its nearest codeword ``c_k``; per cell, the
    residuals ``x - c_k`` are summed per word into ``v_k`` (``K * d`` values),
    each ``v_k`` is L2-normalized (intra-normalization, Arandjelovic &
    Zisserman 2013), the signed power ``sign(v)|v|^power`` is applied and the
    cell's vector is L2-normalized.

    Parameters
    ----------
    n_words : int, default=64
    intra_normalize : bool, default=True
    power : float or None, default=0.5
        Exponent of the signed power normalization; None or 1 skips it.
    pyramid : SpatialPyramid or None, default=None
    kmeans : {"minibatch", "full"}, default="minibatch"
    max_iter : int, default=100
    max_descriptors : int, default=100_000
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None

    Attributes
    ----------
    codebook_ : (n_words, n_features_in_) ndarray of float32
    n_features_in_ : int
    n_features_out_ : int
        ``n_cells * n_words * n_features_in_``.

    References
    ----------
    .. [1] H. Jegou, M. Douze, C. Schmid and P. Perez, "Aggregating local
       descriptors into a compact image representation", CVPR 2010.
       https://doi.org/10.1109/CVPR.2010.5540039
    .. [2] R. Arandjelovic and A. Zisserman, "All about VLAD", CVPR 2013.
       https://doi.org/10.1109/CVPR.2013.207
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        **BaseEncoder._kmeans_constraints,
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "intra_normalize": ["boolean"],
        "power": [Interval(Real, 0, None, closed="neither"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, n_words=64, intra_normalize=True, power=0.5, pyramid=None, kmeans="minibatch",
        max_iter=100, max_descriptors=100_000, random_state=None, n_jobs=None,
    ):
        self.n_words = n_words
        self.intra_normalize = intra_normalize
        self.power = power
        self.pyramid = pyramid
        self.kmeans = kmeans
        self.max_iter = max_iter
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _code_dim(self):
        return self.n_words * self.n_features_in_

    def _finalize_cells(self, cells):
        n_img, n_cells, _ = cells.shape
        counts, sums = self._split(cells)
        V = sums - counts[:, :, None] * self.codebook_.astype(np.float64)[None]
        if self.intra_normalize:
            V = l2_normalize_rows(V, axis=2)
        V = V.reshape(n_img * n_cells, -1)
        if self.power is not None and self.power != 1:
            V = signed_power(V, self.power)
        V = l2_normalize_rows(V, axis=1)
        return V.astype(np.float32).reshape(n_img, n_cells, -1)
