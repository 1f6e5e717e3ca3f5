"""The k-means "triangle" activation of Coates, Lee & Ng (2011)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ..utils.validation import Interval, StrOptions
from ._base import BaseEncoder, fit_kmeans, normalize_rows, squared_distances

__all__ = ["KMeansTriangle", "zca_whitening"]


def zca_whitening(X: np.ndarray, eps: float = 0.1):
    """ZCA whitening ``(mean, matrix)`` of the rows of ``X``: ``(x - mean) @ matrix``.

    ``matrix = V diag(1 / sqrt(lambda + eps)) V^T`` from the eigen-decomposition
    of the covariance, as in Coates et al.'s code (``eps = 0.1`` for
    contrast-normalized patches on a 0..255 scale).
    """
    X64 = np.asarray(X, np.float64)
    mean = X64.mean(axis=0)
    cov = np.cov(X64 - mean, rowvar=False).reshape(X.shape[1], X.shape[1])
    lam, V = np.linalg.eigh(cov)
    lam = np.maximum(lam, 0)
    matrix = (V / np.sqrt(lam + eps)) @ V.T
    return mean.astype(np.float32), matrix.astype(np.float32)


class KMeansTriangle(BaseEncoder):
    """K-means codebook with the "triangle" soft activation (Coates, Lee & Ng 2011).

    With ``z_k = ||x - c_k||`` and ``mu(z)`` the mean of ``z`` over the
    codewords, the code is ``f_k(x) = max(0, mu(z) - z_k)``: about half the
    words are off, the others grow as the descriptor gets closer than average.

    Parameters
    ----------
    n_words : int, default=1600
        Codebook size (1600 in the paper's best CIFAR-10 single-layer result).
    pooling : {"sum", "max"}, default="sum"
        The paper sum-pools over the four image quadrants:
        ``pyramid=SpatialPyramid(levels=(2,))``.
    pyramid : SpatialPyramid or None, default=None
    whiten : bool, default=False
        Fit a ZCA whitening on the descriptor sample and apply it before
        coding. Leave False when the extractor already whitens its patches.
    whiten_eps : float, default=0.1
        Regularizer added to the eigenvalues in the whitening.
    normalize : {"l1", "l2"} or None, default=None
        Normalization of the whole vector (the paper standardizes features
        before the linear SVM instead).
    kmeans : {"minibatch", "full"}, default="minibatch"
    max_iter : int, default=100
    max_descriptors : int, default=100_000
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None

    Attributes
    ----------
    codebook_ : (n_words, n_features_in_) ndarray of float32
        Codewords (in the whitened space when ``whiten=True``).
    whitening_mean_, whitening_matrix_ : ndarray of float32 or None
        ``(d,)`` and ``(d, d)`` when ``whiten=True``.
    n_features_in_ : int
    n_features_out_ : int

    References
    ----------
    .. [1] A. Coates, H. Lee and A. Y. Ng, "An Analysis of Single-Layer Networks
       in Unsupervised Feature Learning", AISTATS 2011.
       https://proceedings.mlr.press/v15/coates11a.html

    Notes
    -----
    The distances come from one float32 GEMM per chunk. The paper's k-means is
    plain Lloyd from random initial centroids; here it is scikit-learn's
    (mini-batch) k-means with k-means++ initialization.
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        **BaseEncoder._kmeans_constraints,
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "pooling": [StrOptions({"sum", "max"})],
        "whiten": ["boolean"],
        "whiten_eps": [Interval(Real, 0, None, closed="left")],
        "normalize": [StrOptions({"l1", "l2"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, n_words=1600, pooling="sum", pyramid=None, whiten=False, whiten_eps=0.1, normalize=None,
        kmeans="minibatch", max_iter=100, max_descriptors=100_000, random_state=None, n_jobs=None,
    ):
        self.n_words = n_words
        self.pooling = pooling
        self.pyramid = pyramid
        self.whiten = whiten
        self.whiten_eps = whiten_eps
        self.normalize = normalize
        self.kmeans = kmeans
        self.max_iter = max_iter
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _prepare(self, X, P):
        if getattr(self, "whitening_matrix_", None) is None:
            return X
        return (X - self.whitening_mean_) @ self.whitening_matrix_

    def _prepare_fit(self, X, P):
        return X  # the whitening is (re)fitted on the raw sample in _fit_sample

    def _fit_sample(self, X, rng):
        if self.whiten:
            self.whitening_mean_, self.whitening_matrix_ = zca_whitening(X, self.whiten_eps)
            X = (X - self.whitening_mean_) @ self.whitening_matrix_
        else:
            self.whitening_mean_ = self.whitening_matrix_ = None
        self.codebook_ = fit_kmeans(X, self.n_words, self.kmeans, rng, max_iter=self.max_iter)
        self._codebook_sq = np.einsum("ij,ij->i", self.codebook_, self.codebook_)

    def _code_dim(self):
        return self.n_words

    def _codes(self, X):
        Z = squared_distances(X, self.codebook_, self._codebook_sq)
        np.sqrt(Z, out=Z)
        mu = Z.mean(axis=1, keepdims=True)
        np.subtract(mu, Z, out=Z)
        np.maximum(Z, 0, out=Z)
        return Z

    def _postprocess(self, codes):
        return normalize_rows(codes, self.normalize)
