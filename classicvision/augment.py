"""Mirror augmentation for image classifiers: train (and optionally test) on left-right flips."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import check_images

__all__ = ["MirrorAugmented", "mirror_images"]


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

    @_fit_context(prefer_skip_nested_validation=False)
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
        images = check_images(X, filenames=filenames)
        y = column_or_1d(y, warn=True)
        if len(y) != len(images):
            raise ValueError(f"got {len(images)} images but {len(y)} labels")
        check_classification_targets(y)
        self.estimator_ = clone(self.estimator).fit(images + mirror_images(images), np.concatenate([y, y]))
        self.classes_ = self.estimator_.classes_
        return self

    def _averaged(self, method: str, X):
        check_is_fitted(self)
        images = check_images(X)
        out = np.asarray(getattr(self.estimator_, method)(images), dtype=np.float64)
        if self.test_time:
            out = 0.5 * (out + np.asarray(getattr(self.estimator_, method)(mirror_images(images))))
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
