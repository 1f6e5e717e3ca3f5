"""Super-vector coding (Zhou et al. 2010), the coding of the NEC ILSVRC-2010 system."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ..utils.validation import Interval, StrOptions
from ._base import BaseEncoder, l2_normalize_rows
from ._vlad import _HardAssignmentMixin

__all__ = ["SuperVector"]


class SuperVector(_HardAssignmentMixin, BaseEncoder):
    """Super-vector coding with hard assignment.

    Each descriptor ``x`` assigned to codeword ``c_k`` is coded as
    ``[s, x - c_k]`` in the ``k``-th block of ``K * (1 + d)`` values (zeros
    elsewhere). Per cell with ``N`` descriptors, of which ``N_k`` fall in word
    ``k`` (``p_k = N_k / N``), the pooled block is
    ``[s * sqrt(p_k), sum_{x in k} (x - c_k) / (N * sqrt(p_k))]``, i.e. the
    average code weighted by ``1 / sqrt(p_k)`` (eq. 8 of the paper).

    Parameters
    ----------
    n_words : int, default=1024
    s : float, default=1.0
        Weight of the zero-order (count) part relative to the residuals.
    normalize : {"l2"} or None, default="l2"
        Normalization of each cell's vector.
    pyramid : SpatialPyramid or None, default=None
        The paper uses ``SpatialPyramid(levels=(1, (3, 1)))``.
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
        ``n_cells * n_words * (1 + n_features_in_)``.

    References
    ----------
    .. [1] X. Zhou, K. Yu, T. Zhang and T. S. Huang, "Image Classification using
       Super-Vector Coding of Local Image Descriptors", ECCV 2010.
       https://doi.org/10.1007/978-3-642-15555-0_11
    .. [2] Y. Lin et al., "Large-scale image classification: fast feature
       extraction and SVM training", CVPR 2011 (the NEC ILSVRC-2010 system).
       https://doi.org/10.1109/CVPR.2011.5995477

    Notes
    -----
    The paper's codebook is trained with a GMM-like soft procedure and a
    soft-assignment variant also exists; here the codebook is k-means and the
    assignment is hard, which the paper presents as the basic form.
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        **BaseEncoder._kmeans_constraints,
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "s": [Interval(Real, 0, None, closed="left")],
        "normalize": [StrOptions({"l2"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, n_words=1024, s=1.0, normalize="l2", pyramid=None, kmeans="minibatch", max_iter=100,
        max_descriptors=100_000, random_state=None, n_jobs=None,
    ):
        self.n_words = n_words
        self.s = s
        self.normalize = normalize
        self.pyramid = pyramid
        self.kmeans = kmeans
        self.max_iter = max_iter
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _code_dim(self):
        return self.n_words * (1 + self.n_features_in_)

    def _finalize_cells(self, cells):
        n_img, n_cells, _ = cells.shape
        counts, sums = self._split(cells)  # (m, K), (m, K, d)
        N = counts.sum(axis=1, keepdims=True)
        p = counts / np.where(N > 0, N, 1.0)
        sqrt_p = np.sqrt(p)
        resid = sums - counts[:, :, None] * self.codebook_.astype(np.float64)[None]
        scale = np.where(p > 0, 1.0 / (np.where(N > 0, N, 1.0) * np.where(p > 0, sqrt_p, 1.0)), 0.0)
        V = np.concatenate([self.s * sqrt_p[:, :, None], resid * scale[:, :, None]], axis=2)
        V = V.reshape(n_img * n_cells, -1)
        if self.normalize == "l2":
            V = l2_normalize_rows(V, axis=1)
        return V.astype(np.float32).reshape(n_img, n_cells, -1)
