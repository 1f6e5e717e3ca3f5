"""Kernel SVM on precomputed (additive) kernels, predicting from support vectors only."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from numbers import Real

import numpy as np
from joblib import parallel_config
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics.pairwise import linear_kernel, rbf_kernel
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils.validation import Interval, StrOptions, fit_context
from ._additive import chi2_kernel, hellinger_kernel, intersection_kernel

__all__ = ["KernelSVC", "clear_kernel_cache"]

_HISTOGRAM_KERNELS = {
    "intersection": intersection_kernel,
    "chi2": chi2_kernel,
    "hellinger": hellinger_kernel,
}

# --- a small process-wide cache of training Gram matrices ----------------------
# GridSearchCV clones the estimator for every C, so an attribute cannot carry the
# Gram matrix from one candidate to the next; a content-addressed cache can.
_CACHE_MAX_BYTES = 512 * 2**20
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def clear_kernel_cache() -> None:
    """Empty the Gram-matrix cache used by ``KernelSVC(cache_kernel=True)``."""
    with _cache_lock:
        _cache.clear()


def _array_key(X: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{X.shape}{X.dtype.str}".encode())
    h.update(np.ascontiguousarray(X).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def _cached_gram(key, compute):
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    K = compute()
    if K.nbytes <= _CACHE_MAX_BYTES // 2:
        K.setflags(write=False)
        with _cache_lock:
            _cache[key] = K
            total = sum(v.nbytes for v in _cache.values())
            while total > _CACHE_MAX_BYTES and len(_cache) > 1:
                _, old = _cache.popitem(last=False)
                total -= old.nbytes
    return K


def _ovr_from_ovo(votes_pred: np.ndarray, confidences: np.ndarray, n_classes: int) -> np.ndarray:
    """One-vs-rest scores from one-vs-one decisions (votes plus a bounded tie breaker).

    Same construction as scikit-learn's SVC with ``decision_function_shape="ovr"``.
    """
    n = votes_pred.shape[0]
    votes = np.zeros((n, n_classes))
    sum_conf = np.zeros((n, n_classes))
    k = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            sum_conf[:, i] -= confidences[:, k]
            sum_conf[:, j] += confidences[:, k]
            votes[votes_pred[:, k] == 0, i] += 1
            votes[votes_pred[:, k] == 1, j] += 1
            k += 1
    transformed = sum_conf / (3 * (np.abs(sum_conf) + 1))
    return votes + transformed


class KernelSVC(ClassifierMixin, BaseEstimator):
    """SVM classifier on additive histogram kernels via a precomputed Gram matrix.

    ``fit`` computes the training Gram matrix with the chosen kernel and trains
    :class:`sklearn.svm.SVC` (``kernel="precomputed"``, libsvm) machines on it:
    one per pair of classes (``multi_class="ovo"``, libsvm's own scheme) or one
    per class against all the others (``multi_class="ovr"``, the scheme of
    Lazebnik et al. 2006). ``predict`` / ``decision_function`` evaluate the
    kernel only against the stored support vectors, not all training rows.

    Parameters
    ----------
    kernel : {"intersection", "chi2", "hellinger", "rbf", "linear"} or callable, default="intersection"
        Histogram intersection ``sum min(x, y)`` (Lazebnik et al. 2006), additive
        chi2 ``sum 2 x y / (x + y)``, Hellinger ``sum sqrt(x y)``, Gaussian RBF
        ``exp(-gamma ||x - y||^2)``, plain dot product, or ``f(X, Y) -> (n_X, n_Y)``.
        The histogram kernels require non-negative ``X``.
    C : float > 0, default=1.0
        Soft-margin penalty.
    gamma : float > 0 or None, default=None
        RBF width; ``None`` means ``1 / (n_features * X.var())`` (sklearn's "scale").
        Ignored by the other kernels.
    class_weight : dict, "balanced" or None, default=None
        Per-class multiplier of ``C`` (as in :class:`~sklearn.svm.SVC`). With
        ``multi_class="ovr"``, None or ``"balanced"`` (each machine weighs its
        class against the rest in inverse proportion to their sizes).
    probability : bool, default=False
        Enable ``predict_proba``: Platt (sigmoid) calibration of the decision
        values by :class:`~sklearn.calibration.CalibratedClassifierCV` with 5-fold
        out-of-fold predictions (``ensemble=False``); training costs ~6 SVM fits.
    cache_kernel : bool, default=True
        Keep training Gram matrices in a process-wide LRU cache (512 MiB), keyed
        by a hash of ``X``, the kernel and ``gamma``; refits on the same data with
        another ``C`` (e.g. in :class:`~sklearn.model_selection.GridSearchCV`)
        then skip the kernel computation. Callable kernels are never cached.
    tol : float > 0, default=1e-3
        libsvm stopping tolerance.
    multi_class : {"ovo", "ovr"}, default="ovo"
        How more than two classes are learned. ``"ovo"``: libsvm's one-vs-one
        machines (``K (K - 1) / 2`` of them, each on two classes' samples) and
        voting. ``"ovr"``: one machine per class, trained on all samples with
        that class positive, and the label of the highest decision value
        ("one-versus-all", Lazebnik et al. 2006). With many classes of few
        samples each, one-vs-one voting favours classes whose pairwise machines
        err in their favour; one-vs-rest compares every class on one scale.
    decision_function_shape : {"ovr", "ovo"}, default="ovr"
        Shape of ``decision_function`` for more than two classes with
        ``multi_class="ovo"`` (``"ovo"`` gives the raw pairwise values);
        with ``multi_class="ovr"`` the scores are always one per class.
    n_jobs : int or None, default=None
        Threads for the histogram-kernel computation and, with
        ``multi_class="ovr"``, for training the per-class machines.

    Attributes
    ----------
    classes_ : (n_classes,) ndarray
    support_ : (n_SV,) ndarray of int
        Indices of the support vectors in the training set.
    support_vectors_ : (n_SV, n_features) ndarray
    n_support_ : (n_classes,) ndarray of int32
    dual_coef_ : (n_classes - 1, n_SV) ndarray, or (n_classes, n_SV) with ``"ovr"``
        With ``"ovr"``, row ``k`` holds the weights of class ``k``'s machine on
        the (union of the) support vectors, zero where a vector is not one of its own.
    intercept_ : (n_classes * (n_classes - 1) / 2,) ndarray, or (n_classes,) with ``"ovr"``
    svc_ : sklearn.svm.SVC or sklearn.multiclass.OneVsRestClassifier
        The fitted precomputed-kernel SVC (or the per-class SVCs with ``"ovr"``).
    calibrator_ : sklearn.calibration.CalibratedClassifierCV
        Only with ``probability=True``.
    gamma_ : float or None
        Resolved RBF ``gamma``.
    n_features_in_ : int

    See Also
    --------
    HomogeneousKernelMap : explicit maps so a linear SVM can replace this on large data.

    Notes
    -----
    Training time and memory are ``O(n_samples^2)`` (Gram matrix); beyond a few
    ten thousand samples use :class:`HomogeneousKernelMap` with a linear SVM.
    The decision values are computed here from ``dual_coef_`` and the kernel
    against support vectors; they equal ``svc_``'s on the full test-train kernel.
    Probabilities are one-vs-rest sigmoid calibrations (normalized), not
    libsvm's pairwise coupling.

    References
    ----------
    .. [1] S. Lazebnik, C. Schmid and J. Ponce, "Beyond bags of features: spatial
       pyramid matching for recognizing natural scene categories", CVPR 2006.
       https://doi.org/10.1109/CVPR.2006.68
    .. [2] S. Maji, A. C. Berg and J. Malik, "Classification using intersection
       kernel support vector machines is efficient", CVPR 2008.
       https://doi.org/10.1109/CVPR.2008.4587630
    .. [3] C.-C. Chang and C.-J. Lin, "LIBSVM: a library for support vector
       machines", ACM TIST 2(3), 2011. https://doi.org/10.1145/1961189.1961199

    Examples
    --------
    >>> import numpy as np
    >>> from classicvision.kernels import KernelSVC
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    >>> KernelSVC(kernel="intersection", C=10).fit(X, [0, 0, 1, 1]).predict([[0.8, 0.2]])
    array([0])
    """

    _parameter_constraints: dict = {
        "kernel": [StrOptions({"intersection", "chi2", "hellinger", "rbf", "linear"}), callable],
        "C": [Interval(Real, 0, None, closed="neither")],
        "gamma": [Interval(Real, 0, None, closed="neither"), None],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "probability": ["boolean"],
        "cache_kernel": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "multi_class": [StrOptions({"ovo", "ovr"})],
        "decision_function_shape": [StrOptions({"ovr", "ovo"})],
        "n_jobs": [int, None],
    }

    def __init__(
        self,
        *,
        kernel="intersection",
        C=1.0,
        gamma=None,
        class_weight=None,
        probability=False,
        cache_kernel=True,
        tol=1e-3,
        multi_class="ovo",
        decision_function_shape="ovr",
        n_jobs=None,
    ):
        self.kernel = kernel
        self.C = C
        self.gamma = gamma
        self.class_weight = class_weight
        self.probability = probability
        self.cache_kernel = cache_kernel
        self.tol = tol
        self.multi_class = multi_class
        self.decision_function_shape = decision_function_shape
        self.n_jobs = n_jobs

    # -- kernels -------------------------------------------------------------------
    def _kernel(self, X, Y):
        kernel = self.kernel
        if callable(kernel):
            K = np.asarray(kernel(X, Y), dtype=np.float64)
            if K.shape != (X.shape[0], Y.shape[0]):
                raise ValueError(
                    f"The callable kernel returned shape {K.shape}, expected "
                    f"{(X.shape[0], Y.shape[0])}."
                )
            return K
        if kernel in ("intersection", "chi2"):
            return _HISTOGRAM_KERNELS[kernel](X, Y, n_jobs=self.n_jobs)
        if kernel == "hellinger":
            return hellinger_kernel(X, Y)
        if kernel == "rbf":
            return rbf_kernel(X, Y, gamma=self.gamma_)
        return linear_kernel(X, Y)

    def _check_X(self, X, reset):
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=reset)
        if self.kernel in _HISTOGRAM_KERNELS and X.size and X.min() < 0:
            raise ValueError(
                f"Negative values in data passed to KernelSVC(kernel={self.kernel!r}): "
                f"histogram kernels need non-negative features (minimum {X.min():.4g})."
            )
        return X

    # -- fit -----------------------------------------------------------------------
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Compute the training Gram matrix and fit the SVM.

        Parameters
        ----------
        X : (n_samples, n_features) array-like
            Non-negative for the histogram kernels.
        y : (n_samples,) array-like
            Class labels (at least two classes).

        Returns
        -------
        self : KernelSVC
        """
        X = self._check_X(X, reset=True)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            X, y = validate_data(self, X, y, reset=True)
        check_classification_targets(y)
        ovr = self.multi_class == "ovr" and len(np.unique(y)) > 2
        if ovr and self.class_weight is not None and not isinstance(self.class_weight, str):
            # refused before the Gram matrix is computed
            raise ValueError("multi_class='ovr' takes class_weight=None or 'balanced' "
                             f"(each machine has two classes), got {self.class_weight!r}")
        if self.kernel == "rbf":
            if self.gamma is None:
                var = float(X.var())
                self.gamma_ = 1.0 / (X.shape[1] * var) if var > 0 else 1.0
            else:
                self.gamma_ = float(self.gamma)
        else:
            self.gamma_ = None

        def compute():
            return self._kernel(X, X)

        if self.cache_kernel and not callable(self.kernel):
            key = (self.kernel, self.gamma_, _array_key(X))
            K = _cached_gram(key, compute)
        else:
            K = compute()

        svc = SVC(
            kernel="precomputed",
            C=self.C,
            class_weight=self.class_weight,
            tol=self.tol,
            decision_function_shape=self.decision_function_shape,
        )
        if ovr:
            return self._fit_ovr(svc, K, X, y)
        svc = self._fit_svc(svc, K, y)
        self.svc_ = svc
        self.classes_ = svc.classes_
        self.support_ = svc.support_
        self.support_vectors_ = X[svc.support_].copy()
        self.n_support_ = svc.n_support_
        self.dual_coef_ = svc.dual_coef_
        self.intercept_ = svc.intercept_
        self._n_train = X.shape[0]
        self._ovo_coef = self._build_ovo_coef()
        return self

    def _fit_svc(self, est, K, y):
        """``est`` fitted on the Gram matrix ``K``; with ``probability``, the estimator
        refitted on all rows inside a sigmoid calibration on 5-fold out-of-fold decision
        values (``calibrator_``; SVC(probability=True) is deprecated in scikit-learn 1.9).
        The CV splitter slices the Gram matrix pairwise."""
        if not self.probability:
            return est.fit(K, y)
        calibrator = CalibratedClassifierCV(est, method="sigmoid", cv=5, ensemble=False)
        calibrator.fit(K, y)
        self.calibrator_ = calibrator
        return calibrator.calibrated_classifiers_[0].estimator

    def _fit_ovr(self, svc, K, X, y):
        """One machine per class on the whole Gram matrix; the support vectors of all
        machines are stored once, with a column of weights per class."""
        # threads: libsvm releases the GIL, and the machines share the one Gram matrix
        with parallel_config(backend="threading"):
            ovr = self._fit_svc(OneVsRestClassifier(svc, n_jobs=self.n_jobs), K, y)
        machines = ovr.estimators_
        support = np.unique(np.concatenate([m.support_ for m in machines]))
        position = np.full(X.shape[0], -1)
        position[support] = np.arange(len(support))
        coef = np.zeros((len(machines), len(support)))
        for k, m in enumerate(machines):
            coef[k, position[m.support_]] = m.dual_coef_[0]
        self.svc_ = ovr
        self.classes_ = ovr.classes_
        self.support_ = support
        self.support_vectors_ = X[support].copy()
        self.n_support_ = np.array([len(m.support_) for m in machines], dtype=np.int32)
        self.dual_coef_ = coef
        self.intercept_ = np.array([m.intercept_[0] for m in machines])
        self._n_train = X.shape[0]
        self._ovo_coef = coef.T
        return self

    def _build_ovo_coef(self):
        """(n_SV, n_pairs) weights so that decision_ovo = K_sv @ W + intercept_."""
        n_classes = len(self.classes_)
        if n_classes == 2:
            return self.dual_coef_[0][:, None]
        starts = np.concatenate([[0], np.cumsum(self.n_support_)])
        W = np.zeros((len(self.support_), n_classes * (n_classes - 1) // 2))
        p = 0
        for i in range(n_classes):
            si = slice(starts[i], starts[i + 1])
            for j in range(i + 1, n_classes):
                sj = slice(starts[j], starts[j + 1])
                W[si, p] = self.dual_coef_[j - 1, si]
                W[sj, p] = self.dual_coef_[i, sj]
                p += 1
        return W

    # -- prediction ----------------------------------------------------------------
    def _decision_ovo(self, X):
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        K = self._kernel(X, self.support_vectors_.astype(X.dtype, copy=False))
        return np.asarray(K, dtype=np.float64) @ self._ovo_coef + self.intercept_

    def decision_function(self, X):
        """Signed distances to the separating hyperplanes.

        Parameters
        ----------
        X : (n_samples, n_features) array-like

        Returns
        -------
        scores : (n_samples,) or (n_samples, n_classes) or (n_samples, n_pairs) ndarray
            1-D for two classes (positive means ``classes_[1]``); otherwise
            one-vs-rest scores, or the raw one-vs-one values when
            ``decision_function_shape="ovo"``.
        """
        dec = self._decision_ovo(X)
        if len(self.classes_) == 2:
            return dec[:, 0]
        if self._is_ovr():
            return dec
        if self.decision_function_shape == "ovo":
            return dec
        return _ovr_from_ovo((dec < 0).astype(int), -dec, len(self.classes_))

    def _is_ovr(self) -> bool:
        return self.multi_class == "ovr" and len(self.classes_) > 2

    def predict(self, X):
        """Predict class labels: one-vs-one voting (libsvm's rule), or with
        ``multi_class="ovr"`` the class of the highest decision value.

        Parameters
        ----------
        X : (n_samples, n_features) array-like

        Returns
        -------
        y_pred : (n_samples,) ndarray
        """
        dec = self._decision_ovo(X)
        n_classes = len(self.classes_)
        if n_classes == 2:
            return self.classes_[(dec[:, 0] >= 0).astype(int)]
        if self._is_ovr():
            return self.classes_[np.argmax(dec, axis=1)]
        votes = np.zeros((dec.shape[0], n_classes), dtype=np.int64)
        p = 0
        for i in range(n_classes):
            for j in range(i + 1, n_classes):
                pos = dec[:, p] > 0
                votes[:, i] += pos
                votes[:, j] += ~pos
                p += 1
        return self.classes_[np.argmax(votes, axis=1)]

    def _full_kernel(self, X):
        """Test-vs-train kernel with zeros off the support vectors (for libsvm)."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        K = np.zeros((X.shape[0], self._n_train))
        K[:, self.support_] = self._kernel(X, self.support_vectors_.astype(X.dtype, copy=False))
        return K

    def _has_probability(self):
        return self.probability

    @available_if(_has_probability)
    def predict_proba(self, X):
        """Platt-scaled class probabilities (requires ``probability=True``).

        Parameters
        ----------
        X : (n_samples, n_features) array-like

        Returns
        -------
        proba : (n_samples, n_classes) ndarray
        """
        return self.calibrator_.predict_proba(self._full_kernel(X))

    @available_if(_has_probability)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.kernel in _HISTOGRAM_KERNELS:
            tags.input_tags.positive_only = True
        return tags
