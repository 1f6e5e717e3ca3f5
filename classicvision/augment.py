"""Mirror augmentation: train (and test) on left-right flips, or mirror-symmetric features."""

from __future__ import annotations

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    TransformerMixin,
    clone,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .base import check_images
from .utils.validation import HasMethods, fit_context

__all__ = ["MirrorAugmented", "MirrorSymmetric", "mirror_images", "with_mirrors"]


def mirror_images(images) -> list:
    """Left-right mirror of every image.

    Parameters
    ----------
    images : sequence of (H, W) or (H, W, C) ndarray, or (N, H, W[, C]) ndarray

    Returns
    -------
    list of ndarray
        Each image with its columns reversed (contiguous copies).
    """
    return [np.ascontiguousarray(im[:, ::-1]) for im in images]


def with_mirrors(images, y=None):
    """The images followed by their left-right mirrors, and the labels repeated.

    The training set of :class:`MirrorAugmented`, for callers that fit its steps
    themselves (``bench`` caches the features of the mirrors with the others).

    Parameters
    ----------
    images : (N, H, W[, C]) ndarray, or sequence of (H, W) or (H, W, C) ndarray
    y : (N,) array-like or None, default=None

    Returns
    -------
    images : (2N, H, W[, C]) ndarray, or list of 2N ndarray
        An array stays an array (mirrors as a contiguous copy); a sequence becomes a
        list of the images and then their mirrors.
    y : (2N,) ndarray
        Only when ``y`` is given: ``y`` twice.
    """
    if isinstance(images, np.ndarray) and images.ndim >= 3 and images.dtype != object:
        out = np.concatenate([images, images[:, :, ::-1]])
    else:
        out = list(images) + mirror_images(images)
    if y is None:
        return out
    y = np.asarray(y)
    return out, np.concatenate([y, y])


def _images_and_labels(X, y, filenames=None):
    """Checked images, and labels as a 1-D array of the same length (or None)."""
    images = check_images(X, filenames=filenames)
    if y is None:
        return images, None
    y = column_or_1d(y, warn=True)
    if len(y) != len(images):
        raise ValueError(f"got {len(images)} images but {len(y)} labels")
    return images, y


def _final_has(method: str):
    def check(self) -> bool:
        est = getattr(self, "estimator_", self.estimator)
        return hasattr(est, method)

    return check


