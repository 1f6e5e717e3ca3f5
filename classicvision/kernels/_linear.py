"""One-vs-rest L2-regularized linear SVM: torch Newton-CG, liblinear, or out-of-core averaged SGD."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d, validate_data

from ..utils.validation import Interval, StrOptions, fit_context

__all__ = ["LinearSVM"]

_PREDICT_CHUNK = 4096
# below this many multiply-adds per pass over X, thread start-up costs more than it saves
_SMALL_PROBLEM = 20_000_000
_LIBLINEAR_MAX_SAMPLES = 10_000  # "auto" solver: liblinear up to here, Newton-CG above
# "auto" preconditioner: the Gram matrix (d x d, float64 Cholesky) up to this many features
# (a 2 GB float64 matrix and n d^2 multiply-adds), a randomized Nystrom approximation above
_GRAM_MAX_FEATURES = 16_384
_GRAM_CHUNK = 8192
# SGDClassifier keywords LinearSVM(solver="asgd") sets itself
_SGD_SET_HERE = frozenset({"loss", "penalty", "alpha", "fit_intercept", "class_weight", "random_state",
                           "n_jobs", "max_iter", "tol"})


def _is_asgd(estimator) -> bool:
    """``partial_fit`` exists only on ``LinearSVM(solver="asgd")`` (``available_if``)."""
    if estimator.solver != "asgd":
        raise AttributeError(f"LinearSVM.partial_fit needs solver='asgd' (got solver={estimator.solver!r})")
    return True


@contextmanager
def _torch_threads(n_threads):
    import torch

    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _as_tensor(X: np.ndarray, device):
    import torch

    with warnings.catch_warnings():
        # read-only inputs (memmaps) are shared, never written to
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(X)
    return t.to(device) if device != "cpu" else t


class LinearSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM (one-vs-rest, squared hinge, L2) for large dense data, in float32.

    For every class ``c`` it minimizes
    ``1/2 ||w_c||^2 + C sum_i s_i max(0, 1 - y_ic (w_c . x_i + b_c))^2`` with
    ``y_ic = +1`` for class ``c`` and ``-1`` otherwise, and an unregularized bias.
    All classes are solved together as one ``(n_features, n_classes)`` weight
    matrix by a truncated Newton method: conjugate gradients on the
    generalized Hessian (one matrix product with ``X`` and one with ``X.T``
    per CG step, each over all classes at once) and a backtracking line
    search that reuses the CG products, so it costs no extra pass over the
    data. The conjugate gradients are preconditioned by the Hessian with every
    sample active, ``I + 2C [X 1]^T S [X 1]``, computed once: either its
    Cholesky factor (one pass of ``n d^2`` multiply-adds that makes each later
    Newton system nearly well-conditioned) or, for many features, a randomized
    Nystrom approximation of rank ``nystrom_rank`` (two passes of ``n d r``);
    or by the diagonal of the current Hessian (Jacobi, as in LIBLINEAR's
    preconditioned TRON).

    Parameters
    ----------
    C : float > 0, default=1.0
        Inverse regularization strength (as in :class:`~sklearn.svm.LinearSVC`).
    loss : {"squared_hinge", "hinge"}, default="squared_hinge"
        The squared hinge for every solver; the hinge ``max(0, 1 - y z)`` only
        with ``solver="asgd"``.
    fit_intercept : bool, default=True
        Learn an unregularized bias per class.
    class_weight : dict, "balanced" or None, default=None
        Per-class multiplier ``s_i`` of the loss of each sample.
    max_iter : int >= 1, default=50
        Newton iterations.
    tol : float > 0, default=1e-3
        Stop when every class's gradient norm is below ``tol`` times its value at
        the start (``w = 0``).
    max_cg_iter : int >= 1, default=100
        Conjugate-gradient steps per Newton iteration.
    device : str, default="cpu"
        torch device for the solve ("cpu", "cuda", ...); predictions use numpy.
    solver : {"auto", "newton", "liblinear", "asgd"}, default="auto"
        ``"newton"``: the float32 truncated Newton solver described above. Given
        a :class:`~classicvision.store.FeatureStore` (or another store: rows read
        by slices, ``iter_chunks``) it runs out of core, reading ``block_rows``
        rows at a time: the same iterations and the same solution as in memory,
        for one pass over the rows per gradient and per CG step (two for the
        gradient), with only one block of rows and a few ``(n_samples,
        n_classes)`` arrays in memory (plus the preconditioner's).
        ``"liblinear"``: scikit-learn's :class:`~sklearn.svm.LinearSVC` (dual
        coordinate descent, float64), which is faster on small problems.
        ``"asgd"``: averaged stochastic gradient descent, out of core: the rows
        are read ``block_rows`` at a time (from an array, a memmap or a
        :class:`~classicvision.store.FeatureStore`) and fed to scikit-learn's
        :class:`~sklearn.linear_model.SGDClassifier` (``average=True``,
        ``penalty="l2"``, ``alpha = 1 / (C n_samples)``, which is the same
        objective divided by ``C n_samples``) by ``partial_fit``, for
        ``n_passes`` passes; each pass draws a random permutation of the rows
        from ``random_state`` and reads them ``block_rows`` at a time (so data
        stored in class order is shuffled too) [6]_ [7]_. Memory: one block and
        the model.
        ``"minibatch-asgd"``: averaged SGD too, out of core the same way, but on
        all one-vs-rest problems at once and ``batch_size`` rows per step (two
        torch matrix products per step on ``device``), with the step size
        ``eta0 (1 + lambda eta0 t)^-0.75`` and ``eta0`` the inverse of the
        loss's curvature bound estimated on a sample (``eta0_``), the average
        starting after the first pass. ``SGDClassifier`` updates the classes one
        after the other, one row at a time: measured here (2 threads), a pass over
        50,000 x 12,800 features in 10 classes took it 16 s and this solver 3 s;
        at 1,000 classes x 69,632-D, 237 ms and 6.2 ms per image
        (``scripts/svm_pass_cost.py``). ``sgd_params`` and ``partial_fit`` are
        ``"asgd"``'s only.
        ``"auto"`` uses liblinear when ``n_samples <= 10000`` and Newton above
        (never ASGD); a store always gets the out-of-core Newton solver.
    preconditioner : {"auto", "gram", "nystrom", "jacobi"}, default="auto"
        Preconditioner of the conjugate gradients (Newton solver only).
        ``"gram"``: Cholesky factor of ``I + 2C [X 1]^T S [X 1]`` (costs a
        ``(d+1) x (d+1)`` float64 matrix and one ``n d^2`` pass; far fewer CG
        steps on correlated, standardized features). ``"nystrom"``: the same
        matrix with ``[X 1]^T S [X 1]`` replaced by its randomized rank-``r``
        Nystrom approximation (``r = nystrom_rank``; a ``(d+1) x r`` matrix and
        two ``n d r`` passes), exact on the top ``r`` eigendirections and a
        scaled identity on the rest [5]_. ``"jacobi"``: the current Hessian's
        diagonal (no set-up, but many CG steps on correlated features).
        ``"auto"``: ``"gram"`` when ``n_features <= 16384`` and
        ``n_samples >= n_features``, else ``"nystrom"``.
    nystrom_rank : int >= 1, default=1024
        Rank of the Nystrom preconditioner (capped at ``n_features + 1`` and
        ``n_samples``). The sketch is drawn from ``random_state``.
    verbose : int >= 0, default=0
        ``> 0``: print the preconditioner's set-up time and, at each Newton
        iteration, the largest relative gradient norm (per class, against
        ``tol``), the CG steps so far, the elapsed time and an estimate of the
        time left (extrapolating the gradient's decrease, in log scale, linearly
        in time: pessimistic, as Newton's method speeds up near the solution).
    n_threads : int >= 1 or None, default=None
        torch CPU threads during ``fit``; ``None`` keeps torch's setting, except
        for small problems (``n_samples * n_features * n_classes < 2e7``), which
        run on one thread because thread start-up dominates there. ASGD: threads
        over the one-vs-rest classes (``SGDClassifier``'s ``n_jobs``; None: one).
    n_passes : int >= 1, default=10
        ASGD only: passes over the data (``max_iter`` and ``tol`` are the Newton
        solver's and are not used by ASGD, which runs every pass).
    block_rows : int >= 1, default=4096
        ASGD: rows per ``partial_fit`` call (and per read of the data). Newton on
        a store: rows per read.
    batch_size : int >= 1, default=256
        ``"minibatch-asgd"`` only: rows per SGD step (drawn from the block read).
    sgd_params : dict or None, default=None
        ASGD only: keyword arguments of ``SGDClassifier`` that replace this
        class's schedule (``learning_rate``, ``eta0``, ``power_t``, ``average``,
        ``shuffle``). The keywords this class sets from its own parameters
        (``loss``, ``penalty``, ``alpha``, ``fit_intercept``, ``class_weight``,
        ``random_state``, ``n_jobs``, ``max_iter``, ``tol``) are refused. By
        default the step size is ``eta_t = eta0 / t^0.5`` (``learning_rate=
        "invscaling"``, ``t`` the samples seen), the average starts after the
        first pass (``average=n_samples``; from the start with one pass), and
        ``eta0`` is calibrated as in Bottou's ``svmsgd``: of ``eta0 = 2^k /
        mean s_i ||x_i||^2`` for ``k = -2..7`` (``s_i`` the class weight), the one whose single pass over a
        random sample of 1,024 rows gives the lowest objective on that sample
        (``eta0_``). scikit-learn's own default schedule (``learning_rate=
        "optimal"``, ``eta_t = 1 / (alpha (t + t0))``) does not depend on the
        scale of ``x`` and diverges with the squared hinge on wide standardized
        features.
    random_state : int, RandomState instance or None, default=None
        Seeds the randomness of the solvers: liblinear's order of the dual
        coordinates (passed to :class:`~sklearn.svm.LinearSVC`), the Gaussian
        sketch of the Nystrom preconditioner, and ASGD's order of blocks and of
        the rows within a block. Pass an int for reproducible fits.
        ``None``: liblinear draws from numpy's global random state (so its
        ``coef_`` varies slightly from fit to fit), while the Nystrom sketch
        keeps its historical fixed seed 0 (the Newton solver with
        ``random_state=None`` or ``0`` is deterministic and gives the same model).

    Attributes
    ----------
    classes_ : (n_classes,) ndarray
    coef_ : (1, n_features) or (n_classes, n_features) ndarray of float32
        One row for binary problems (positive means ``classes_[1]``).
    intercept_ : (1,) or (n_classes,) ndarray of float32
    n_iter_ : int
        Newton iterations run (liblinear's iterations; ASGD's passes).
    n_cg_iter_ : int
        Conjugate-gradient steps in total (two passes over ``X`` each).
    preconditioner_ : str
        The preconditioner used (``"gram"``, ``"nystrom"`` or ``"jacobi"``;
        ``"none"`` for liblinear).
    solver_ : {"liblinear", "newton", "asgd", "minibatch-asgd"}
        The solver ``fit`` actually used (``solver="auto"`` resolved, see
        :meth:`solver_for`).
    pass_seconds_ : list of float
        ASGD only: wall-clock seconds of each pass (reads included).
    sgd_ : SGDClassifier
        ASGD only: the fitted scikit-learn model (``partial_fit`` continues it).
    eta0_ : float or None
        ASGD only: the calibrated initial step size (None when ``sgd_params``
        sets ``learning_rate``).
    n_features_in_ : int

    See Also
    --------
    sklearn.svm.LinearSVC : liblinear's dual coordinate descent (float64).
    HomogeneousKernelMap : map additive kernels so this model can approximate them.

    Notes
    -----
    * ``X`` is converted to float32 once (float32 input is used without a copy);
      scikit-learn's ``LinearSVC`` converts to float64 and solves the dual one
      class at a time, which is what makes it slow on ``50000 x 6400`` data.
    * Unlike liblinear, the intercept is not regularized (no ``intercept_scaling``).
    * The Newton solver is deterministic given ``random_state`` (only the
      Nystrom sketch is random); liblinear is reproducible with an int
      ``random_state``.
    * Decision values are computed in float64 over row chunks.

    References
    ----------
    .. [1] C.-J. Lin, R. C. Weng and S. S. Keerthi, "Trust region Newton method for
       large-scale logistic regression", JMLR 9, 2008 (TRON, the primal
       Newton-CG solver of LIBLINEAR). https://jmlr.org/papers/v9/lin08b.html
    .. [2] C.-Y. Hsia, W.-L. Chiang and C.-J. Lin, "Preconditioned conjugate
       gradient methods in truncated Newton frameworks for large-scale linear
       classification", ACML 2018. https://proceedings.mlr.press/v95/hsia18a.html
    .. [3] O. Chapelle, "Training a support vector machine in the primal", Neural
       Computation 19(5), 2007. https://doi.org/10.1162/neco.2007.19.5.1155
    .. [4] F. Perronnin, J. Sanchez and T. Mensink, "Improving the Fisher kernel for
       large-scale image classification", ECCV 2010 (linear SVMs on high-dimensional
       encodings). https://doi.org/10.1007/978-3-642-15561-1_11
    .. [5] Z. Frangella, J. A. Tropp and M. Udell, "Randomized Nystrom
       preconditioning", SIAM J. Matrix Anal. Appl. 44(2), 2023.
       https://doi.org/10.1137/21M1466244
    .. [6] B. T. Polyak and A. B. Juditsky, "Acceleration of stochastic
       approximation by averaging", SIAM J. Control Optim. 30(4), 1992;
       W. Xu, "Towards optimal one pass large scale learning with averaged
       stochastic gradient descent", arXiv:1107.2490, 2011.
       https://arxiv.org/abs/1107.2490
    .. [7] Y. Lin, F. Lv, S. Zhu, M. Yang, T. Cour, K. Yu, L. Cao and T. Huang,
       "Large-scale image classification: fast feature extraction and SVM
       training", CVPR 2011 (averaged SGD for the ILSVRC-2010 SVMs).
       https://doi.org/10.1109/CVPR.2011.5995477

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from classicvision.kernels import LinearSVM
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = LinearSVM(C=0.01).fit(X[:1000] / 16, y[:1000])
    >>> clf.coef_.shape
    (10, 64)
    >>> asgd = LinearSVM(C=0.01, solver="asgd", random_state=0).fit(X[:1000] / 16, y[:1000])
    >>> asgd.solver_, asgd.n_iter_, asgd.coef_.shape
    ('asgd', 10, (10, 64))
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "loss": [StrOptions({"squared_hinge", "hinge"})],
        "fit_intercept": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "max_cg_iter": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "solver": [StrOptions({"auto", "newton", "liblinear", "asgd", "minibatch-asgd"})],
        "preconditioner": [StrOptions({"auto", "gram", "nystrom", "jacobi"})],
        "nystrom_rank": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "n_passes": [Interval(Integral, 1, None, closed="left")],
        "block_rows": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "sgd_params": [dict, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        C=1.0,
        loss="squared_hinge",
        fit_intercept=True,
        class_weight=None,
        max_iter=50,
        tol=1e-3,
        max_cg_iter=100,
        device="cpu",
        solver="auto",
        preconditioner="auto",
        nystrom_rank=1024,
        verbose=0,
        n_threads=None,
        n_passes=10,
        block_rows=4096,
        batch_size=256,
        sgd_params=None,
        random_state=None,
    ):
        self.C = C
        self.loss = loss
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.max_cg_iter = max_cg_iter
        self.device = device
        self.solver = solver
        self.preconditioner = preconditioner
        self.nystrom_rank = nystrom_rank
        self.verbose = verbose
        self.n_threads = n_threads
        self.n_passes = n_passes
        self.block_rows = block_rows
        self.batch_size = batch_size
        self.sgd_params = sgd_params
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit one squared-hinge SVM per class (all at once).

        Parameters
        ----------
        X : (n_samples, n_features) array-like, or FeatureStore
            With ``solver="asgd"`` the rows are read ``block_rows`` at a time (a
            float32 or float64 array or memmap is not copied); a store is read
            ``block_rows`` rows at a time by the Newton solver too
            (``solver="newton"`` or ``"auto"``; liblinear needs an array).
        y : (n_samples,) array-like of class labels

        Returns
        -------
        self : LinearSVM
        """
        if self.solver == "asgd":
            return self._fit_asgd(X, y)
        if self.solver == "minibatch-asgd":
            return self._fit_minibatch_asgd(X, y)
        if self.loss != "squared_hinge":
            raise ValueError(f"LinearSVM: loss={self.loss!r} needs solver='asgd' or 'minibatch-asgd' "
                             f"(solver={self.solver!r} solves the squared hinge only).")
        out_of_core = _is_store(X)
        if out_of_core:
            if self.solver == "liblinear":
                raise TypeError("LinearSVM(solver='liblinear') needs the features in memory: pass "
                                "store.to_array(), or use solver='newton' or 'asgd' to read the store "
                                "block by block.")
            X, y = self._chunked_input(X, y, reset=True)
        else:
            X, y = validate_data(self, X, y, dtype=np.float32, order="C")
        classes, y_idx = self._set_classes(y)
        n, d = X.shape
        k = 1 if len(classes) == 2 else len(classes)

        solver = "newton" if out_of_core else self.solver_for(n)
        if solver == "liblinear":
            return self._fit_liblinear(X, y)
        import torch  # only the Newton solver needs torch

        cw = compute_class_weight(self.class_weight, classes=classes, y=y)
        device = self._torch_device()
        n_threads = self.n_threads
        if n_threads is None and n * d * k < _SMALL_PROBLEM:
            n_threads = 1
        precond = self.preconditioner
        if precond == "auto":
            precond = "gram" if d <= _GRAM_MAX_FEATURES and n >= d else "nystrom"
        with torch.no_grad(), _torch_threads(n_threads):
            Xt = _RowBlocks(X, device, self.block_rows) if out_of_core else _as_tensor(X, device)
            yi = torch.from_numpy(y_idx.astype(np.int64)).to(device)
            if k == 1:
                Y = (yi == 1).to(torch.float32)[:, None] * 2 - 1
            else:
                Y = torch.full((n, k), -1.0, device=device)
                Y[torch.arange(n, device=device), yi] = 1.0
            s = torch.from_numpy(cw.astype(np.float32)).to(device)[yi][:, None]
            C = float(self.C)
            t0 = time.perf_counter()
            log = _solver_log(self.verbose, n, d, k)
            if log is not None and precond != "jacobi":
                log(f"building the {precond} preconditioner ...")
            if precond == "gram":
                factor = _gram_factor(Xt, s, C, self.fit_intercept)
            elif precond == "nystrom":
                factor = _nystrom_factor(Xt, s, C, self.fit_intercept, self.nystrom_rank,
                                         seed=_sketch_seed(self.random_state))
            else:
                factor = None
            if log is not None and factor is not None:
                rank = f" of rank {factor[0].shape[1]}" if precond == "nystrom" else ""
                log(f"{precond} preconditioner{rank} built in {time.perf_counter() - t0:.1f}s")
            W, b, n_iter, n_cg = _newton_cg(
                Xt, Y, s, C, self.fit_intercept, self.max_iter,
                float(self.tol), self.max_cg_iter, factor, log,
            )
        self.coef_ = np.ascontiguousarray(W.T.cpu().numpy())
        self.intercept_ = b.cpu().numpy()
        self.n_iter_ = n_iter
        self.n_cg_iter_ = n_cg
        self.preconditioner_ = precond
        self.solver_ = "newton"
        if n_iter >= self.max_iter:
            warnings.warn(
                f"LinearSVM did not reach tol={self.tol} in max_iter={self.max_iter} "
                "Newton iterations; increase max_iter.",
                ConvergenceWarning,
            )
        return self

    def _set_classes(self, y):
        """``classes_`` from the labels ``y``; returns ``(classes, index of each label)``."""
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"LinearSVM needs samples of at least 2 classes; got {len(classes)} class "
                f"({classes[0]!r})."
            )
        self.classes_ = classes
        return classes, y_idx

    def _torch_device(self):
        import torch

        try:
            return torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"LinearSVM: invalid device {self.device!r} ({exc}).") from None

    def solver_for(self, n_samples: int) -> str:
        """The solver ``fit`` would use on ``n_samples`` samples.

        Needs no fitting: it resolves ``solver="auto"`` (liblinear up to 10,000
        samples, Newton above) from the parameters alone. After ``fit``, the
        solver actually used is in ``solver_``.

        Parameters
        ----------
        n_samples : int
            Number of training samples.

        Returns
        -------
        solver : {"liblinear", "newton", "asgd", "minibatch-asgd"}
        """
        if self.solver == "auto":
            return "liblinear" if int(n_samples) <= _LIBLINEAR_MAX_SAMPLES else "newton"
        return self.solver

    def _solver_for(self, n_samples: int) -> str:
        """Former private name of :meth:`solver_for`, kept for existing callers."""
        return self.solver_for(n_samples)

    def _fit_liblinear(self, X, y):
        """Solve the same problem with liblinear (small data); sets the fitted attributes."""
        from sklearn.svm import LinearSVC

        svc = LinearSVC(
            C=self.C, loss="squared_hinge", fit_intercept=self.fit_intercept,
            class_weight=self.class_weight, tol=min(self.tol, 1e-4), max_iter=5000,
            random_state=self.random_state,
        )
        svc.fit(X, y)  # liblinear's own ConvergenceWarning reaches the caller, as Newton's does
        self.coef_ = np.ascontiguousarray(svc.coef_, dtype=np.float32)
        self.intercept_ = np.asarray(svc.intercept_, dtype=np.float32).reshape(-1)
        self.n_iter_ = int(np.max(svc.n_iter_))
        self.n_cg_iter_ = 0
        self.preconditioner_ = "none"
        self.solver_ = "liblinear"
        return self

    # -- averaged SGD ----------------------------------------------------------------
    def _make_sgd(self, X, y, n_samples: int, classes, class_weight, rng):
        """The ``SGDClassifier`` of the ASGD solver for ``n_samples`` training rows,
        its ``eta0`` calibrated on a sample of ``X`` unless ``sgd_params`` sets the schedule."""
        from sklearn.linear_model import SGDClassifier

        extra = dict(self.sgd_params or {})
        refused = sorted(set(extra) & _SGD_SET_HERE)
        if refused:
            raise ValueError(f"LinearSVM: sgd_params may not set {refused}: LinearSVM sets them "
                             "(from C, loss, fit_intercept, class_weight, random_state, n_threads).")
        alpha = 1.0 / (float(self.C) * int(n_samples))
        kw = dict(loss=self.loss, penalty="l2", alpha=alpha, fit_intercept=self.fit_intercept,
                  class_weight=class_weight, random_state=int(rng.randint(np.iinfo(np.int32).max)),
                  n_jobs=self.n_threads, max_iter=1, tol=None, learning_rate="invscaling", power_t=0.5,
                  average=int(n_samples) if self.n_passes > 1 else True)
        self.eta0_ = None
        if "learning_rate" not in extra:
            kw["eta0"] = self.eta0_ = _calibrate_eta0(X, y, classes, kw, rng, SGDClassifier)
        kw.update(extra)
        try:
            return SGDClassifier(**kw)
        except TypeError as exc:
            raise ValueError(f"LinearSVM: sgd_params has a keyword SGDClassifier does not take ({exc}).") from None

    def _set_from_sgd(self, sgd) -> None:
        self.sgd_ = sgd
        self.coef_ = np.ascontiguousarray(sgd.coef_, dtype=np.float32)
        self.intercept_ = np.asarray(sgd.intercept_, dtype=np.float32).reshape(-1)
        self.n_cg_iter_ = 0
        self.preconditioner_ = "none"
        self.solver_ = "asgd"

    def _chunked_input(self, X, y, reset: bool):
        """``(X, y)`` checked without reading all of ``X`` into memory (ASGD, or Newton on a store)."""
        if _is_store(X):
            n, d = X.shape
            y = column_or_1d(y, warn=True)
            check_consistent_length(np.empty((n, 0)), y)
            if reset:
                self.n_features_in_ = d
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif d != self.n_features_in_:
                raise ValueError(f"X has {d} features, but LinearSVM is expecting {self.n_features_in_} "
                                 "features as input.")
            return X, y
        # float32 / float64 arrays and memmaps pass without a copy
        return validate_data(self, X, y, dtype=[np.float32, np.float64], reset=reset)

    def _fit_asgd(self, X, y):
        X, y = self._chunked_input(X, y, reset=True)
        classes, _ = self._set_classes(y)
        n = X.shape[0]
        cw = None
        if self.class_weight is not None:
            cw = dict(zip(classes, compute_class_weight(self.class_weight, classes=classes, y=y)))
        rng = check_random_state(self.random_state)
        sgd = self._make_sgd(X, y, n, classes, cw, rng)
        step = int(self.block_rows)
        self.pass_seconds_ = []
        for _ in range(int(self.n_passes)):
            t0 = time.perf_counter()
            for rows in _shuffled_blocks(n, step, rng):
                sgd.partial_fit(_read_rows(X, rows), y[rows], classes=classes)
            self.pass_seconds_.append(time.perf_counter() - t0)
        self._set_from_sgd(sgd)
        self.n_iter_ = int(self.n_passes)
        return self

    def _fit_minibatch_asgd(self, X, y):
        """Averaged mini-batch SGD on all one-vs-rest problems at once (torch matmuls)."""
        import torch

        X, y = self._chunked_input(X, y, reset=True)
        classes, y_idx = self._set_classes(y)
        n, d = X.shape
        k = 1 if len(classes) == 2 else len(classes)
        cw = compute_class_weight(self.class_weight, classes=classes, y=y).astype(np.float32)
        device = self._torch_device()
        rng = check_random_state(self.random_state)
        with torch.no_grad(), _torch_threads(self.n_threads):
            W, b, self.eta0_, self.pass_seconds_ = _minibatch_asgd(
                X, y_idx, k, cw, float(self.C), self.loss, self.fit_intercept, int(self.n_passes),
                int(self.block_rows), int(self.batch_size), rng, device)
        self.coef_ = np.ascontiguousarray(W.T.cpu().numpy())
        self.intercept_ = b.cpu().numpy()
        self.n_iter_ = int(self.n_passes)
        self.n_cg_iter_ = 0
        self.preconditioner_ = "none"
        self.solver_ = "minibatch-asgd"
        return self

    @available_if(_is_asgd)
    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, n_samples=None):
        """One ASGD step over the rows of ``X`` (exists with ``solver="asgd"`` only).

        Parameters
        ----------
        X : (n, n_features) array-like or FeatureStore
            A chunk of the training data, read ``block_rows`` rows at a time.
        y : (n,) array-like of class labels
        classes : array-like or None
            All the classes; needed on the first call.
        n_samples : int or None
            The size of the whole training set, which sets the regularization
            ``alpha = 1 / (C n_samples)`` (read on the first call). None: the
            rows of the first call, right only when that call holds all the
            training data; pass it when fitting out of core.

        Returns
        -------
        self : LinearSVM
        """
        first = not hasattr(self, "sgd_")
        X, y = self._chunked_input(X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("LinearSVM.partial_fit: the first call needs classes= (all the classes).")
            if n_samples is None:
                n_samples = X.shape[0]
            if self.class_weight == "balanced":
                raise ValueError("LinearSVM.partial_fit: class_weight='balanced' needs all labels at once; "
                                 "use fit, or pass class_weight as a dict.")
            classes = np.unique(np.asarray(classes))
            if len(classes) < 2:
                raise ValueError(f"LinearSVM needs at least 2 classes; got classes={list(classes)!r}.")
            if not isinstance(n_samples, Integral) or n_samples < 1:
                raise ValueError(f"LinearSVM.partial_fit: n_samples must be an int >= 1, got {n_samples!r}.")
            self.classes_ = classes
            rng = check_random_state(self.random_state)
            sgd = self._make_sgd(X, y, int(n_samples), classes, self.class_weight, rng)
            self.n_iter_ = 0
            self.pass_seconds_ = []
        else:
            sgd = self.sgd_
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            if unknown.size:
                raise ValueError(f"LinearSVM.partial_fit: labels {list(unknown)!r} are not in classes_.")
        step = int(self.block_rows)
        for a in range(0, X.shape[0], step):
            sgd.partial_fit(_read_rows(X, slice(a, a + step)), y[a : a + step], classes=self.classes_)
        self._set_from_sgd(sgd)
        return self

    def decision_function(self, X):
        """Signed distances ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : (n_samples, n_features) array-like, or FeatureStore
            A store is read chunk by chunk.

        Returns
        -------
        scores : (n_samples,) or (n_samples, n_classes) ndarray of float64
        """
        check_is_fitted(self)
        if _is_store(X):
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but LinearSVM is expecting "
                                 f"{self.n_features_in_} features as input.")
            blocks = (block for _, block in X.iter_chunks(block_rows=_PREDICT_CHUNK))
            n = X.shape[0]
        else:
            X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
            blocks = (X[i : i + _PREDICT_CHUNK] for i in range(0, X.shape[0], _PREDICT_CHUNK))
            n = X.shape[0]
        W = self.coef_.astype(np.float64).T
        b = self.intercept_.astype(np.float64)
        out = np.empty((n, W.shape[1]))
        for i, block in zip(range(0, n, _PREDICT_CHUNK), blocks):
            out[i : i + _PREDICT_CHUNK] = block.astype(np.float64) @ W + b
        return out[:, 0] if W.shape[1] == 1 else out

    def predict(self, X):
        """Class with the largest score (sign of the score for two classes).

        Parameters
        ----------
        X : (n_samples, n_features) array-like

        Returns
        -------
        y_pred : (n_samples,) ndarray
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


def _is_store(X) -> bool:
    """A :class:`~classicvision.store.FeatureStore` (or a store-like object: ``iter_chunks``
    and a 2-D ``shape``), read chunk by chunk instead of converted to an array."""
    return hasattr(X, "iter_chunks") and len(getattr(X, "shape", ())) == 2


def _shuffled_blocks(n: int, step: int, rng):
    """One pass of ASGD: a random permutation of the ``n`` rows cut in blocks of ``step``,
    each block's indices sorted (sequential reads; ``SGDClassifier`` shuffles within
    the block). Rows, not stored chunks, are shuffled: data stored in class order
    (CIFAR-10's training set, a folder read class by class) would otherwise give
    blocks of one class."""
    perm = rng.permutation(n)
    for a in range(0, n, step):
        yield np.sort(perm[a : a + step])


def _read_rows(X, rows) -> np.ndarray:
    """Rows (a slice or sorted indices) of an array or a store, as an in-memory
    C-ordered float array."""
    block = X[rows]
    if not np.issubdtype(block.dtype, np.floating):
        block = block.astype(np.float32)
    return np.ascontiguousarray(block)


def _minibatch_asgd(X, y_idx, k, cw, C, loss, fit_intercept, n_passes, block_rows, batch_size, rng, device,
                    sample: int = 4096, power: float = 0.75):
    """Averaged mini-batch SGD of ``1/2 ||w_c||^2 + C sum_i s_i loss(y_ic z_ic)`` for every
    class ``c`` at once (divided by ``C n``: ``lambda/2 ||w||^2 + mean loss``, ``lambda =
    1 / (C n)``).

    Each pass reads a random permutation of the rows ``block_rows`` at a time (sorted
    within the block) and steps through each block ``batch_size`` shuffled rows at a
    time: one ``(batch, d) @ (d, k)`` product and one ``(k, batch) @ (batch, d)`` per
    step. Step ``eta_t = eta0 (1 + lambda eta0 t)^-0.75`` (Xu 2011; Bottou's ASGD). The
    average of the iterates starts after the first pass (from the start with one
    pass) and is the solution.

    ``eta0`` is calibrated as Bottou's ``svmsgd`` does (``determineEta0``): from the
    bound ``1 / L`` on a stable step, ``L = 2 (mu + r^2 / batch_size) + lambda``
    (squared hinge; hinge: without the 2), ``mu`` the largest eigenvalue of the
    weighted second moment ``mean s_i [x_i 1][x_i 1]^T`` (power iteration) and ``r^2 =
    max s_i ||[x_i 1]||^2`` (what single rows add to a batch's curvature; Gower et
    al., "SGD: general analysis and improved rates", ICML 2019), the candidates
    ``2^j / L``, ``j = 0..10``, each make one pass over a random sample of ``sample``
    rows, and the one with the lowest objective on the sample is kept.

    Returns ``W (d, k)``, ``b (k,)``, ``eta0`` and the seconds of each pass.
    """
    import torch

    n, d = X.shape
    lam = 1.0 / (C * n)
    sq = loss == "squared_hinge"
    s_all = torch.from_numpy(cw)[torch.from_numpy(np.asarray(y_idx, dtype=np.int64))]

    def rows(idx):
        block = _as_tensor(np.ascontiguousarray(_read_rows(X, idx), dtype=np.float32), device)
        yi = torch.from_numpy(np.asarray(y_idx[idx], dtype=np.int64)).to(device)
        if k == 1:
            Yb = (yi == 1).to(torch.float32)[:, None] * 2 - 1
        else:
            Yb = torch.full((len(yi), k), -1.0, device=device)
            Yb[torch.arange(len(yi), device=device), yi] = 1.0
        return block, Yb, s_all[idx].to(device)[:, None]

    def steps(state, block, Yb, sb, eta0, avg):
        """SGD steps over one block in shuffled batches; ``state = [W, b, Wa, ba, n_avg, t]``."""
        W, b, Wa, ba = state[:4]
        order = torch.from_numpy(rng.permutation(len(block))).to(device)
        for a in range(0, len(block), batch_size):
            j = order[a : a + batch_size]
            Xb, Y_ = block[j], Yb[j]
            m = torch.clamp(1.0 - Y_ * torch.addmm(b, Xb, W), min=0.0)
            G = -(sb[j] * Y_) * (2.0 * m if sq else (m > 0).to(m.dtype))
            eta = eta0 / (1.0 + lam * eta0 * state[5]) ** power
            W.mul_(1.0 - eta * lam).sub_(_t_matmul(Xb, G), alpha=eta / len(j))
            if fit_intercept:
                b.sub_(G.mean(0), alpha=eta)
            state[5] += 1
            if avg:
                state[4] += 1
                Wa.lerp_(W, 1.0 / state[4])  # the running mean, without a (d, k) temporary
                ba.lerp_(b, 1.0 / state[4])

    def fresh():
        W = torch.zeros((d, k), device=device)
        b = torch.zeros(k, device=device)
        return [W, b, W.clone(), b.clone(), 0, 0]

    # the bound on a stable step, from a sample
    S, SY, sw = rows(np.sort(rng.choice(n, min(n, sample), replace=False)))
    gen = torch.Generator(device="cpu").manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
    v = torch.randn(d, generator=gen).to(device)
    bias = 1.0 if fit_intercept else 0.0
    v0, mu = bias, 0.0
    for _ in range(50):
        t = sw[:, 0] * (S @ v + v0)
        v_new, v0_new = (S.T @ t) / len(S), (float(t.sum()) / len(S) if fit_intercept else 0.0)
        norm = float(torch.sqrt((v_new * v_new).sum() + v0_new**2))
        if norm == 0.0:
            break
        converged = abs(norm - mu) <= 1e-3 * norm
        mu, v, v0 = norm, v_new / norm, v0_new / norm
        if converged:
            break
    r2 = float((sw[:, 0] * ((S * S).sum(1) + bias)).max())
    L = (2.0 if sq else 1.0) * (mu + r2 / batch_size) + lam

    def sample_objective(state, S, SY, sw):
        W, b = state[0], state[1]
        m = torch.clamp(1.0 - SY * torch.addmm(b, S, W), min=0.0)
        f = 0.5 * lam * float((W * W).sum()) + float((sw * (m * m if sq else m)).sum()) / len(S)
        return f if np.isfinite(f) else np.inf

    best = (np.inf, 1.0 / L)
    for j in range(11):
        state = fresh()
        steps(state, S, SY, sw, 2.0**j / L, avg=False)
        f = sample_objective(state, S, SY, sw)
        if f < best[0]:
            best = (f, 2.0**j / L)
        elif f > 2 * best[0]:  # past the best: larger steps only get worse
            break
    del S, SY, sw
    eta0 = best[1]
    state = fresh()
    seconds = []
    for p in range(n_passes):
        t0 = time.perf_counter()
        for idx in _shuffled_blocks(n, block_rows, rng):
            steps(state, *rows(idx), eta0, avg=p >= 1 or n_passes == 1)
        seconds.append(time.perf_counter() - t0)
    return state[2], state[3], eta0, seconds


def _calibrate_eta0(X, y, classes, kw, rng, SGDClassifier, sample: int = 1024) -> float:
    """ASGD's initial step size, chosen on a sample of rows (Bottou's ``determineEta0``).

    ``y``: the labels of ``X``. Candidates ``2^k / mean s_i ||x_i||^2``, ``k = -2..7``
    (``s_i ||x_i||^2`` sets the scale of a step's change of the margins); each is run for one pass, averaged, over ``sample``
    random rows of ``X`` (all of them when fewer), and the one with the lowest
    objective ``mean s_i loss_i + alpha / 2 ||W||^2`` on those rows (``s_i`` the class
    weights) wins. Reference: L.
    Bottou, "Stochastic gradient descent tricks", Neural Networks: Tricks of the Trade,
    2012, section 5.2. https://doi.org/10.1007/978-3-642-35289-8_25
    """
    import warnings as _w

    n = X.shape[0]
    idx = np.sort(rng.choice(n, min(n, sample), replace=False))
    Xs = np.ascontiguousarray(X[idx] if _is_store(X) else np.asarray(X[idx]))
    if not np.issubdtype(Xs.dtype, np.floating):
        Xs = Xs.astype(np.float32)
    y = np.asarray(y)[idx]
    cw = kw.get("class_weight") or {}
    sw = np.array([float(cw.get(c, 1.0)) for c in y])  # the class weights scale each row's loss
    scale = float(np.mean(sw * np.einsum("ij,ij->i", Xs, Xs, dtype=np.float64)))
    base = 1.0 / max(scale, np.finfo(np.float64).tiny)
    K = len(classes)
    Y = np.where(y[:, None] == np.asarray(classes)[None, :], 1.0, -1.0)
    if K == 2:
        Y = Y[:, 1:]
    best, best_obj = base, np.inf
    for k in range(-2, 8):
        eta0 = base * 2.0**k
        trial = SGDClassifier(**{**kw, "eta0": eta0, "average": True})
        with _w.catch_warnings(), np.errstate(all="ignore"):
            _w.simplefilter("ignore")
            trial.partial_fit(Xs, y, classes=classes)
            Z = Xs.astype(np.float64) @ trial.coef_.T.astype(np.float64) + trial.intercept_
            m = np.maximum(0.0, 1.0 - Y * Z)
            loss = m * m if kw["loss"] == "squared_hinge" else m
            obj = float((sw * loss.sum(1)).mean() + 0.5 * kw["alpha"] * np.sum(trial.coef_.astype(np.float64) ** 2))
        if np.isfinite(obj) and obj < best_obj:
            best, best_obj = eta0, obj
    return float(best)


def _sketch_seed(random_state) -> int:
    """Seed of the Nystrom sketch's torch generator from ``random_state``.

    ``None`` keeps the historical fixed seed 0 (so the default Newton fit is
    unchanged and deterministic); an int is used as is; a ``RandomState``
    instance gives one draw.
    """
    if random_state is None:
        return 0
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _gram_factor(X, s, C, fit_intercept):
    """Lower Cholesky factor (float32) of ``I + 2C [X 1]^T S [X 1]``.

    The Hessian of the squared-hinge objective when every sample is active (as
    at ``w = 0``); with a bias the last row/column is the bias's (unregularized,
    so only ``2C sum(s)`` on its diagonal). Shape ``(d + 1, d + 1)`` with a bias,
    ``(d, d)`` without. The Gram matrix is accumulated in float32 over row
    chunks and factored in float64.
    """
    import torch

    n, d = X.shape
    G = torch.zeros((d, d), dtype=torch.float32, device=X.device)
    v = torch.zeros(d, dtype=torch.float32, device=X.device)
    for i in range(0, n, _GRAM_CHUNK):
        Xc = X[i : i + _GRAM_CHUNK]
        sXc = s[i : i + _GRAM_CHUNK] * Xc
        G.addmm_(sXc.T, Xc)
        v += sXc.sum(0)
    twoC = 2.0 * C
    size = d + 1 if fit_intercept else d
    M = torch.zeros((size, size), dtype=torch.float64, device=X.device)
    M[:d, :d] = G.to(torch.float64)
    del G
    M[:d, :d] *= twoC
    M.diagonal()[:d] += 1.0
    if fit_intercept:
        M[:d, d] = twoC * v.to(torch.float64)
        M[d, :d] = M[:d, d]
        M[d, d] = max(twoC * float(s.sum()), 1.0)
    if M.device.type != "cpu":
        return torch.linalg.cholesky(M).to(torch.float32)
    # in place on the CPU (LAPACK potrf on the Fortran-ordered view of the symmetric M):
    # torch's cholesky would hold a second (d+1)^2 float64 matrix, 1.3 GB at d = 12,800
    from scipy.linalg import lapack

    L, info = lapack.dpotrf(M.numpy().T, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram preconditioner is not positive definite (potrf info={info})")
    del M
    return torch.from_numpy(np.ascontiguousarray(L, dtype=np.float32))


def _nystrom_factor(X, s, C, fit_intercept, rank, seed=0):
    """Randomized Nystrom preconditioner of ``I + 2C [X 1]^T S [X 1]``.

    A rank-``rank`` approximation ``U diag(lam) U^T`` of the Gram matrix
    ``G = [X 1]^T S [X 1]`` from one sketch ``G @ Omega`` (two passes over ``X``,
    ``2 n d r`` multiply-adds), made numerically stable by a small shift (Tropp,
    Yurtsever, Udell & Cevher, "Fixed-rank approximation of a positive-semidefinite
    matrix from streaming data", NeurIPS 2017, Algorithm 3). The preconditioner
    (Frangella, Tropp & Udell 2023, reference [5] of :class:`LinearSVM`) is

    ``P^-1 = U diag(1 / (2C lam + 1)) U^T + (I - U U^T) / (2C lam_r + 1)``,

    exact on the sketched eigenspace and a scaled identity on its complement, so
    the conditioning of the all-active Hessian falls from ``2C lam_1 + 1`` to
    about ``2C lam_{r+1} + 1``.

    Returns
    -------
    U : (d + 1, r) or (d, r) float32 tensor
        Orthonormal approximate eigenvectors (last row: the bias, with an intercept).
    scale : (r,) float32 tensor
        ``1 / (2C lam + 1) - 1 / (2C lam_r + 1)``, the extra weight of each direction.
    floor : float
        ``1 / (2C lam_r + 1)``, the weight of the complement.
    """
    import torch

    n, d = X.shape
    size = d + 1 if fit_intercept else d
    r = min(int(rank), size, n)  # G has rank <= n: a larger sketch only adds zero eigenvalues
    gen = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn((size, r), generator=gen, dtype=torch.float32).to(X.device)
    omega = torch.linalg.qr(omega).Q
    # Y = G @ omega, accumulated over row chunks: [X 1]^T (S ([X 1] @ omega))
    Y = torch.zeros((size, r), dtype=torch.float32, device=X.device)
    om_x = omega[:d]
    om_b = omega[d] if fit_intercept else None
    for i in range(0, n, _GRAM_CHUNK):
        Xc = X[i : i + _GRAM_CHUNK]
        T = Xc @ om_x
        if fit_intercept:
            T += om_b
        T *= s[i : i + _GRAM_CHUNK]
        Y[:d].addmm_(Xc.T, T)
        if fit_intercept:
            Y[d] += T.sum(0)
    Y = Y.to(torch.float64)
    omega = omega.to(torch.float64)
    shift = float(np.finfo(np.float32).eps) * size**0.5 * float(torch.linalg.matrix_norm(Y, ord=2))
    Y += shift * omega
    L = torch.linalg.cholesky(omega.T @ Y)
    B = torch.linalg.solve_triangular(L, Y.T, upper=False).T  # Y L^-T
    U, sigma, _ = torch.linalg.svd(B, full_matrices=False)
    lam = torch.clamp(sigma * sigma - shift, min=0.0)
    inv = 1.0 / (2.0 * C * lam + 1.0)
    floor = float(inv[-1])
    return U.to(torch.float32), (inv - floor).to(torch.float32), floor


def _solver_log(verbose, n, d, k):
    """A ``print`` for the solver's progress lines, or None when not verbose."""
    if not verbose:
        return None
    print(f"LinearSVM: Newton-CG on {n}x{d} features, {k} one-vs-rest problem(s)", flush=True)

    def log(text):
        print(f"LinearSVM: {text}", flush=True)

    return log


class _SquaredHinge:
    """The one-vs-rest squared-hinge objective of all classes at once, on torch tensors.

    ``1/2 ||w_c||^2 + C sum_i s_i max(0, 1 - y_ic z_ic)^2`` per column ``c``, with
    ``Z = X W + b``. Shapes: X (n, d), Y (n, k) in {-1, +1}, s (n, 1) sample
    weights; W (d, k), b (k,). Every quantity is per column (a ``(k,)`` vector).
    """

    def __init__(self, X, Y, s, C: float, fit_intercept: bool) -> None:
        self.X, self.Y, self.s = X, Y, s
        self.cs = C * s  # per-sample loss weights
        self.twoC = 2.0 * C
        self.fit_intercept = fit_intercept

    def _no_bias(self):
        import torch

        return torch.zeros(self.Y.shape[1], device=self.X.device)

    def gradient(self, W, Z):
        """Gradient ``(gW (d, k), gb (k,))`` and the active weights ``A`` (n, k) at ``Z``."""
        import torch

        m = torch.clamp(1.0 - self.Y * Z, min=0.0)
        R = -(self.s * self.Y * m)  # (n, k), zero where inactive
        gW = W + self.twoC * _t_matmul(self.X, R)
        gb = self.twoC * R.sum(0) if self.fit_intercept else self._no_bias()
        active = (m > 0).to(self.X.dtype) * self.s
        return gW, gb, active

    def hessian_product(self, A, pW, pb):
        """``X p`` (n, k) and the generalized Hessian times ``p``: ``(HpW (d, k), Hpb (k,))``."""
        if isinstance(self.X, _RowBlocks):  # out of core: both products in one pass
            Xp, XtAXp = self.X.hessian_pass(A, pW, pb)
            AXp = A * Xp
        else:
            Xp = self.X @ pW + pb
            AXp = A * Xp
            XtAXp = _t_matmul(self.X, AXp)
        HpW = pW + self.twoC * XtAXp
        Hpb = self.twoC * AXp.sum(0) if self.fit_intercept else self._no_bias()
        return Xp, HpW, Hpb

    def line_search(self, W, Z, gW, gb, DW, Db, XD):
        """Backtracking (Armijo) step ``t`` (k,) along ``(DW, Db)``, from ``XD = X DW + Db``.

        The objective along the step is ``1/2 ||W + t D||^2`` (three dot
        products) plus the loss at ``Z + t XD``: no pass over ``X``.
        """
        import torch

        m = torch.clamp(1.0 - self.Y * Z, min=0.0)
        f0 = 0.5 * (W * W).sum(0) + (self.cs * m * m).sum(0)
        slope = (gW * DW).sum(0) + gb * Db
        t = torch.ones(self.Y.shape[1], device=self.X.device)
        WD = (W * DW).sum(0)
        DD = (DW * DW).sum(0)
        WW = (W * W).sum(0)
        for _ in range(30):
            Zt = Z + t * XD
            m = torch.clamp(1.0 - self.Y * Zt, min=0.0)
            ft = 0.5 * (WW + 2 * t * WD + t * t * DD) + (self.cs * m * m).sum(0)
            ok = ft <= f0 + 1e-4 * t * slope
            if bool(ok.all()):
                break
            t = torch.where(ok, t, 0.5 * t)
        return t


def _preconditioner(factor, problem: _SquaredHinge, A):
    """``precondition(rW, rb) -> (zW, zb)``: the preconditioner applied to a residual.

    ``factor``: the lower Cholesky factor from :func:`_gram_factor`, the ``(U,
    scale, floor)`` triple from :func:`_nystrom_factor`, or None for Jacobi (the
    diagonal of the current Hessian, from the active weights ``A``).
    """
    import torch

    X, twoC, fit_intercept = problem.X, problem.twoC, problem.fit_intercept
    d = X.shape[1]
    if factor is None:
        # Jacobi preconditioner: diag(H) = 1 + 2C sum_i a_i x_ij^2 (bias: 2C sum_i a_i)
        MW = 1.0 + twoC * _squared_t_matmul(X, A)
        Mb = torch.clamp(twoC * A.sum(0), min=1.0) if fit_intercept else torch.ones(A.shape[1], device=X.device)

        def precondition(rW, rb):
            return rW / MW, rb / Mb
    elif isinstance(factor, tuple):  # Nystrom: floor * r + U diag(scale) U^T r
        U, scale, floor = factor

        def precondition(rW, rb):
            r = torch.cat([rW, rb[None]]) if fit_intercept else rW
            z = torch.addmm(r, U, scale[:, None] * (U.T @ r), beta=floor)
            return (z[:d], z[d]) if fit_intercept else (z, rb)
    else:
        def precondition(rW, rb):
            if not fit_intercept:
                return torch.cholesky_solve(rW, factor), rb
            z = torch.cholesky_solve(torch.cat([rW, rb[None]]), factor)
            return z[:d], z[d]
    return precondition


def _pcg(problem: _SquaredHinge, A, gW, gb, precondition, active_cols, target, max_cg_iter: int):
    """Preconditioned CG on ``H D = -g``, per column, until ``||r||^2 <= target``.

    ``active_cols`` (k,) bool: the columns still to solve (the others keep a
    zero step). Returns the step ``DW (d, k)``, ``Db (k,)``, ``XD = X DW + Db``
    (accumulated from the CG products, for the line search) and the number of
    CG steps.
    """
    import torch

    DW = torch.zeros_like(gW)
    Db = torch.zeros_like(gb)
    XD = torch.zeros_like(A)  # X @ DW + Db (n, k), accumulated for the line search
    rW, rb = -gW, -gb
    zW, zb = precondition(rW, rb)
    pW, pb = zW.clone(), zb.clone()
    rz = (rW * zW).sum(0) + rb * zb
    steps = 0
    for _ in range(max_cg_iter):
        steps += 1
        Xp, HpW, Hpb = problem.hessian_product(A, pW, pb)
        pHp = (pW * HpW).sum(0) + pb * Hpb
        alpha = torch.where(active_cols & (pHp > 0), rz / torch.clamp(pHp, min=1e-30), 0.0)
        DW += alpha * pW
        Db += alpha * pb
        XD += alpha * Xp
        rW -= alpha * HpW
        rb -= alpha * Hpb
        rr = (rW * rW).sum(0) + rb * rb
        active_cols = active_cols & (rr > target)
        if not bool(active_cols.any()):
            break
        zW, zb = precondition(rW, rb)
        rz_new = (rW * zW).sum(0) + rb * zb
        beta = torch.where(active_cols, rz_new / torch.clamp(rz, min=1e-30), 0.0)
        pW = zW + beta * pW
        pb = zb + beta * pb
        rz = rz_new
    return DW, Db, XD, steps


def _newton_cg(X, Y, s, C, fit_intercept, max_iter, tol, max_cg_iter, factor=None, log=None):
    """Truncated Newton for all one-vs-rest squared-hinge problems at once.

    Shapes: X (n, d), Y (n, k) in {-1, +1}, s (n, 1) sample weights; ``factor``
    is the lower Cholesky factor from :func:`_gram_factor`, the ``(U, scale,
    floor)`` triple from :func:`_nystrom_factor`, or None for the Jacobi
    preconditioner. ``log``, when given, receives one progress line per Newton
    iteration. Each iteration: the gradient (one pass over ``X`` each way),
    preconditioned CG on the Newton system (:func:`_pcg`, forcing term
    ``min(0.5, sqrt(|g| / |g0|))``) and a backtracking line search
    (:meth:`_SquaredHinge.line_search`) on the columns not yet converged.
    Returns W (d, k), b (k,), number of Newton iterations, number of CG steps.
    """
    import torch

    d = X.shape[1]
    k = Y.shape[1]
    W = torch.zeros((d, k), device=X.device)
    b = torch.zeros(k, device=X.device)
    problem = _SquaredHinge(X, Y, s, C, fit_intercept)
    g0 = None
    n_iter = 0
    n_cg = 0
    t0 = time.perf_counter()
    for n_iter in range(1, max_iter + 1):
        Z = X @ W + b
        gW, gb, A = problem.gradient(W, Z)
        gnorm = torch.sqrt((gW * gW).sum(0) + gb * gb)
        if g0 is None:
            g0 = torch.clamp(gnorm, min=torch.finfo(X.dtype).tiny)
        done = gnorm <= tol * g0
        if log is not None:
            _log_newton(log, n_iter, float((gnorm / g0).max()), tol, n_cg, time.perf_counter() - t0)
        if bool(done.all()):
            n_iter -= 1
            break
        eta = torch.clamp(torch.sqrt(gnorm / g0), max=0.5)
        precondition = _preconditioner(factor, problem, A)
        DW, Db, XD, steps = _pcg(problem, A, gW, gb, precondition, ~done, (eta * gnorm) ** 2, max_cg_iter)
        n_cg += steps
        t = problem.line_search(W, Z, gW, gb, DW, Db, XD)
        t = torch.where(done, 0.0, t)
        W += t * DW
        b += t * Db
    return W, b, n_iter, n_cg


def _log_newton(log, it, ratio, tol, n_cg, elapsed):
    """One progress line: the worst relative gradient norm and the time left, by
    linear extrapolation of ``log(ratio)`` towards ``log(tol)``."""
    done = np.log(max(ratio, 1e-300)) / np.log(tol)  # 0 at the start, 1 at convergence
    if done >= 1:
        eta = "converged"
    elif done > 0 and elapsed > 0:
        eta = f"ETA {elapsed * (1 - done) / done:.0f}s"
    else:
        eta = "ETA unknown"
    log(f"iteration {it}: gradient {ratio:.2e} of its start (tol {tol:.0e}), {n_cg} CG steps, "
        f"elapsed {elapsed:.0f}s, {eta}")


def _squared_t_matmul(X, A, chunk=4096):
    """``(X * X).T @ A`` over row chunks, without a squared copy of ``X``."""
    out = None
    for i in range(0, X.shape[0], chunk):
        Xc = X[i : i + chunk]
        part = A[i : i + chunk].T @ (Xc * Xc)
        out = part if out is None else out.add_(part)
    return out.T


def _t_matmul(X, R):
    """``X.T @ R`` as ``(R.T @ X).T``: torch's CPU path for a transposed tall
    matrix times a thin one is ~20x slower than this layout."""
    if isinstance(X, _RowBlocks):
        return X.t_matmul(R)
    return (R.T @ X).T


class _RowBlocks:
    """The Newton solver's ``X`` out of core: a store's rows read ``block_rows`` at a time.

    Gives the solver what it uses of an ``(n, d)`` tensor: ``shape``, ``dtype``,
    ``device``, row slices (float32 tensors, converted from the stored dtype) and
    the products ``X @ W`` and ``X.T @ R``, each one pass over the rows. Only one
    block of rows is in memory at a time; the ``(n, k)`` products are.
    """

    def __init__(self, source, device, block_rows: int) -> None:
        import torch

        self.source = source
        self.shape = tuple(int(v) for v in source.shape)
        self.dtype = torch.float32
        self.device = device
        self.step = int(block_rows)
        if self.step < 1:
            raise ValueError(f"LinearSVM: block_rows must be >= 1, got {block_rows}")

    def __getitem__(self, key: slice):
        return _as_tensor(np.ascontiguousarray(self.source[key], dtype=np.float32), self.device)

    def blocks(self):
        """``(start, rows)`` for consecutive blocks of ``block_rows`` rows."""
        for a in range(0, self.shape[0], self.step):
            yield a, self[a : a + self.step]

    def __matmul__(self, W):
        import torch

        return torch.cat([block @ W for _, block in self.blocks()])

    def t_matmul(self, R):
        """``X.T @ R`` (d, k), accumulated block by block."""
        out = None
        for a, block in self.blocks():
            part = R[a : a + block.shape[0]].T @ block
            out = part if out is None else out.add_(part)
        return out.T

    def hessian_pass(self, A, pW, pb):
        """``Xp = X pW + pb`` (n, k) and ``X.T @ (A * Xp)`` (d, k) in one pass over the rows."""
        import torch

        Xp = torch.empty(A.shape, dtype=A.dtype, device=A.device)
        acc = None
        for a, block in self.blocks():
            b = a + block.shape[0]
            xp = torch.addmm(pb, block, pW)
            Xp[a:b] = xp
            part = (A[a:b] * xp).T @ block
            acc = part if acc is None else acc.add_(part)
        return Xp, acc.T
