"""Sparse coding with max pooling (ScSPM, Yang et al. 2009)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import sparse_encode
from sklearn.utils import check_random_state

from ..utils.validation import Interval, StrOptions
from ._base import BaseEncoder, l2_normalize_rows, normalize_rows

__all__ = ["SparseCoding", "fista_lasso", "learn_dictionary", "working_set_lasso"]


def fista_lasso(X, dictionary, lam, *, max_iter=100, tol=1e-4, lipschitz=None):
    """Batched FISTA for ``min_a 0.5 ||x - a D||^2 + lam ||a||_1`` (one problem per row).

    Parameters
    ----------
    X : (n, d) ndarray of float32
    dictionary : (K, d) ndarray of float32
        Atoms ``D`` as rows.
    lam : float
        L1 weight in the 0.5-scaled objective above.
    max_iter : int
        Iterations; a row stops earlier once none of its coefficients moved
        more than ``tol`` in one step (rows are independent, so the result of
        a row does not depend on the other rows of the batch).
    lipschitz : float, optional
        ``||D||_2^2``; computed when not given.

    Returns
    -------
    codes : (n, K) ndarray of float32

    References
    ----------
    .. [1] A. Beck and M. Teboulle, "A Fast Iterative Shrinkage-Thresholding
       Algorithm for Linear Inverse Problems", SIAM J. Imaging Sci. 2(1), 2009.
       https://doi.org/10.1137/080716542
    """
    D = np.asarray(dictionary, np.float32)
    X = np.asarray(X, np.float32)
    if lipschitz is None:
        lipschitz = float(np.linalg.norm(D.astype(np.float64), 2) ** 2)
    step = np.float32(1.0 / lipschitz)
    thr = np.float32(lam / lipschitz)
    XDt = X @ D.T  # (n, K), constant part of the gradient
    n, K = XDt.shape
    out = np.zeros((n, K), np.float32)
    A = np.zeros((n, K), np.float32)
    Y = A.copy()
    active = np.arange(n)  # rows still moving; a row stops on its own criterion
    t = 1.0
    use_gram = K <= 2 * D.shape[1]
    G = D @ D.T if use_gram else None
    for _ in range(max_iter):
        grad = Y @ G if use_gram else (Y @ D) @ D.T
        grad -= XDt
        Z = Y - step * grad
        A_new = np.sign(Z) * np.maximum(np.abs(Z) - thr, 0)
        t_new = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        delta = A_new - A
        Y = A_new + np.float32((t - 1.0) / t_new) * delta
        A, t = A_new, t_new
        moving = np.max(np.abs(delta), axis=1) >= tol
        if not moving.all():
            done = ~moving
            out[active[done]] = A[done]
            active, A, Y, XDt = active[moving], A[moving], Y[moving], XDt[moving]
            if active.size == 0:
                break
    out[active] = A
    return out


# Working-set solver constants (see working_set_lasso).
_SWEEPS_PER_ROUND = 10  # coordinate-descent sweeps between two global KKT checks
_NEWTON_BELOW = 1e-2  # Newton step once a sweep moved no coefficient more than this (and no support change)
_NEWTON_GROUPS = 4  # Newton systems are solved in groups of similar support size (padding costs ~k^3)
_NEWTON_STEPS = 4  # feature-sign steps at most per Newton attempt (each one drops a coefficient or ends)


def _cd_sweeps(Gs, g, u, diag, lam, n_sweeps, tol):
    """Cyclic coordinate descent on every row's restricted lasso, vectorized across rows, in place.

    Parameters
    ----------
    Gs : (m, m, n) ndarray
        Restricted Gram matrices, ``Gs[j, k, i] = <d_W[i, j], d_W[i, k]>``.
    g : (m, n) ndarray
        Restricted gradient ``<d_W[i, j], x_i - u_i D>``, updated in place.
    u : (m, n) ndarray
        Coefficients, updated in place.
    diag : (m, n) ndarray
        ``Gs[j, j, i]`` (positive).
    lam : float32
    n_sweeps : int
    tol : float
        Stop early once no coefficient of any row moved more than ``tol`` in a sweep.

    Returns
    -------
    maxd : (n,) ndarray
        Largest coefficient change of every row in the last sweep.
    stable : (n,) ndarray of bool
        Rows whose support did not change in the last sweep.
    sweeps : int
        Sweeps done.
    """
    m, n = u.shape
    # Unit-norm atoms (to rounding) skip the scaling; the fixed point does not depend on the step.
    unit = bool(np.all(np.abs(diag - 1) <= 1e-4))
    z, new, delta, maxd = (np.empty(n, u.dtype) for _ in range(4))
    tmp = np.empty_like(g)
    sweep = 0
    while sweep < n_sweeps:
        sweep += 1
        support = u != 0
        maxd.fill(0)
        for j in range(m):
            uj = u[j]
            if unit:
                np.add(g[j], uj, out=z)
            else:
                np.multiply(diag[j], uj, out=z)
                z += g[j]
            # soft thresholding, z - clip(z, -lam, lam), divided by |d_j|^2
            np.clip(z, -lam, lam, out=new)
            np.subtract(z, new, out=new)
            if not unit:
                new /= diag[j]
            np.subtract(new, uj, out=delta)
            if delta.any():
                np.multiply(Gs[j], delta, out=tmp)
                g -= tmp
                uj[...] = new
                np.abs(delta, out=delta)
                np.maximum(maxd, delta, out=maxd)
        if maxd.max() < tol:
            break
    stable = np.all((u != 0) == support, axis=0)
    return maxd, stable, sweep


def _newton_on_support(G, W, c, u, lam):
    """Newton steps of each row's lasso on the support and signs of ``u`` (one linear system per row).

    On a support ``S`` with signs ``s`` the lasso minimizer solves
    ``G_SS z_S = c_S - lam s_S``. On the segment from ``u`` towards ``z`` the
    objective is the convex quadratic that ``z`` minimizes until the first
    coefficient changes sign, so a step goes to ``z`` when ``sign(z_S) = s``
    (then ``z`` is exact up to rounding) and otherwise stops at that first
    zero crossing and drops the coefficient: the step of feature-sign
    search [1]_, repeated on the smaller support (``_NEWTON_STEPS`` at most).
    The objective never increases.

    Parameters
    ----------
    G : (K, K) ndarray
        Gram matrix of the dictionary.
    W : (p, m) ndarray of int
        Working sets.
    c : (p, m) ndarray
        Correlations ``<x, d_W>``.
    u : (p, m) ndarray
        Current coefficients.
    lam : float32

    Returns
    -------
    z : (p, m) ndarray
        The new coefficients.
    ok : (p,) ndarray of bool
        Rows whose Newton solution kept the signs of ``u``.

    References
    ----------
    .. [1] H. Lee, A. Battle, R. Raina and A. Y. Ng, "Efficient sparse coding
       algorithms", NIPS 2006.
    """
    z, ok = u.copy(), np.zeros(len(u), dtype=bool)
    todo = np.arange(len(u))
    for _ in range(_NEWTON_STEPS):
        z[todo], ok[todo] = _feature_sign_step(G, W[todo], c[todo], z[todo], lam)
        todo = todo[~ok[todo]]
        if todo.size == 0:
            break
    return z, ok


def _feature_sign_step(G, W, c, u, lam):
    """One step of :func:`_newton_on_support` (same parameters and returns)."""
    mask = u != 0
    k = mask.sum(axis=1)
    z, ok = u.copy(), np.zeros(len(u), dtype=bool)
    order = np.argsort(k, kind="stable")
    for part in np.array_split(order, min(_NEWTON_GROUPS, order.size)):
        kk = int(k[part].max())
        if kk == 0:
            ok[part] = True
            continue
        # support slots first; padding slots get an identity block and a zero right-hand side
        slots = np.argsort(~mask[part], axis=1, kind="stable")[:, :kk]
        valid = np.take_along_axis(mask[part], slots, 1)
        atoms = np.take_along_axis(W[part], slots, 1)
        A = np.take(G, atoms[:, :, None] * len(G) + atoms[:, None, :]).astype(np.float64)  # flat take: 2x faster
        A *= valid[:, :, None]
        A *= valid[:, None, :]
        A[:, np.arange(kk), np.arange(kk)] += ~valid
        uS = np.take_along_axis(u[part], slots, 1).astype(np.float64)
        s = np.sign(uS)
        cS = np.take_along_axis(c[part], slots, 1).astype(np.float64)
        try:
            zS = np.linalg.solve(A, ((cS - lam * s) * valid)[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # a singular support (repeated atoms): left to coordinate descent
            continue
        flip = (np.sign(zS) != s) & valid
        good = ~flip.any(axis=1)
        # first zero crossing on the segment uS -> zS
        t = np.where(flip, uS / np.where(flip, uS - zS, 1), np.inf)
        first = np.argmin(t, axis=1)
        step = np.where(good, 1, t[np.arange(len(part)), first])[:, None]
        new = (uS + step * (zS - uS)) * valid
        new[np.flatnonzero(~good), first[~good]] = 0
        # On a badly conditioned support rounding can spoil the step: keep only
        # the steps that lower the objective restricted to the support.
        descent = _restricted_objective(new, A, cS, lam) <= _restricted_objective(uS, A, cS, lam)
        zp = z[part]
        np.put_along_axis(zp, slots, np.where(descent[:, None], new, uS), 1)
        z[part] = zp
        ok[part] = good & descent
    return z, ok


def _restricted_objective(x, A, c, lam):
    """``0.5 x^T A x - c^T x + lam |x|_1`` for every row of ``x`` (p, k) and ``A`` (p, k, k)."""
    return ((0.5 * np.matmul(A, x[:, :, None])[:, :, 0] - c) * x).sum(axis=1) + lam * np.abs(x).sum(axis=1)


def working_set_lasso(X, dictionary, lam, *, working_set=48, tol=1e-4, max_iter=300, gram=None,
                      batch_size=2048):
    """Exact batched lasso ``min_u 0.5 ||x - u D||^2 + lam ||u||_1`` by working sets.

    Every row is solved on a small working set of atoms instead of the whole
    dictionary, and its working set is corrected until the optimality (KKT)
    conditions hold on *all* atoms: the result is the lasso minimizer (to
    ``tol``), the same as that of :func:`fista_lasso` run to convergence or of
    scikit-learn's LARS, at a fraction of the cost when the codes are sparse.

    Parameters
    ----------
    X : (n, d) array-like
        One problem per row.
    dictionary : (K, d) array-like
        Atoms ``D`` as rows (any norms; rows of zeros are never used).
    lam : float
        L1 weight in the 0.5-scaled objective above.
    working_set : int, default=48
        Atoms per row in the restricted problems (the width of the batched
        arrays); it should exceed the usual number of non-zero coefficients.
        A row whose support outgrows it is solved again with twice as many.
    tol : float, default=1e-4
        Relative KKT tolerance: a row is accepted when, with ``r = x - u D``,
        every zero coefficient has ``|<d_j, r>| <= lam (1 + tol)`` and every
        non-zero one ``|<d_j, r> - lam sign(u_j)| <= lam tol``. Values below
        1e-5 are raised to it (the check runs in float32).
    max_iter : int, default=300
        Coordinate-descent sweeps allowed per row (99.9% of the SIFT
        descriptors of 15-Scene need at most 90). Rows that still fail the KKT
        check, which only badly conditioned supports do, are then solved by
        scikit-learn's exact LARS (:func:`~sklearn.decomposition.sparse_encode`
        with ``algorithm="lasso_lars"``).
    gram : (K, K) ndarray, optional
        ``D D^T``; computed when not given.
    batch_size : int, default=2048
        Rows solved together: a row that is done makes room for the next one.
        Memory is about ``batch_size * (working_set^2 + 3 K)`` float32 values.

    Returns
    -------
    codes : (n, K) ndarray of float32

    See Also
    --------
    fista_lasso : batched FISTA on the whole dictionary.
    sklearn.decomposition.sparse_encode : scikit-learn's lasso solvers, one problem at a time.

    Notes
    -----
    The lasso [1]_ of a batch of rows is solved in three steps:

    1. ``C = X D^T`` (one GEMM). Rows with ``max_j |C_j| <= lam`` have the
       zero code. A row's working set ``W`` starts as its ``working_set``
       atoms of largest ``|C_j|``.
    2. The restricted problems on the gathered Gram blocks ``G_WW`` are solved
       by cyclic coordinate descent [2]_ vectorized across rows; once a row's
       support settles, a Newton step on its support and signs (the step of
       feature-sign search [3]_, a batched linear solve) lands on the exact
       restricted solution.
    3. Every few sweeps the KKT conditions are checked on all ``K`` atoms with
       one GEMM, ``(X - U D) D^T``. Rows that pass are done. Atoms outside
       ``W`` that violate them replace zero-coefficient atoms of ``W``
       (largest violation first, coefficients warm-started), as in the
       working-set strategies of [4]_; a row without a free slot is solved
       again with a working set twice as large.

    Atoms enter a working set only on evidence from the full gradient and a
    row is accepted only on the full KKT check, so the working set size
    changes the speed, not the result.

    References
    ----------
    .. [1] R. Tibshirani, "Regression Shrinkage and Selection via the Lasso",
       J. R. Stat. Soc. B 58(1), 1996.
    .. [2] J. Friedman, T. Hastie and R. Tibshirani, "Regularization Paths for
       Generalized Linear Models via Coordinate Descent", J. Stat. Softw. 33(1),
       2010. https://doi.org/10.18637/jss.v033.i01
    .. [3] H. Lee, A. Battle, R. Raina and A. Y. Ng, "Efficient sparse coding
       algorithms", NIPS 2006.
    .. [4] M. Massias, A. Gramfort and J. Salmon, "Celer: a Fast Solver for the
       Lasso with Dual Extrapolation", ICML 2018.
    """
    D = np.ascontiguousarray(dictionary, dtype=np.float32)
    X = np.ascontiguousarray(X, dtype=np.float32)
    G = np.asarray(D @ D.T if gram is None else gram, dtype=np.float32)
    G = np.ascontiguousarray(0.5 * (G + G.T))  # exactly symmetric Gram blocks
    out = np.zeros((X.shape[0], D.shape[0]), np.float32)
    m = min(int(working_set), D.shape[0])
    _working_set_pool(X, D, G, np.float32(lam), m, None, tol, max_iter, int(batch_size), out, np.arange(len(X)))
    return out


def _working_set_pool(X, D, G, lam, m, start, tol, max_iter, pool, out, index):
    """Solve the rows of ``X`` with working sets of ``m`` atoms, ``pool`` rows at a time.

    ``start`` is None (working sets from the correlations) or ``(W, u)``, both
    ``(n, m)``, to warm-start every row. Row ``i``'s code goes to ``out[index[i]]``.
    A round runs coordinate descent (and Newton steps) on the rows of the pool,
    checks their KKT conditions on all atoms and swaps violating atoms into their
    working sets; finished rows make room for new ones.
    """
    n, K = X.shape[0], D.shape[0]
    tol = max(float(tol), 1e-5)  # float32 gradients
    thr = lam * np.float32(1 + tol)  # bound on |gradient| of a zero coefficient
    cd_tol = 0.1 * lam * tol
    diagK = np.diagonal(G).copy()
    diagK[diagK <= 0] = 1  # atoms of zero norm: their coefficient stays zero
    # The rows being solved are the last axis of every state array: rows and
    # used sweeps (p,), working sets WT (m, p), their Gram blocks Gs (m, m, p),
    # correlations c, gradients g, coefficients u and Gram diagonals diag (m, p).
    state = [np.empty(0, np.int64), np.empty(0, np.int64), np.empty((m, 0), np.int64),
             np.empty((m, m, 0), np.float32), *(np.empty((m, 0), np.float32) for _ in range(4))]
    keep = None
    wider, failed = [], []
    admitted = 0
    while True:
        parts = [[a if keep is None else np.compress(keep, a, axis=-1)] for a in state]
        room = pool - parts[0][0].size
        if room > 0 and admitted < n:
            new = np.arange(admitted, min(n, admitted + room))
            admitted = new[-1] + 1
            for part, a in zip(parts, _admit_rows(X, D, G, diagK, lam, m, start, new)):
                part.append(a)
        state = [np.concatenate(part, axis=-1) if len(part) > 1 or keep is not None else part[0] for part in parts]
        keep = None
        rows, used, WT, Gs, c, g, u, diag = state
        if rows.size == 0:
            break

        maxd, stable, sweeps = _cd_sweeps(Gs, g, u, diag, lam, _SWEEPS_PER_ROUND, cd_tol)
        used += sweeps
        settled = np.flatnonzero((maxd < _NEWTON_BELOW) & stable)
        if settled.size:
            u[:, settled] = _newton_on_support(G, WT[:, settled].T, c[:, settled].T, u[:, settled].T, lam)[0].T

        grad, viol, rr, cc, done, outside_bad = _check_kkt(X[rows], D, lam, tol, thr, WT, g, u)
        overflow = _swap_in_violators(G, diagK, state, grad, viol, rr, cc, outside_bad, thr)

        give_up = ~done & ~overflow & (used >= max_iter)
        finished = done | overflow | give_up
        if finished.any():
            W = WT.T
            if done.any():
                codes = np.zeros((int(done.sum()), K), np.float32)
                np.put_along_axis(codes, W[done], u[:, done].T, 1)
                out[index[rows[done]]] = codes
            if overflow.any():
                wider.append((rows[overflow], W[overflow], u[:, overflow].T, viol[overflow]))
            failed.append(rows[give_up])
            keep = ~finished
    _solve_left_over(X, D, G, lam, m, tol, max_iter, pool, out, index, wider, failed)


def _admit_rows(X, D, G, diagK, lam, m, start, new):
    """The state arrays ``(rows, used, WT, Gs, c, g, u, diag)`` of rows ``new`` entering the pool.

    Without ``start``, a row's working set is its ``m`` atoms of largest
    ``|<x, d_j>|``, and rows whose correlations all stay within ``lam`` (the
    zero code, already in ``out``) are left out.
    """
    K = D.shape[0]
    Cn = X[new] @ D.T
    if start is None:
        nonzero = np.abs(Cn).max(axis=1) > lam  # the others have the zero code
        new, Cn = new[nonzero], Cn[nonzero]
        if m < K:  # the m largest correlations, sorted (the Gram gathers read G in order)
            Wn = np.sort(np.argpartition(-np.abs(Cn), m - 1, axis=1)[:, :m], axis=1)
        else:
            Wn = np.tile(np.arange(K), (new.size, 1))
        un = np.zeros((m, new.size), np.float32)
    else:
        Wn, un = start[0][new], np.ascontiguousarray(start[1][new].T, dtype=np.float32)
    # fancy indexing lays its result out like its index: keep the index C-contiguous
    WnT = np.ascontiguousarray(Wn.T)
    Gsn = G[WnT[:, None, :], WnT[None, :, :]]
    cn = np.take_along_axis(Cn, Wn, 1).T
    gn = cn - np.einsum("jkp,kp->jp", Gsn, un) if start is not None else cn
    return new, np.zeros(new.size, np.int64), WnT, Gsn, cn, gn, un, diagK[WnT]


def _check_kkt(Xr, D, lam, tol, thr, WT, g, u):
    """KKT conditions of every row's lasso on all atoms, from ``grad_j = <d_j, x - u D>``.

    Refreshes the restricted gradients ``g`` (m, p) in place.

    Returns
    -------
    grad : (p, K) ndarray
        Full gradients.
    viol : (p, K) ndarray
        ``|grad|`` outside the working sets, zero inside.
    rr, cc : (v,) ndarray of int
        Row and atom of every violation outside the working sets.
    done : (p,) ndarray of bool
        Rows that pass the check on all atoms.
    outside_bad : (p,) ndarray of bool
        Rows with a violation outside their working set.
    """
    m, nr = u.shape
    W = WT.T
    U = sp.csr_matrix((u.T.ravel(), W.ravel(), np.arange(0, nr * m + 1, m)), shape=(nr, D.shape[0]))
    grad = (Xr - U @ D) @ D.T
    g[...] = np.take_along_axis(grad, W, 1).T  # fresh restricted gradient
    inside_ok = np.where(u != 0, np.abs(g - lam * np.sign(u)) <= lam * tol, np.abs(g) <= thr).all(axis=0)
    viol = np.abs(grad)
    np.put_along_axis(viol, W, 0, 1)
    rr, cc = np.nonzero(viol > thr)  # violations outside the working sets
    outside_bad = np.zeros(nr, dtype=bool)
    outside_bad[rr] = True
    return grad, viol, rr, cc, inside_ok & ~outside_bad, outside_bad


def _swap_in_violators(G, diagK, state, grad, viol, rr, cc, outside_bad, thr):
    """The worst violators replace atoms of W with a zero, non-violating coefficient (in place).

    Updates the working sets, Gram blocks, correlations, gradients and
    diagonals of ``state``; the new coefficients are zero. Returns the rows
    with a violation outside their working set and no free slot, ``(p,)`` bool.
    """
    _, _, WT, Gs, c, g, u, diag = state
    free = (u == 0) & (np.abs(g) <= thr)  # (m, nr)
    n_free = free.sum(axis=0)
    overflow = outside_bad & (n_free == 0)
    if rr.size:
        order = np.lexsort((-viol[rr, cc], rr))
        rr, cc = rr[order], cc[order]
        rank = np.arange(rr.size) - np.searchsorted(rr, rr)
        fits = rank < n_free[rr]
        rr, cc, rank = rr[fits], cc[fits], rank[fits]
        grown = np.unique(rr)
        slots = np.argsort(~free[:, grown], axis=0, kind="stable")[rank, np.searchsorted(grown, rr)]
        WT[slots, rr] = cc
        block = G[cc[None, :], WT[:, rr]]  # (m, p), including the row's other new atoms
        Gs[slots, :, rr] = block.T
        Gs[:, slots, rr] = block
        g[slots, rr] = grad[rr, cc]
        c[slots, rr] = grad[rr, cc] + np.einsum("kp,kp->p", block, u[:, rr])  # <d, x> = grad + <d, u D>
        diag[slots, rr] = diagK[cc]
    return overflow


def _solve_left_over(X, D, G, lam, m, tol, max_iter, pool, out, index, wider, failed):
    """Rows the pool did not accept: outgrown working sets, and rows out of sweeps."""
    K = D.shape[0]
    if wider:  # supports that outgrew the working sets: twice as wide, warm-started
        r, W_r, u_r, viol_r = (np.concatenate(parts) for parts in zip(*wider))
        m2 = min(2 * m, K)
        np.put_along_axis(viol_r, W_r, -1, 1)
        W2 = np.concatenate([W_r, np.argpartition(-viol_r, m2 - m - 1, axis=1)[:, : m2 - m]], axis=1)
        u2 = np.concatenate([u_r, np.zeros((r.size, m2 - m), np.float32)], axis=1)
        _working_set_pool(X[r], D, G, lam, m2, (W2, u2), tol, max_iter, pool, out, index[r])
    failed = np.concatenate(failed) if failed else np.empty(0, np.int64)
    if failed.size:  # rows the sweeps did not settle: the exact, one-row-at-a-time LARS
        out[index[failed]] = sparse_encode(X[failed].astype(np.float64), D.astype(np.float64),
                                           algorithm="lasso_lars", alpha=float(lam))


def learn_dictionary(X, n_atoms, lam, *, n_epochs=2, batch_size=2048, random_state=None):
    """Online dictionary learning for ``min_{D, U} 0.5 ||X - U D||^2 + lam ||U||_1``, ``||d_j|| <= 1``.

    The online algorithm of Mairal et al. [1]_: mini-batches are coded exactly
    by :func:`working_set_lasso`, their statistics ``A = sum u u^T`` and
    ``B = sum x u^T`` are accumulated, and one pass of block coordinate
    descent over the atoms updates the dictionary after every batch.

    Parameters
    ----------
    X : (n, d) array-like
        Training samples.
    n_atoms : int
    lam : float
        L1 weight in the 0.5-scaled objective above.
    n_epochs : int, default=2
        Passes over ``X`` (shuffled each time).
    batch_size : int, default=2048
    random_state : int, RandomState instance or None
        Initial atoms (random samples), shuffling, and the restarts of unused atoms.

    Returns
    -------
    dictionary : (n_atoms, d) ndarray of float64
        Unit-norm atoms (the rows).

    Notes
    -----
    Unused atoms (``A_jj <= 1e-6``) are restarted from a random sample of the
    batch plus a little noise, as in scikit-learn's
    :class:`~sklearn.decomposition.MiniBatchDictionaryLearning`, whose
    forgetting schedule of ``A`` and ``B`` this also uses. On 100,000 dense SIFT
    descriptors of 15-Scene (1024 atoms, ``lam = 0.075``) two epochs take
    about 60 s of one core and reach a 1.6% lower objective on held-out
    descriptors than scikit-learn's estimator with ``max_iter=5, batch_size=256,
    fit_algorithm="cd"``, which takes 190 s (its early stopping ends it after
    101 mini-batches).

    References
    ----------
    .. [1] J. Mairal, F. Bach, J. Ponce and G. Sapiro, "Online Learning for
       Matrix Factorization and Sparse Coding", JMLR 11, 2010.
       https://www.jmlr.org/papers/v11/mairal10a.html
    """
    rng = check_random_state(random_state)
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    batch_size = min(int(batch_size), n)

    def restart(j, sample):
        atom = sample + rng.normal(0, 0.01 * (sample.std() or 1), d)
        Dt[:, j] = atom / np.linalg.norm(atom)

    Dt = np.empty((d, n_atoms))  # atoms as columns
    for j, i in enumerate(rng.choice(n, n_atoms, replace=n < n_atoms)):
        restart(j, X[i].astype(np.float64))
    A, B = np.zeros((n_atoms, n_atoms)), np.zeros((d, n_atoms))
    step = 0
    for _ in range(n_epochs):
        for batch in np.array_split(rng.permutation(n), max(1, n // batch_size)):
            Xb = X[batch]
            U = sp.csr_matrix(working_set_lasso(Xb, Dt.T, lam).astype(np.float64))
            bs = len(batch)
            theta = (step + 1) * bs if step < bs - 1 else bs**2 + step + 1 - bs
            beta = (theta + 1 - bs) / (theta + 1)
            A *= beta
            A += (U.T @ U).toarray() / bs
            B *= beta
            B += (U.T @ Xb.astype(np.float64)).T / bs
            for j in range(n_atoms):
                if A[j, j] > 1e-6:
                    Dt[:, j] += (B[:, j] - Dt @ A[j]) / A[j, j]
                    Dt[:, j] /= max(1.0, np.linalg.norm(Dt[:, j]))
                else:
                    restart(j, Xb[rng.randint(bs)].astype(np.float64))
            step += 1
    return l2_normalize_rows(Dt.T.copy(), axis=1)


class SparseCoding(BaseEncoder):
    """Sparse coding spatial pyramid matching (ScSPM, Yang et al. 2009).

    Descriptors are L2-normalized and coded on a learned dictionary ``D`` by
    ``min_u ||x - u D||^2 + alpha ||u||_1``; the absolute codes are max-pooled
    per spatial-pyramid cell and the whole vector is L2-normalized.

    Parameters
    ----------
    n_words : int, default=1024
        Dictionary size.
    alpha : float, default=0.15
        The paper's sparsity weight ``lambda`` (objective without the 1/2).
    pooling : {"max", "sum"}, default="max"
        Pooling of ``|u|`` per cell.
    pyramid : SpatialPyramid or None, default=None
        The paper uses ``SpatialPyramid(levels=(1, 2, 4))``.
    normalize : {"l2", "l1"} or None, default="l2"
        Normalization of the whole vector of an image.
    algorithm : {"working_set", "fista", "lasso_lars"}, default="working_set"
        ``"working_set"``: our exact batched working-set solver
        :func:`working_set_lasso` (coordinate descent and Newton steps on a few
        dozen atoms per descriptor, KKT conditions checked on all atoms).
        ``"fista"``: our batched FISTA :func:`fista_lasso` on the whole
        dictionary (numpy GEMMs over all descriptors of a chunk), stopped after
        ``max_iter`` iterations. ``"lasso_lars"``: scikit-learn's exact
        LARS-lasso :func:`~sklearn.decomposition.sparse_encode`, one descriptor
        at a time.
    max_iter : int, default=100
        FISTA iterations (``"fista"`` only).
    tol : float, default=1e-4
        ``"fista"``: stop when no coefficient changes more than this.
        ``"working_set"``: relative tolerance of the KKT check (see
        :func:`working_set_lasso`).
    dict_max_iter : int, default=2
        Epochs of the online dictionary learning, :func:`learn_dictionary`.
    max_descriptors : int, default=100_000
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None

    Attributes
    ----------
    codebook_ : (n_words, n_features_in_) ndarray of float32
        Dictionary atoms (unit L2 norm rows).
    n_features_in_ : int
    n_features_out_ : int

    References
    ----------
    .. [1] J. Yang, K. Yu, Y. Gong and T. Huang, "Linear Spatial Pyramid
       Matching Using Sparse Coding for Image Classification", CVPR 2009.
       https://doi.org/10.1109/CVPR.2009.5206757

    .. [2] H. Lee, A. Battle, R. Raina and A. Y. Ng, "Efficient sparse coding
       algorithms", NIPS 2006.
    .. [3] J. Mairal, F. Bach, J. Ponce and G. Sapiro, "Online Learning for
       Matrix Factorization and Sparse Coding", JMLR 11, 2010.

    Notes
    -----
    The paper solves the lasso with feature-sign search [2]_ and learns the
    dictionary by alternating it with a Lagrange-dual dictionary update; here
    the dictionary is learned online [3]_ (:func:`learn_dictionary`). The
    default ``"working_set"`` solver reaches the same minimizer as
    feature-sign search and LARS (every code passes the lasso's KKT
    conditions on all atoms, to ``tol``): it solves each descriptor on a
    working set of 48 atoms, grown from the atoms that violate the KKT
    conditions, which pays because a code has a few dozen non-zeros out of
    1024. On dense SIFT of 15-Scene (``scspm``) it codes about 3,800
    descriptors per second of one core and encodes an image (about 920
    descriptors, pooled) in 0.25 s of CPU, 3.8 times faster than
    ``"fista"``, whose 100 iterations stop short of the minimizer (objective
    1.3% above it on average, codes off by up to 0.4). scikit-learn writes the objective with a factor 1/2 on the
    squared error, so its penalty is ``alpha / 2``.
    """

    _parameter_constraints = {
        **BaseEncoder._parameter_constraints,
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "pooling": [StrOptions({"sum", "max"})],
        "normalize": [StrOptions({"l1", "l2"}), None],
        "algorithm": [StrOptions({"working_set", "fista", "lasso_lars"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "dict_max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, n_words=1024, alpha=0.15, pooling="max", pyramid=None, normalize="l2", algorithm="working_set",
        max_iter=100, tol=1e-4, dict_max_iter=2, max_descriptors=100_000, random_state=None, n_jobs=None,
    ):
        self.n_words = n_words
        self.alpha = alpha
        self.pooling = pooling
        self.pyramid = pyramid
        self.normalize = normalize
        self.algorithm = algorithm
        self.max_iter = max_iter
        self.tol = tol
        self.dict_max_iter = dict_max_iter
        self.max_descriptors = max_descriptors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _prepare(self, X, P):
        return l2_normalize_rows(X, axis=1).astype(np.float32)

    def _fit_sample(self, X, rng):
        D = learn_dictionary(X, self.n_words, self.alpha / 2.0, n_epochs=self.dict_max_iter, random_state=rng)
        self.codebook_ = np.ascontiguousarray(D, dtype=np.float32)
        self._lipschitz = float(np.linalg.norm(D, 2) ** 2)

    def _code_dim(self):
        return self.n_words

    def _per_descriptor_elements(self):
        # the working-set solver keeps its own state within a fixed number of rows
        return (2 if self.algorithm == "working_set" else 5) * self.n_words

    def _codes(self, X):
        lam = self.alpha / 2.0
        if self.algorithm == "working_set":
            U = working_set_lasso(X, self.codebook_, lam, tol=self.tol)
        elif self.algorithm == "fista":
            U = fista_lasso(X, self.codebook_, lam, max_iter=self.max_iter, tol=self.tol, lipschitz=self._lipschitz)
        else:
            U = sparse_encode(X.astype(np.float64), self.codebook_.astype(np.float64),
                              algorithm="lasso_lars", alpha=lam).astype(np.float32)
        return np.abs(U, out=U)

    def _postprocess(self, codes):
        return normalize_rows(codes, self.normalize)
