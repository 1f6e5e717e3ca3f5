"""ImageEncoder: images -> 2-D features, streaming extract -> reduce -> encode."""

from __future__ import annotations

import os
import shutil
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..base import DescriptorSet, check_images
from ..base import is_lazy_sequence as _is_lazy
from ..utils.validation import HasMethods, Interval, fit_context

__all__ = ["ImageEncoder"]


def _materialize(images):
    """The images of a chunk as a list (a lazy chunk is decoded here, in the worker)."""
    return [images[i] for i in range(len(images))] if _is_lazy(images) else images


def _source_id(images) -> str:
    """What the images are, for a resumable store: a lazy sequence's fingerprint, or a
    hash of the pixels."""
    if _is_lazy(images):
        fp = images.fingerprint
        return "lazy:" + str(fp() if callable(fp) else fp)
    import joblib

    return "pixels:" + joblib.hash([np.asarray(im) for im in images])


def _extract(extractor, images, offset):
    """Run the extractor on a chunk, naming the global image index on failure."""
    images = _materialize(images)
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


def _encode_to_store(extractor, reducer, encoder, images, offset, store, chunk_size):
    """Encode the rows ``offset ..`` of one store chunk and write them into the store
    (opened by path in this process); the caller gets nothing back."""
    parts = [_encode(extractor, reducer, encoder, images[a : a + chunk_size], offset + a)
             for a in range(0, len(images), chunk_size)]
    store.write(offset, np.concatenate(parts, axis=0).astype(np.float32, copy=False))


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
        Images per chunk in ``transform`` (and per task of :meth:`transform_to_store`).
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

    ``X`` may be a lazy sequence (:class:`classicvision.datasets.LazyImages`, or
    any object with ``len``, slicing, integer-array indexing and a
    ``fingerprint``): it is never decoded as a whole. The fit images are a lazy
    subset of it, every chunk task decodes its own images (in the worker
    process), and what ``fit`` holds is the sample of descriptors (at most
    ``fit_descriptors``). Such input is checked image by image as the extractor
    reads it, not up front. :meth:`transform_to_store` writes the features to
    disk chunk by chunk, so neither the images nor the features are ever held
    whole.
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
        imgs = images if _is_lazy(images) else check_images(images)
        n = len(imgs)
        if n == 0:
            raise ValueError("ImageEncoder: got an empty sequence of images")
        rng = check_random_state(self.random_state)
        if self.fit_images is None:
            idx = np.arange(n)
        else:
            k = self.fit_images if isinstance(self.fit_images, Integral) else int(np.ceil(self.fit_images * n))
            idx = np.sort(rng.choice(n, min(n, max(1, k)), replace=False))
        fit_imgs = imgs[idx] if _is_lazy(imgs) else [imgs[i] for i in idx]
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
        X : sequence of (H, W[, 3]) uint8 arrays, (N, H, W[, 3]) array, or lazy sequence
            A lazy sequence (``LazyImages``) is not decoded as a whole (see Notes).
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
        X : sequence of (H, W[, 3]) uint8 arrays, (N, H, W[, 3]) array, or lazy sequence

        Returns
        -------
        features : (n_images, n_features_out_) ndarray of float32
        """
        check_is_fitted(self, "encoder_")
        return self._transform(X if _is_lazy(X) else check_images(X))

    def transform_to_store(self, X, path, *, dtype: str = "float32", resume: bool = True,
                           chunk_rows: int | None = None):
        """Encode images into an on-disk :class:`~classicvision.store.FeatureStore`.

        Each task (``chunk_rows`` images, ``n_jobs`` of them at a time through
        joblib: processes, or a Dask cluster under ``joblib.parallel_config
        (backend="dask")``) encodes its images and writes its rows into the store
        itself, opening it by path: the caller holds neither the images (for a
        lazy ``X``) nor the features. The rows equal those of :meth:`transform`
        (the same ``chunk_size`` chunks are encoded). A store left incomplete by
        a killed run is finished by calling this again with ``resume=True``,
        which encodes only its missing chunks.

        Parameters
        ----------
        X : sequence of (H, W[, 3]) uint8 arrays, (N, H, W[, 3]) array, or lazy sequence
        path : str or os.PathLike
            The store's folder.
        dtype : {"float32", "float16"}, default="float32"
            Storage type (float16: half the disk, about 3 significant digits; see
            :class:`~classicvision.store.FeatureStore`).
        resume : bool, default=True
            ``True``: an existing store at ``path`` written by this fitted encoder
            from the same images, with the same layout, is completed (its
            written chunks are kept); one from other features raises
            ``ValueError``. ``False``: an existing store there is removed first.
        chunk_rows : int or None, default=None
            Rows per store chunk and per task: a multiple of ``chunk_size``
            (default ``chunk_size``).

        Returns
        -------
        store : FeatureStore
            Complete, ``(n_images, n_features_out_)``.
        """
        from ..store import _META, FeatureStore

        check_is_fitted(self, "encoder_")
        imgs = X if _is_lazy(X) else check_images(X)
        n = len(imgs)
        if n == 0:
            raise ValueError("ImageEncoder.transform_to_store: got an empty sequence of images")
        cs = int(self.chunk_size)
        rows = cs if chunk_rows is None else int(chunk_rows)
        if rows < 1 or rows % cs:
            raise ValueError(f"ImageEncoder.transform_to_store: chunk_rows={chunk_rows!r} must be a positive "
                             f"multiple of chunk_size={cs}.")
        d = self.n_features_out_
        if not d:
            d = _encode(self.extractor_, self.reducer_, self.encoder_, imgs[0:1], 0).shape[1]
        import joblib

        attrs = {"encoder": joblib.hash((self.extractor_, self.reducer_, self.encoder_)),
                 "images": _source_id(imgs)}
        path = os.fspath(path)
        if not resume and os.path.exists(os.path.join(path, _META)):
            shutil.rmtree(path)
        try:
            store = FeatureStore.create(path, n, int(d), dtype=dtype, chunk_rows=rows, attrs=attrs,
                                        exist_ok=True)
        except ValueError as exc:
            raise ValueError(f"ImageEncoder.transform_to_store: {exc} (pass resume=False to overwrite "
                             "it).") from None
        missing = store.missing_chunks()
        self._parallel(
            delayed(_encode_to_store)(self.extractor_, self.reducer_, self.encoder_, imgs[a:b], a, store, cs)
            for a, b in missing
        )
        return FeatureStore.open(path)

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
