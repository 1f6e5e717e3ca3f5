"""Vector quantization: hard (bag of visual words) and soft (kernel codebook)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..base import check_descriptor_sets
from ..utils.validation import Interval, StrOptions
from ._base import (
    BaseEncoder,
    fit_kmeans,
    k_smallest,
    nearest_codeword,
    normalize_rows,
    squared_distances,
)

__all__ = ["BagOfWords", "SoftAssignment"]


class BagOfWords(BaseEncoder):
    """Hard vector quantization into a k-means codebook: a histogram of visual words.

    Every descriptor votes for its nearest codeword; votes are counted per
    spatial-pyramid cell (sum pooling), weighted per level, and the whole
    vector is normalized.

    Parameters
    ----------
    n_words : int, default=1024
        Codebook size ``K``.
    pyramid : SpatialPyramid or None, default=None
        Spatial cells to pool over; None is one global cell. Lazebnik et al.
        use ``SpatialPyramid(levels=(1, 2, 4), level_weights="lazebnik")`` with
        200 words.
    normalize : {"l1", "l2"} or None, default="l1"
        Normalization of the whole (pyramid-weighted) histogram of an image.
    kmeans : {"minibatch", "full"}, default="minibatch"
        :class:`~sklearn.cluster.MiniBatchKMeans` or Lloyd's
        :class:`~sklearn.cluster.KMeans` for the codebook.
    max_iter : int, default=100
        Iterations (epochs for mini-batch) of k-means.
    max_descriptors : int, default=100_000
        The codebook is fitted on a random sample of at most this many
        descriptors drawn across all images.
    random_state : int, RandomState instance or None, default=None
        Seeds the descriptor sample and k-means.
    n_jobs : int or None, default=None
        Parallel jobs (joblib) over chunks of images in ``transform``.

    Attributes
    ----------
    codebook_ : (n_words, n_features_in_) ndarray of float32
        The visual words.
    n_features_in_ : int
        Descriptor dimension.
    n_features_out_ : int
        ``n_cells * n_words``.

    References
    ----------
    .. [1] J. Sivic and A. Zisserman, "Video Google: A Text Retrieval Approach
       to Object Matching in Videos", ICCV 2003. https://doi.org/10.1109/ICCV.2003.1238663
    .. [2] S. Lazebnik, C. Schmid and J. Ponce, "Beyond Bags of Features: Spatial
       Pyramid Matching for Recognizing Natural Scene Categories", CVPR 2006.
       https://doi.org/10.1109/CVPR.2006.68

    Examples
    --------
    >>> import numpy as np
    >>> from classicvision.base import DescriptorSet
    >>> from classicvision.pooling import SpatialPyramid
    >>> rng = np.random.default_rng(0)
    >>> sets = [DescriptorSet(rng.random((50, 8), dtype=np.float32), rng.random((50, 2)), np.ones(50))
    ...         for _ in range(4)]
    >>> bow = BagOfWords(n_words=5, pyramid=SpatialPyramid(levels=(1, 2)), random_state=0)
    >>> bow.fit_transform(sets).shape  # 5 cells x 5 words
    (4, 25)

    Notes
    -----
    Nearest codewords are found with one float32 GEMM per chunk
    (``-2 x.c + ||c||^2``); ties between equidistant words may resolve
    differently from a float64 computation.
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        **BaseEncoder._kmeans_constraints,
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "normalize": [StrOptions({"l1", "l2"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, n_words=1024, pyramid=None, normalize="l1", kmeans="minibatch", max_iter=100,
        max_descriptors=100_000, random_state=None, n_jobs=None,
    ):
        self.n_words = n_words
        self.pyramid = pyramid
        self.normalize = normalize
        self.kmeans = kmeans
        self.max_iter = max_iter
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit_sample(self, X, rng):
        self.codebook_ = fit_kmeans(X, self.n_words, self.kmeans, rng, max_iter=self.max_iter)
        self._codebook_sq = np.einsum("ij,ij->i", self.codebook_, self.codebook_)

    def _code_dim(self):
        return self.n_words

    def _per_descriptor_elements(self):
        return self.n_words  # the distance matrix

    def predict(self, X) -> list[np.ndarray]:
        """Nearest codeword of every descriptor, one int array per image."""
        check_is_fitted(self, "codebook_")
        return [
            nearest_codeword(np.asarray(s.descriptors, np.float32), self.codebook_, self._codebook_sq)
            for s in check_descriptor_sets(X)
        ]

    def _atom_stats(self, X, atom, n_atoms):
        words = nearest_codeword(X, self.codebook_, self._codebook_sq)
        K = self.n_words
        return np.bincount(atom * K + words, minlength=n_atoms * K).reshape(n_atoms, K).astype(np.float32)

    def _postprocess(self, codes):
        return normalize_rows(codes, self.normalize)


class SoftAssignment(BaseEncoder):
    """Soft vector quantization (kernel codebook / localized soft assignment).

    Every descriptor ``x`` spreads a unit vote over the codewords,
    ``u_k = exp(-||x - c_k||^2 / (2 sigma^2)) / sum_j exp(-||x - c_j||^2 / (2 sigma^2))``,
    optionally restricted to its ``knn`` nearest codewords (Liu et al. 2011).

    Parameters
    ----------
    n_words : int, default=1024
        Codebook size.
    sigma : float or None, default=None
        Kernel width. None sets ``sigma_`` to the mean distance between the
        sampled descriptors and their nearest codeword.
    knn : int or None, default=None
        Keep only the ``knn`` nearest codewords (localized soft assignment);
        None uses all of them (van Gemert's codeword uncertainty).
    pooling : {"sum", "max"}, default="sum"
        Sum (a soft histogram) or max pooling per cell.
    pyramid : SpatialPyramid or None, default=None
    normalize : {"l1", "l2"} or None, default="l1"
        Normalization of the whole vector of an image.
    kmeans : {"minibatch", "full"}, default="minibatch"
    max_iter : int, default=100
    max_descriptors : int, default=100_000
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None

    Attributes
    ----------
    codebook_ : (n_words, n_features_in_) ndarray of float32
    sigma_ : float
        Kernel width used.
    n_features_in_ : int
    n_features_out_ : int

    References
    ----------
    .. [1] J. C. van Gemert, C. J. Veenman, A. W. M. Smeulders and J.-M.
       Geusebroek, "Visual Word Ambiguity", IEEE TPAMI 32(7), 2010 (ECCV 2008).
       https://doi.org/10.1109/TPAMI.2009.132
    .. [2] L. Liu, L. Wang and X. Liu, "In Defense of Soft-assignment Coding",
       ICCV 2011. https://doi.org/10.1109/ICCV.2011.6126534
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        **BaseEncoder._kmeans_constraints,
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "sigma": [Interval(Real, 0, None, closed="neither"), None],
        "knn": [Interval(Integral, 1, None, closed="left"), None],
        "pooling": [StrOptions({"sum", "max"})],
        "normalize": [StrOptions({"l1", "l2"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, n_words=1024, sigma=None, knn=None, pooling="sum", pyramid=None, normalize="l1",
        kmeans="minibatch", max_iter=100, max_descriptors=100_000, random_state=None, n_jobs=None,
    ):
        self.n_words = n_words
        self.sigma = sigma
        self.knn = knn
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
        self._codebook_sq = np.einsum("ij,ij->i", self.codebook_, self.codebook_)
        if self.sigma is None:
            sub = X[:: max(1, len(X) // 20_000)]  # the sample is ordered by image: stride
            d2 = squared_distances(sub, self.codebook_, self._codebook_sq).min(axis=1)
            sigma = float(np.mean(np.sqrt(d2)))
            self.sigma_ = sigma if sigma > 0 else 1.0
        else:
            self.sigma_ = float(self.sigma)

    def _code_dim(self):
        return self.n_words

    def _sparse_codes(self, X):
        if self.knn is None or self.knn >= self.n_words:
            return None
        D = squared_distances(X, self.codebook_, self._codebook_sq)
        index = k_smallest(D, self.knn)
        return self._kernel(np.take_along_axis(D, index, axis=1)), index

    def _kernel(self, D):
        beta = np.float32(1.0 / (2.0 * self.sigma_**2))
        D -= D.min(axis=1, keepdims=True)  # stable exponent; the nearest word gets exp(0)
        D *= -beta
        np.exp(D, out=D)
        D /= D.sum(axis=1, keepdims=True)
        return D

    def _codes(self, X):
        sparse = self._sparse_codes(X)
        if sparse is None:
            return self._kernel(squared_distances(X, self.codebook_, self._codebook_sq))
        codes = np.zeros((X.shape[0], self.n_words), dtype=np.float32)
        np.put_along_axis(codes, sparse[1], sparse[0], axis=1)
        return codes

    def _postprocess(self, codes):
        return normalize_rows(codes, self.normalize)
