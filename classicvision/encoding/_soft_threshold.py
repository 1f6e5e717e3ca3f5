"""Soft-threshold encoding on a dictionary of unit-norm atoms (Coates & Ng, ICML 2011)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ..utils.validation import Interval, StrOptions
from ._base import BaseEncoder, fit_kmeans, l2_normalize_rows, normalize_rows

__all__ = ["SoftThreshold"]


class SoftThreshold(BaseEncoder):
    """Soft-threshold ("T") encoder: ``max(0, d_k . x - alpha)`` on unit-norm atoms ``d_k``.

    The feed-forward encoder that Coates & Ng found as good as sparse coding on
    CIFAR-10 for a fraction of the cost: one matrix product per descriptor
    chunk, a shift by ``alpha`` and a rectification. With ``split_sign=True``
    the negative responses are kept as a second half,
    ``max(0, -d_k . x - alpha)``, so a word of ``n_words`` atoms gives
    ``2 n_words`` features per cell. Meant for whitened inputs (for example
    :class:`~classicvision.features.RawPatches` with ``whiten=True``), for
    which ``alpha = 0.25`` is the paper's setting.

    Parameters
    ----------
    n_words : int, default=1600
        Number of atoms ``K``.
    alpha : float >= 0, default=0.25
        Threshold subtracted from the responses.
    split_sign : bool, default=True
        Also encode the negative responses (``2 K`` codes per descriptor).
    dictionary : {"kmeans", "patches"}, default="kmeans"
        ``"kmeans"``: normalized k-means centroids of the descriptor sample.
        ``"patches"``: ``K`` descriptors drawn at random from the sample,
        normalized (the paper's "random patches" dictionary, no training at all).
    pooling : {"sum", "max"}, default="sum"
        Pooling of the codes over each cell (the paper sums over the four
        image quadrants: ``pyramid=SpatialPyramid(levels=(2,))``).
    pyramid : SpatialPyramid or None, default=None
    normalize : {"l1", "l2"} or None, default=None
        Normalization of the whole vector (the paper standardizes the features
        before its linear SVM instead).
    kmeans : {"minibatch", "full"}, default="minibatch"
    max_iter : int, default=100
        k-means iterations (``dictionary="kmeans"``).
    max_descriptors : int, default=100_000
        Size of the descriptor sample the dictionary is drawn from.
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None

    Attributes
    ----------
    dictionary_ : (n_words, n_features_in_) ndarray of float32
        The unit-norm atoms.
    n_features_in_ : int
    n_features_out_ : int
        ``n_cells * n_words * (2 if split_sign else 1)``; in each cell the
        positive halves come first, then the negative ones.

    See Also
    --------
    KMeansTriangle : the "triangle" activation of the same authors' AISTATS paper.
    SparseCoding : the lasso codes the soft threshold approximates.

    References
    ----------
    .. [1] A. Coates and A. Y. Ng, "The Importance of Encoding Versus Training with
       Sparse Coding and Vector Quantization", ICML 2011.
       https://www.stanford.edu/~acoates/papers/coatesng_icml_2011.pdf

    Notes
    -----
    A descriptor of zero norm would make a zero atom; such sample rows are
    skipped when the dictionary is drawn, and a k-means centroid of zero norm
    stays zero (it never fires).

    Examples
    --------
    >>> import numpy as np
    >>> from classicvision.base import DescriptorSet
    >>> from classicvision.encoding import SoftThreshold
    >>> rng = np.random.RandomState(0)
    >>> sets = [DescriptorSet(rng.randn(50, 8).astype(np.float32), rng.rand(50, 2), np.full(50, 6.0))
    ...         for _ in range(3)]
    >>> SoftThreshold(n_words=10, random_state=0).fit(sets).transform(sets).shape
    (3, 20)
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        **BaseEncoder._kmeans_constraints,
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "split_sign": ["boolean"],
        "dictionary": [StrOptions({"kmeans", "patches"})],
        "pooling": [StrOptions({"sum", "max"})],
        "normalize": [StrOptions({"l1", "l2"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, n_words=1600, alpha=0.25, split_sign=True, dictionary="kmeans", pooling="sum", pyramid=None,
        normalize=None, kmeans="minibatch", max_iter=100, max_descriptors=100_000, random_state=None,
        n_jobs=None,
    ):
        self.n_words = n_words
        self.alpha = alpha
        self.split_sign = split_sign
        self.dictionary = dictionary
        self.pooling = pooling
        self.pyramid = pyramid
        self.normalize = normalize
        self.kmeans = kmeans
        self.max_iter = max_iter
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit_sample(self, X, rng):
        if self.dictionary == "kmeans":
            atoms = fit_kmeans(X, self.n_words, self.kmeans, rng, max_iter=self.max_iter)
        else:
            usable = np.flatnonzero(np.einsum("ij,ij->i", X, X) > 0)
            if usable.size < self.n_words:
                raise ValueError(
                    f"cannot draw {self.n_words} atoms from {usable.size} non-zero sampled "
                    "descriptors; lower n_words or give more descriptors"
                )
            atoms = X[np.sort(rng.choice(usable, self.n_words, replace=False))]
        self.dictionary_ = np.ascontiguousarray(l2_normalize_rows(np.asarray(atoms, np.float32)))

    def _code_dim(self):
        return self.n_words * (2 if self.split_sign else 1)

    def _codes(self, X):
        S = X @ self.dictionary_.T
        if not self.split_sign:
            S -= self.alpha
            return np.maximum(S, 0, out=S)
        out = np.empty((X.shape[0], 2 * self.n_words), dtype=S.dtype)
        np.subtract(S, self.alpha, out=out[:, : self.n_words])
        np.subtract(-self.alpha, S, out=out[:, self.n_words :])
        return np.maximum(out, 0, out=out)

    def _postprocess(self, codes):
        return normalize_rows(codes, self.normalize)
