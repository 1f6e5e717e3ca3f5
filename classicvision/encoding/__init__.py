"""Encoders: local descriptors of an image -> one fixed-length vector.

Every encoder is a scikit-learn transformer taking a list of
:class:`~classicvision._base.DescriptorSet` (one per image) and returning a
``(n_images, n_features_out_)`` float32 array, pooled over a
:class:`~classicvision.pooling.SpatialPyramid`. Codebooks and GMMs are fitted
in ``fit`` on a random descriptor sample (``max_descriptors``, ``random_state``).

==================  ==========================================================
``BagOfWords``      hard vector quantization, histograms (Lazebnik 2006)
``SoftAssignment``  kernel codebook / localized soft assignment
``SparseCoding``    ScSPM: lasso codes, max pooling (Yang 2009)
``LLC``             locality-constrained linear coding (Wang 2010)
``FisherVector``    improved Fisher vectors (Perronnin 2010)
``VLAD``            VLAD with intra-normalization (Jegou 2010, Arandjelovic 2013)
``SuperVector``     super-vector coding (Zhou 2010)
``KMeansTriangle``  k-means triangle activation (Coates 2011)
``SoftThreshold``   soft-threshold encoding, sign split (Coates & Ng 2011)
``DescriptorPCA``   PCA of descriptors (DescriptorSet in and out)
``ImageEncoder``    images -> features: extractor, reducer, encoder, streamed
==================  ==========================================================
"""

from ._base import (
    BaseEncoder,
    fit_kmeans,
    nearest_codeword,
    sample_descriptors,
    squared_distances,
)
from ._fisher import FisherVector, fisher_from_stats, gmm_posteriors
from ._image_encoder import ImageEncoder
from ._llc import LLC, llc_codes
from ._pca import DescriptorPCA
from ._soft_threshold import SoftThreshold
from ._sparse import SparseCoding, fista_lasso, learn_dictionary, working_set_lasso
from ._supervector import SuperVector
from ._triangle import KMeansTriangle, zca_whitening
from ._vlad import VLAD
from ._vq import BagOfWords, SoftAssignment

__all__ = [
    "BagOfWords",
    "SoftAssignment",
    "SparseCoding",
    "LLC",
    "FisherVector",
    "VLAD",
    "SuperVector",
    "KMeansTriangle",
    "SoftThreshold",
    "DescriptorPCA",
    "ImageEncoder",
    "BaseEncoder",
    "sample_descriptors",
    "squared_distances",
    "nearest_codeword",
    "fit_kmeans",
    "llc_codes",
    "fista_lasso",
    "working_set_lasso",
    "learn_dictionary",
    "gmm_posteriors",
    "fisher_from_stats",
    "zca_whitening",
]
