"""Fisher vectors (improved: power + L2 normalization), with per-cell statistics."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.mixture import GaussianMixture

from ..utils.validation import Interval, StrOptions
from ._base import BaseEncoder, l2_normalize_rows, signed_power

__all__ = ["FisherVector", "gmm_posteriors", "fisher_from_stats"]


def _gmm_terms(means, covariances, weights, center):
    """Precompute the GEMM matrix and constants of the diagonal-GMM log-likelihood."""
    mu = np.asarray(means, np.float64) - center
    var = np.asarray(covariances, np.float64)
    prec = 1.0 / var
    D = mu.shape[1]
    W = np.concatenate([-0.5 * prec, mu * prec], axis=1).T  # (2D, K)
    const = (
        np.log(weights)
        - 0.5 * np.sum(mu * mu * prec, axis=1)
        - 0.5 * np.sum(np.log(var), axis=1)
        - 0.5 * D * np.log(2 * np.pi)
    )
    return np.ascontiguousarray(W, np.float32), const.astype(np.float32)


def gmm_posteriors(X, W, const):
    """Posteriors ``gamma`` ``(n, K)`` float32 of a diagonal GMM.

    ``X`` are descriptors already centred like the GMM terms; the
    log-likelihoods come from one GEMM ``[x^2, x] @ W`` and the normalization
    from a log-sum-exp, both in float32.
    """
    Z = np.concatenate([X * X, X], axis=1)
    L = Z @ W
    L += const[None, :]
    L -= L.max(axis=1, keepdims=True)
    np.exp(L, out=L)
    L /= L.sum(axis=1, keepdims=True)
    return L


def fisher_from_stats(count, S0, S1, S2, means, covariances, weights, *, improved=True):
    """Fisher vectors from the sufficient statistics of groups of descriptors.

    Parameters
    ----------
    count : (m,) ndarray
        Number of descriptors ``T`` in each group (image or cell).
    S0 : (m, K) ndarray
        ``sum_t gamma_t(k)``.
    S1 : (m, K, D) ndarray
        ``sum_t gamma_t(k) x_t``.
    S2 : (m, K, D) ndarray
        ``sum_t gamma_t(k) x_t^2``.
    means, covariances : (K, D) ndarray
        GMM means and diagonal variances (in the same frame as ``S1``, ``S2``).
    weights : (K,) ndarray
    improved : bool
        Apply the signed square root and L2 normalization.

    Returns
    -------
    fv : (m, 2 * K * D) ndarray of float64
        ``[G_mu (K x D), G_sigma (K x D)]`` per group, with
        ``G_mu_k = (S1_k - S0_k mu_k) / (T sqrt(w_k) sigma_k)`` and
        ``G_sigma_k = ((S2_k - 2 mu_k S1_k + S0_k mu_k^2) / sigma_k^2 - S0_k) / (T sqrt(2 w_k))``.
        Groups without descriptors give zeros.
    """
    count = np.asarray(count, np.float64)
    S0 = np.asarray(S0, np.float64)[:, :, None]
    S1 = np.asarray(S1, np.float64)
    S2 = np.asarray(S2, np.float64)
    mu = np.asarray(means, np.float64)[None]
    var = np.asarray(covariances, np.float64)[None]
    w = np.asarray(weights, np.float64)[None, :, None]
    T = np.where(count > 0, count, 1.0)[:, None, None]
    g_mu = (S1 - S0 * mu) / (T * np.sqrt(w) * np.sqrt(var))
    g_sig = ((S2 - 2 * mu * S1 + S0 * mu * mu) / var - S0) / (T * np.sqrt(2 * w))
    fv = np.concatenate([g_mu.reshape(len(count), -1), g_sig.reshape(len(count), -1)], axis=1)
    if improved:
        fv = l2_normalize_rows(signed_power(fv, 0.5), axis=1)
    return fv


class FisherVector(BaseEncoder):
    """Improved Fisher vector encoding (Perronnin, Sanchez & Mensink 2010).

    A diagonal GMM is fitted on a descriptor sample; an image (or a pyramid
    cell) is described by the gradient of its descriptors' log-likelihood with
    respect to the means and standard deviations, ``2 * K * D`` values, followed
    by the signed square root and L2 normalization per cell.

    Parameters
    ----------
    n_components : int, default=256
        Number of Gaussians ``K``.
    improved : bool, default=True
        Power (signed square root) and L2 normalization of each cell's vector.
    covariance_type : {"diag"}, default="diag"
        Only diagonal covariances are supported (as in the paper).
    spatial : bool, default=False
        Append the centred position ``(x - 0.5, y - 0.5)`` to every descriptor
        before fitting and encoding (the "spatial" Fisher vector of Sanchez et
        al. 2012): ``D`` grows by 2.
    pyramid : SpatialPyramid or None, default=None
        The paper uses ``SpatialPyramid(levels=(1, (3, 1)))``.
    max_iter : int, default=100
        EM iterations of the GMM.
    reg_covar : float, default=1e-4
        Added to the variances for stability (in descriptor units squared).
    posterior_threshold : float, default=1e-4
        Posteriors below this are set to zero (as VLFeat does), which makes
        the statistics a sparse product, several times faster for large ``K``;
        0 keeps the exact posteriors.
    max_descriptors : int, default=100_000
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None

    Attributes
    ----------
    means_ : (n_components, D) ndarray of float64
    covariances_ : (n_components, D) ndarray of float64
        Diagonal variances.
    weights_ : (n_components,) ndarray of float64
    gmm_ : sklearn.mixture.GaussianMixture
        The fitted mixture (same parameters).
    n_features_in_ : int
        Descriptor dimension (without the spatial coordinates).
    n_features_out_ : int
        ``n_cells * 2 * n_components * D``.

    References
    ----------
    .. [1] F. Perronnin, J. Sanchez and T. Mensink, "Improving the Fisher Kernel
       for Large-Scale Image Classification", ECCV 2010.
       https://doi.org/10.1007/978-3-642-15561-1_11
    .. [2] J. Sanchez, F. Perronnin, T. Mensink and J. Verbeek, "Image
       Classification with the Fisher Vector: Theory and Practice", IJCV 105(3),
       2013. https://doi.org/10.1007/s11263-013-0636-x
    .. [3] J. Sanchez, F. Perronnin and T. de Campos, "Modeling the spatial
       layout of images beyond spatial pyramids", Pattern Recognition Letters
       33(16), 2012. https://doi.org/10.1016/j.patrec.2012.07.019

    Notes
    -----
    Statistics ``S0, S1, S2`` are accumulated once per pyramid atom (one
    sparse product over the posteriors above ``posterior_threshold``, or a
    dense GEMM ``gamma^T [x, x^2]`` per atom when they are not sparse) and
    summed per cell; the ``2 K D`` vector is
    formed only per cell, never per descriptor. Posteriors are computed in
    float32 on descriptors centred at the mean of the GMM means, the vectors
    are formed in float64 and returned as float32. The mixture weights'
    gradient is omitted, as in [1]_.
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "improved": ["boolean"],
        "covariance_type": [StrOptions({"diag"})],
        "spatial": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
        "posterior_threshold": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self, *, n_components=256, improved=True, covariance_type="diag", spatial=False, pyramid=None,
        max_iter=100, reg_covar=1e-4, posterior_threshold=1e-4, max_descriptors=100_000, random_state=None,
        n_jobs=None,
    ):
        self.n_components = n_components
        self.improved = improved
        self.covariance_type = covariance_type
        self.spatial = spatial
        self.pyramid = pyramid
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.posterior_threshold = posterior_threshold
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _prepare(self, X, P):
        if self.spatial:
            return np.concatenate([X, (P - 0.5).astype(X.dtype)], axis=1)
        return X

    def _fit_sample(self, X, rng):
        if X.shape[0] < self.n_components:
            raise ValueError(
                f"cannot fit {self.n_components} Gaussians on {X.shape[0]} sampled descriptors"
            )
        gmm = GaussianMixture(
            n_components=self.n_components, covariance_type="diag", max_iter=self.max_iter,
            reg_covar=self.reg_covar, random_state=int(rng.randint(np.iinfo(np.int32).max)),
        )
        gmm.fit(X.astype(np.float64))
        self.gmm_ = gmm
        self.means_ = gmm.means_
        self.covariances_ = gmm.covariances_
        self.weights_ = gmm.weights_
        self._center = self.means_.mean(axis=0)
        self._W, self._const = _gmm_terms(self.means_, self.covariances_, self.weights_, self._center)
        self._dim = X.shape[1]

    def _code_dim(self):
        return 2 * self.n_components * self._dim

    def _stat_dim(self):
        return 1 + self.n_components * (1 + 2 * self._dim)

    def _per_descriptor_elements(self):
        return 2 * self.n_components + 2 * self._dim

    def _atom_stats(self, X, atom, n_atoms):
        K = self.n_components
        Xc = X - self._center.astype(np.float32)
        gamma = gmm_posteriors(Xc, self._W, self._const)
        if self.posterior_threshold > 0:
            gamma[gamma < self.posterior_threshold] = 0
        Z = np.concatenate([Xc, Xc * Xc], axis=1)  # (n, 2D)
        stats = np.zeros((n_atoms, self._stat_dim()), dtype=np.float32)
        stats[:, 0] = np.bincount(atom, minlength=n_atoms)
        if np.count_nonzero(gamma) < 0.15 * gamma.size:
            # Sparse posteriors: one sparse (atom, k) x descriptor matrix times [x, x^2].
            rows, comps = np.nonzero(gamma)
            vals = gamma[rows, comps]
            key = atom[rows] * K + comps
            M = sp.csr_matrix((vals, (key, rows)), shape=(n_atoms * K, len(atom)))
            stats[:, 1 : 1 + K] = np.bincount(key, weights=vals, minlength=n_atoms * K).reshape(n_atoms, K)
            stats[:, 1 + K :] = np.asarray(M @ Z).reshape(n_atoms, -1)
            return stats
        starts = np.flatnonzero(np.r_[True, atom[1:] != atom[:-1]])
        ends = np.r_[starts[1:], len(atom)]
        for a, s, e in zip(atom[starts], starts, ends):
            g = gamma[s:e]
            stats[a, 1 : 1 + K] = g.sum(axis=0)
            stats[a, 1 + K :] = (g.T @ Z[s:e]).reshape(-1)  # (K, 2D) -> S1 | S2 per k
        return stats

    def _finalize_cells(self, cells):
        n_img, n_cells, _ = cells.shape
        K, D = self.n_components, self._dim
        flat = cells.reshape(n_img * n_cells, -1)
        S12 = flat[:, 1 + K :].reshape(-1, K, 2 * D)
        fv = fisher_from_stats(
            flat[:, 0], flat[:, 1 : 1 + K], S12[:, :, :D], S12[:, :, D:],
            self.means_ - self._center, self.covariances_, self.weights_, improved=self.improved,
        )
        return fv.astype(np.float32).reshape(n_img, n_cells, -1)
