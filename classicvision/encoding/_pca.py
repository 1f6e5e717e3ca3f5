"""PCA of local descriptors (fitted on a sample), DescriptorSet in, DescriptorSet out."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..base import DescriptorSet, check_descriptor_sets
from ..utils.validation import Interval, fit_context
from ._base import sample_descriptors

__all__ = ["DescriptorPCA"]


class DescriptorPCA(TransformerMixin, BaseEstimator):
    """Project local descriptors onto their principal components.

    Fisher vectors and VLAD are usually computed on PCA-reduced descriptors
    (e.g. SIFT 128 -> 64 dimensions): decorrelation suits the diagonal GMM and
    shortens the vectors. The PCA is fitted on a random sample of descriptors
    drawn across images; ``transform`` maps every :class:`DescriptorSet` to a
    new one with the same positions and scales.

    Parameters
    ----------
    n_components : int, default=64
        Output dimension; at most the descriptor dimension.
    whiten : bool, default=False
        Divide each component by the square root of its variance.
    max_descriptors : int, default=100_000
        Size of the descriptor sample the PCA is fitted on.
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    mean_ : (n_features_in_,) ndarray of float32
    components_ : (n_components, n_features_in_) ndarray of float32
    explained_variance_ : (n_components,) ndarray of float64
    n_features_in_ : int
    n_features_out_ : int

    References
    ----------
    .. [1] Y. Ke and R. Sukthankar, "PCA-SIFT: a more distinctive representation
       for local image descriptors", CVPR 2004. https://doi.org/10.1109/CVPR.2004.1315206
    .. [2] F. Perronnin, J. Sanchez and T. Mensink, "Improving the Fisher Kernel
       for Large-Scale Image Classification", ECCV 2010 (SIFT reduced to 64-D).
       https://doi.org/10.1007/978-3-642-15561-1_11
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "whiten": ["boolean"],
        "max_descriptors": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, *, n_components=64, whiten=False, max_descriptors=100_000, random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.max_descriptors = max_descriptors
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the PCA on a descriptor sample.

        Parameters
        ----------
        X : list of DescriptorSet
        y : ignored

        Returns
        -------
        self
        """
        sets = check_descriptor_sets(X)
        d = sets[0].n_features
        if self.n_components > d:
            raise ValueError(f"n_components={self.n_components} exceeds the descriptor dimension {d}")
        rng = check_random_state(self.random_state)
        S, _ = sample_descriptors(sets, self.max_descriptors, rng)
        if S.shape[0] < 2:
            raise ValueError(f"need at least 2 descriptors to fit a PCA, got {S.shape[0]}")
        pca = PCA(n_components=min(self.n_components, S.shape[0]), whiten=self.whiten,
                  random_state=int(rng.randint(np.iinfo(np.int32).max)))
        pca.fit(S.astype(np.float64))
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        self.explained_variance_ = pca.explained_variance_
        scale = 1.0 / np.sqrt(np.maximum(pca.explained_variance_, 1e-12)) if self.whiten else np.ones(len(pca.components_))
        self._projection = np.ascontiguousarray((pca.components_.T * scale).astype(np.float32))
        self.n_features_in_ = d
        self.n_features_out_ = int(self.components_.shape[0])
        return self

    def transform(self, X) -> list[DescriptorSet]:
        """Project every descriptor set.

        Parameters
        ----------
        X : list of DescriptorSet

        Returns
        -------
        list of DescriptorSet
            Descriptors ``(n_i, n_features_out_)`` float32, same positions and scales.
        """
        check_is_fitted(self, "components_")
        sets = check_descriptor_sets(X)
        if sets[0].n_features != self.n_features_in_:
            raise ValueError(
                f"descriptor sets have dimension {sets[0].n_features}, but DescriptorPCA was "
                f"fitted on dimension {self.n_features_in_}"
            )
        return [
            s.with_descriptors((np.asarray(s.descriptors, np.float32) - self.mean_) @ self._projection)
            for s in sets
        ]
