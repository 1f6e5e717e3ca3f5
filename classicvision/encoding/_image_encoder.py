"""ImageEncoder: images -> 2-D features, streaming extract -> reduce -> encode."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..base import DescriptorSet, check_images
from ..utils.validation import HasMethods, Interval, fit_context

__all__ = ["ImageEncoder"]


def _extract(extractor, images, offset):
    """Run the extractor on a chunk, naming the global image index on failure."""
    try:
        sets = extractor.transform(images)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"in images {offset}..{offset + len(images) - 1}: {exc}") from exc
    sets = list(sets)
    if len(sets) != len(images) or not all(isinstance(s, DescriptorSet) for s in sets):
        raise TypeError(
            f"{type(extractor).__name__}.transform must return one DescriptorSet per image"
        )
    return sets


def _extract_sample(extractor, images, offset, cap, seed):
    sets = _extract(extractor, images, offset)
    rng = np.random.RandomState(seed)
    out, cut = [], False
    for s in sets:
        if len(s) > cap:
            s = s.subset(np.sort(rng.choice(len(s), cap, replace=False)))
            cut = True
        out.append(s)
    return out, cut


def _encode(extractor, reducer, encoder, images, offset):
    sets = _extract(extractor, images, offset)
    if reducer is not None:
        sets = reducer.transform(sets)
    return encoder.transform(sets)


class ImageEncoder(TransformerMixin, BaseEstimator):
    """Images to fixed-length features: extract, (reduce,) encode, in chunks.

    A meta-transformer that chains a feature extractor (images -> list of
    :class:`DescriptorSet`), an optional descriptor reducer (e.g.
    :class:`DescriptorPCA`) and an encoder (list of DescriptorSet -> 2-D array)
    without ever holding the whole dataset's descriptors: ``fit`` keeps a
    per-image random subsample of descriptors (at most ``fit_descriptors`` in
    all), ``transform`` streams through the images ``chunk_size`` at a time.
    Nested parameters work as in scikit-learn meta-estimators
    (``encoder__n_words``, ``extractor__step``).

    Parameters
    ----------
    extractor : transformer
        Maps a list of images to a list of DescriptorSet (``classicvision.features``).
    encoder : transformer
        Maps a list of DescriptorSet to a 2-D array (``classicvision.encoding``).
    reducer : transformer or None, default=None
        Maps a list of DescriptorSet to a list of DescriptorSet, fitted before
        the encoder (e.g. ``DescriptorPCA``).
    fit_images : int, float or None, default=None
        Images used to fit reducer and encoder: None uses all, an int that many
        (drawn at random), a float in (0, 1] that fraction.
    fit_descriptors : int, default=200_000
        Descriptors extracted and held in memory to fit the reducer and the
        encoder on, spread evenly over the fit images (``fit_descriptors //
        n_fit_images`` per image, drawn at random). It bounds the memory of
        ``fit``; how many of them a step fits its model on is the step's own
        ``max_descriptors`` (the encoder's codebook or GMM sample, the
        reducer's PCA sample), drawn by the step from these.
    chunk_size : int, default=64
        Images per chunk in ``transform``.
    n_jobs : int or None, default=None
        joblib jobs over chunks.
    random_state : int, RandomState instance or None, default=None
        Seeds the image and descriptor subsamples (the steps keep their own
        ``random_state``).

    Attributes
    ----------
    extractor_, reducer_, encoder_ : fitted clones of the steps (``reducer_`` may be None).
    fit_indices_ : (n_fit,) ndarray of int
        Images the steps were fitted on.
    n_features_out_ : int

    Notes
    -----
    ``fit_transform`` extracts every fit image once to fit and once to encode;
    when no descriptor had to be dropped (all of them fit in
    ``fit_descriptors``) and all images were fit images, the descriptors from
    fitting are encoded directly and extraction runs only once.
    """

    _parameter_constraints = {
        "extractor": [HasMethods(["transform"])],
        "encoder": [HasMethods(["fit", "transform"])],
        "reducer": [HasMethods(["fit", "transform"]), None],
        "fit_images": [Interval(Integral, 1, None, closed="left"), Interval(Real, 0, 1, closed="right"), None],
        "fit_descriptors": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(self, extractor, encoder, *, reducer=None, fit_images=None, fit_descriptors=200_000,
                 chunk_size=64, n_jobs=None, random_state=None):
        self.extractor = extractor
        self.encoder = encoder
        self.reducer = reducer
        self.fit_images = fit_images
        self.fit_descriptors = fit_descriptors
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags

    def _parallel(self, tasks):
        tasks = list(tasks)
        if self.n_jobs in (None, 1) or len(tasks) == 1:
            return [f(*a) for f, a, _ in tasks]
        return Parallel(n_jobs=self.n_jobs)(tasks)

    def _fit(self, images, y):
        imgs = check_images(images)
        n = len(imgs)
        rng = check_random_state(self.random_state)
        if self.fit_images is None:
            idx = np.arange(n)
        else:
            k = self.fit_images if isinstance(self.fit_images, Integral) else int(np.ceil(self.fit_images * n))
            idx = np.sort(rng.choice(n, min(n, max(1, k)), replace=False))
        fit_imgs = [imgs[i] for i in idx]
        fit_y = None if y is None else np.asarray(y)[idx]
        self.extractor_ = clone(self.extractor)
        if hasattr(self.extractor_, "fit"):
            self.extractor_.fit(fit_imgs, fit_y)
        cap = max(1, self.fit_descriptors // len(idx))
        cs = self.chunk_size
        seeds = rng.randint(np.iinfo(np.int32).max, size=(len(idx) + cs - 1) // cs)
        parts = self._parallel(
            delayed(_extract_sample)(self.extractor_, fit_imgs[a : a + cs], int(idx[a]), cap, seeds[j])
            for j, a in enumerate(range(0, len(idx), cs))
        )
        sets = [s for part, _ in parts for s in part]
        cut = any(c for _, c in parts)
        if self.reducer is not None:
            self.reducer_ = clone(self.reducer).fit(sets, fit_y)
            sets = self.reducer_.transform(sets)
        else:
            self.reducer_ = None
        self.encoder_ = clone(self.encoder).fit(sets, fit_y)
        self.fit_indices_ = idx
        self.n_features_out_ = int(getattr(self.encoder_, "n_features_out_", 0)) or None
        reusable = (not cut) and len(idx) == n
        return imgs, (sets if reusable else None)

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit extractor, reducer and encoder on (a subsample of) the images.

        Parameters
        ----------
        X : sequence of (H, W[, 3]) uint8 arrays, or (N, H, W[, 3]) array
        y : array-like of shape (N,), optional
            Passed to the steps' ``fit``.

        Returns
        -------
        self
        """
        self._fit(X, y)
        return self

    @fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then encode all images (extracting once when possible; see Notes)."""
        imgs, sets = self._fit(X, y)
        if sets is not None:
            out = np.asarray(self.encoder_.transform(sets), dtype=np.float32)
        else:
            out = self._transform(imgs)
        self.n_features_out_ = out.shape[1]
        return out

    def transform(self, X) -> np.ndarray:
        """Encode images chunk by chunk.

        Parameters
        ----------
        X : sequence of (H, W[, 3]) uint8 arrays, or (N, H, W[, 3]) array

        Returns
        -------
        features : (n_images, n_features_out_) ndarray of float32
        """
        check_is_fitted(self, "encoder_")
        return self._transform(check_images(X))

    def _transform(self, imgs):
        cs = self.chunk_size
        parts = self._parallel(
            delayed(_encode)(self.extractor_, self.reducer_, self.encoder_, imgs[a : a + cs], a)
            for a in range(0, len(imgs), cs)
        )
        return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)

    def get_feature_names_out(self, input_features=None):
        """Feature names of the encoder."""
        check_is_fitted(self, "encoder_")
        return self.encoder_.get_feature_names_out()
