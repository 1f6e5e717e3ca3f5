"""Locality-constrained linear coding (LLC), the approximated k-NN solver."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ..utils.validation import Interval, StrOptions
from ._base import BaseEncoder, fit_kmeans, k_smallest, normalize_rows

__all__ = ["LLC", "llc_codes"]


def llc_codes(X: np.ndarray, codebook: np.ndarray, knn: int = 5, beta: float = 1e-4):
    """Approximated LLC codes of ``X`` (batched over descriptors).

    For every descriptor ``x`` with nearest codewords ``B_k`` (``knn`` rows),
    solve ``min ||x - w B_k||^2`` subject to ``sum(w) = 1`` through the
    regularized local covariance ``C = (B_k - x)(B_k - x)^T + beta * tr(C) I``:
    ``w = C^{-1} 1 / (1^T C^{-1} 1)``. All systems are solved at once with
    :func:`numpy.linalg.solve` on an ``(n, knn, knn)`` stack.

    Parameters
    ----------
    X : (n, d) ndarray of float32
    codebook : (K, d) ndarray of float32
    knn : int
    beta : float

    Returns
    -------
    weights : (n, knn) ndarray of float32
        Code values, summing to 1 per row.
    index : (n, knn) ndarray of int64
        The codewords they belong to.
    """
    knn = min(knn, codebook.shape[0])
    if knn < codebook.shape[0]:
        # ranking only: ||x||^2 is the same for every codeword of a row
        D = X @ codebook.T
        D *= -2.0
        D += np.einsum("ij,ij->i", codebook, codebook)[None, :]
        index = k_smallest(D, knn, overwrite=True)
    else:
        index = np.broadcast_to(np.arange(knn), (X.shape[0], knn)).copy()
    Z = codebook[index] - X[:, None, :]  # (n, knn, d)
    C = np.matmul(Z, Z.transpose(0, 2, 1)).astype(np.float64)  # (n, knn, knn)
    trace = np.trace(C, axis1=1, axis2=2)
    reg = beta * np.where(trace > 0, trace, 1.0)
    C[:, np.arange(knn), np.arange(knn)] += reg[:, None]
    w = np.linalg.solve(C, np.ones((X.shape[0], knn, 1)))[:, :, 0]
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32), index


class LLC(BaseEncoder):
    """Locality-constrained linear coding with max pooling (Wang et al. 2010).

    Each descriptor is reconstructed from its ``knn`` nearest codewords with
    weights summing to one (the paper's fast approximated solution); codes are
    max-pooled per spatial-pyramid cell and the vector is L2-normalized.

    Parameters
    ----------
    n_words : int, default=1024
        Codebook size (the paper uses 1024 or 2048 on Caltech-101).
    knn : int, default=5
        Number of nearest codewords each descriptor is coded with.
    beta : float, default=1e-4
        Ridge term, relative to the trace of the local covariance.
    pooling : {"max", "sum"}, default="max"
    pyramid : SpatialPyramid or None, default=None
        The paper pools over ``SpatialPyramid(levels=(1, 2, 4))``.
    normalize : {"l2", "l1"} or None, default="l2"
        Normalization of the whole vector of an image.
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

    References
    ----------
    .. [1] J. Wang, J. Yang, K. Yu, F. Lv, T. Huang and Y. Gong,
       "Locality-constrained Linear Coding for Image Classification", CVPR 2010.
       https://doi.org/10.1109/CVPR.2010.5540018

    Notes
    -----
    The codebook is plain k-means (as in the paper's experiments); the
    incremental codebook optimization of Section 3.2 is not implemented.
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        **BaseEncoder._kmeans_constraints,
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "knn": [Interval(Integral, 1, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "pooling": [StrOptions({"sum", "max"})],
        "normalize": [StrOptions({"l1", "l2"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, n_words=1024, knn=5, beta=1e-4, pooling="max", pyramid=None, normalize="l2",
        kmeans="minibatch", max_iter=100, max_descriptors=100_000, random_state=None, n_jobs=None,
    ):
        self.n_words = n_words
        self.knn = knn
        self.beta = beta
        self.pooling = pooling
        self.pyramid = pyramid
        self.normalize = normalize
        self.kmeans = kmeans
        self.max_iter = max_iter
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit_sample(self, X, rng):
        self.codebook_ = fit_kmeans(X, self.n_words, self.kmeans, rng, max_iter=self.max_iter)

    def _code_dim(self):
        return self.n_words

    def _per_descriptor_elements(self):
        return 2 * self.n_words + self.knn * self.n_features_in_

    def _sparse_codes(self, X):
        return llc_codes(X, self.codebook_, self.knn, self.beta)

    def _codes(self, X):
        w, index = llc_codes(X, self.codebook_, self.knn, self.beta)
        codes = np.zeros((X.shape[0], self.n_words), dtype=np.float32)
        np.put_along_axis(codes, index, w, axis=1)
        return codes

    def _postprocess(self, codes):
        return normalize_rows(codes, self.normalize)