class MirrorAugmented(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit an image classifier on every training image and its mirror image.

    The training set is doubled with the left-right flip of each image (same
    label), the cheapest augmentation of the CNN era and the one CIFAR-10 CNNs
    train with; with ``test_time=True`` the scores of a test image and of its
    mirror are averaged before the arg-max.

    Parameters
    ----------
    estimator : classifier taking a sequence of images
        For example a :func:`~classicvision.presets.make_preset` pipeline.
    test_time : bool, default=True
        Average ``decision_function`` (or ``predict_proba``) over the image and
        its mirror at prediction time (doubles the cost of prediction).

    Attributes
    ----------
    estimator_ : classifier
        The clone of ``estimator`` fitted on the ``2 n`` images.
    classes_ : ndarray of shape (n_classes,)

    Notes
    -----
    Mirroring only makes sense for classes that are left-right symmetric as
    categories (objects, scenes), not for text or digits.

    References
    ----------
    .. [1] A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet Classification
       with Deep Convolutional Neural Networks", NIPS 2012 (training on
       horizontal reflections, averaging predictions over them at test time).

    Examples
    --------
    >>> from classicvision.augment import MirrorAugmented
    >>> from classicvision.presets import make_preset
    >>> clf = MirrorAugmented(make_preset("hog_svm", n_components=200))
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"])],
        "test_time": ["boolean"],
    }

    def __init__(self, estimator, *, test_time=True):
        self.estimator = estimator
        self.test_time = test_time

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, filenames=None):
        """Fit a clone of ``estimator`` on the images and their mirrors.

        Parameters
        ----------
        X : sequence of (H, W) or (H, W, C) ndarray, or (N, H, W[, C]) ndarray
        y : (N,) array-like of class labels
        filenames : sequence of str, optional
            Used to name an offending image in error messages.

        Returns
        -------
        self : MirrorAugmented
        """
        images, y = _images_and_labels(X, y, filenames)
        check_classification_targets(y)
        self.estimator_ = clone(self.estimator).fit(*with_mirrors(images, y))
        self.classes_ = self.estimator_.classes_
        return self

    @classmethod
    def from_fitted(cls, estimator, *, test_time: bool = True) -> MirrorAugmented:
        """A fitted wrapper around an ``estimator`` already fitted on the images and
        their mirrors (:func:`with_mirrors`), as :meth:`fit` would have made it.

        Parameters
        ----------
        estimator : fitted classifier
            Becomes ``estimator_`` (and, unfitted clones aside, ``estimator``).
        test_time : bool, default=True

        Returns
        -------
        MirrorAugmented
            Fitted: ``estimator_`` is ``estimator``, ``classes_`` its classes.
        """
        check_is_fitted(estimator)
        wrapper = cls(estimator, test_time=test_time)
        wrapper.estimator_ = estimator
        wrapper.classes_ = estimator.classes_
        return wrapper

    @staticmethod
    def average_mirrored(scores) -> np.ndarray:
        """Average the scores of each image and of its mirror.

        Parameters
        ----------
        scores : (2N, ...) array-like
            The scores of the images of :func:`with_mirrors`: the N images, then their
            mirrors in the same order.

        Returns
        -------
        (N, ...) ndarray of float64
        """
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape[0] % 2:
            raise ValueError(f"scores of images and their mirrors come in pairs, got {scores.shape[0]} rows")
        n = scores.shape[0] // 2
        return 0.5 * (scores[:n] + scores[n:])

    def _averaged(self, method: str, X):
        check_is_fitted(self)
        images = check_images(X)
        out = np.asarray(getattr(self.estimator_, method)(images), dtype=np.float64)
        if self.test_time:
            mirrored = np.asarray(getattr(self.estimator_, method)(mirror_images(images)), dtype=np.float64)
            out = self.average_mirrored(np.concatenate([out, mirrored]))
        return out

    @available_if(_final_has("decision_function"))
    def decision_function(self, X):
        """Decision values, averaged over each image and its mirror when ``test_time``.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        scores : (n_images,) or (n_images, n_classes) ndarray of float64
        """
        return self._averaged("decision_function", X)

    @available_if(_final_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities, averaged over each image and its mirror when ``test_time``.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        proba : (n_images, n_classes) ndarray of float64
        """
        return self._averaged("predict_proba", X)

    def predict(self, X):
        """Class of each image (arg-max of the averaged scores when ``test_time``).

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        y_pred : (n_images,) ndarray
        """
        check_is_fitted(self)
        if not self.test_time:
            return self.estimator_.predict(check_images(X))
        if hasattr(self.estimator_, "decision_function"):
            scores = self.decision_function(X)
            if scores.ndim == 1:
                return self.classes_[(scores > 0).astype(int)]
        else:
            scores = self.predict_proba(X)
        return self.classes_[np.argmax(scores, axis=1)]


class MirrorSymmetric(MetaEstimatorMixin, TransformerMixin, BaseEstimator):
    """Mirror-symmetric image features: ``T(image) + T(mirror(image))``.

    Wraps an image-to-features transformer ``T`` (for example an
    :class:`~classicvision.encoding.ImageEncoder`) so that an image and its
    left-right mirror get the same feature vector. A linear classifier on these
    features scores every image as the sum of its scores on the image and on
    the mirror, as a model trained on both and averaged over both at test time
    does, but it trains on ``n`` rows instead of the ``2 n`` of
    :class:`MirrorAugmented`.

    For pooled codes the equivalence is exact when mirroring a patch permutes its
    descriptor (raw pixels, or whitened ones with a whitening that commutes with the
    mirror, which ``fit_mirrors`` makes nearly so), the patch grid and the pooling
    cells are symmetric about the vertical axis (patches every pixel, or every
    ``step`` pixels when ``step`` divides ``width - patch``; 1x1, 2x2, 4x4 cells...)
    and the code of each word
    depends only on the descriptor and that word (the soft threshold of
    :class:`~classicvision.encoding.SoftThreshold`; not the triangle activation,
    whose mean distance runs over the whole dictionary). Then
    ``T(image) + T(mirror(image))`` with ``K`` codewords is the feature vector of a
    ``2 K``-codeword dictionary closed under mirroring (the words and their mirror
    images) folded over its mirror pairs, and the L2-regularized linear model
    trained on the ``2 n`` mirror-augmented images with that dictionary, being
    mirror-symmetric, is a linear model on these folded features. The augmentation
    costs two encodings per image, no extra memory in the classifier, and doubles
    the effective dictionary.

    Parameters
    ----------
    transformer : transformer taking a sequence of images
        Fitted on the training images (and their mirrors, see ``fit_mirrors``).
    fit_mirrors : bool, default=True
        Fit ``transformer`` on the images and their mirrors, so that what it
        learns from a sample (whitening, codebook) is itself close to
        mirror-symmetric. Fitting usually draws a bounded sample of
        descriptors, so this costs little.

    Attributes
    ----------
    transformer_ : transformer
        The fitted clone of ``transformer``.
    n_features_out_ : int
        Width of the features (that of ``transformer_``).

    See Also
    --------
    MirrorAugmented : trains on ``2 n`` images and averages test scores instead.

    Examples
    --------
    >>> import numpy as np
    >>> from classicvision.augment import MirrorSymmetric, mirror_images
    >>> from classicvision.encoding import ImageEncoder, BagOfWords
    >>> from classicvision.features import RawPatches
    >>> rng = np.random.RandomState(0)
    >>> images = rng.randint(0, 256, (6, 16, 16, 3)).astype(np.uint8)
    >>> sym = MirrorSymmetric(ImageEncoder(RawPatches(patch_size=4, step=2),
    ...                                    BagOfWords(n_words=5, random_state=0)))
    >>> F = sym.fit_transform(images)
    >>> bool(np.allclose(F, sym.transform(mirror_images(images))))
    True
    """

    _parameter_constraints: dict = {
        "transformer": [HasMethods(["fit", "transform"])],
        "fit_mirrors": ["boolean"],
    }

    def __init__(self, transformer, *, fit_mirrors=True):
        self.transformer = transformer
        self.fit_mirrors = fit_mirrors

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit a clone of ``transformer`` on the images (and their mirrors).

        Parameters
        ----------
        X : sequence of (H, W) or (H, W, C) ndarray, or (N, H, W[, C]) ndarray
        y : (N,) array-like or None
            Passed on to ``transformer.fit`` (repeated for the mirrors).

        Returns
        -------
        self : MirrorSymmetric
        """
        images, y = _images_and_labels(X, y)
        if self.fit_mirrors:
            images = images + mirror_images(images)
            y = None if y is None else np.concatenate([y, y])
        self.transformer_ = clone(self.transformer).fit(images, y)
        n_out = getattr(self.transformer_, "n_features_out_", None)
        if n_out is not None:
            self.n_features_out_ = int(n_out)
        return self

    def transform(self, X) -> np.ndarray:
        """Features of every image plus those of its mirror.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        features : (n_images, n_features) ndarray
            Identical for an image and its mirror (the sum is commutative).
        """
        check_is_fitted(self, "transformer_")
        images = check_images(X)
        out = np.asarray(self.transformer_.transform(images))
        if not out.flags.writeable:
            out = out.copy()
        out += np.asarray(self.transformer_.transform(mirror_images(images)), dtype=out.dtype)
        return out

    def get_feature_names_out(self, input_features=None):
        """Feature names of the wrapped transformer."""
        check_is_fitted(self, "transformer_")
        return self.transformer_.get_feature_names_out(input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags
