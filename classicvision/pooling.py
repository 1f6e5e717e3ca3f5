"""Spatial pyramids and sum / max pooling of local codes.

A spatial pyramid splits the image into grids of cells at several levels and pools
the codes of the descriptors that fall in each cell. :class:`SpatialPyramid` is the
layout (the grids of every level and their weights); the functions of this module
are the pooling that every encoder of :mod:`classicvision.encoding` runs on it, for
per-descriptor codes (dense or sparse) and for the sufficient statistics of Fisher
vectors and VLAD, without ever building one code vector per descriptor and per
cell. Whether a cell sums or takes the max, and how the pooled vector is
normalized, is the encoder's choice (its ``pooling`` and ``normalize``).

The key idea is the *atom*: the intersection of one cell of every level. For the
pyramid ``(1, 2, 4)`` the atoms are the 16 cells of the finest grid; for the
PASCAL-style ``(1, (3, 1))`` they are the 3 horizontal strips. Statistics are
accumulated once per atom (O(n) work over the descriptors) and then combined per
cell (sum for sum pooling, max for max pooling), which is exact for both:

1. :meth:`SpatialPyramid.sorted_atoms`: the atom of every descriptor, and the order
   that makes the rows of an atom contiguous;
2. :func:`reduce_sorted` (dense codes) or :func:`reduce_sparse_codes` (``k`` non-zero
   values per code): one row of statistics per atom;
3. :func:`combine_atoms`: atoms into the cells of every level, per image;
4. :meth:`SpatialPyramid.weight_cells`: the level weights.

:meth:`SpatialPyramid.pool` runs the four steps on the codes of one image.

References
----------
.. [1] S. Lazebnik, C. Schmid and J. Ponce, "Beyond Bags of Features: Spatial
   Pyramid Matching for Recognizing Natural Scene Categories", CVPR 2006.
   https://doi.org/10.1109/CVPR.2006.68
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.base import BaseEstimator

__all__ = ["SpatialPyramid", "combine_atoms", "reduce_sorted", "reduce_sparse_codes"]


def reduce_sorted(values: np.ndarray, group: np.ndarray, n_groups: int, how: str = "sum") -> np.ndarray:
    """Sum or max ``values`` rows by ``group`` id, for rows already sorted by group.

    Parameters
    ----------
    values : (n, k) ndarray
        Rows sorted so that equal ``group`` ids are contiguous.
    group : (n,) ndarray of int
        Non-decreasing group ids in ``[0, n_groups)``.
    n_groups : int
        Number of output rows; groups without rows give zeros.
    how : {"sum", "max"}

    Returns
    -------
    out : (n_groups, k) ndarray of values.dtype
    """
    out = np.zeros((n_groups, values.shape[1]), dtype=values.dtype)
    if values.shape[0] == 0:
        return out
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ufunc = np.add if how == "sum" else np.maximum
    if values.shape[0] < 8 * len(starts):  # many tiny groups
        out[group[starts]] = ufunc.reduceat(values, starts, axis=0)
        return out
    # ufunc.reduce over each contiguous block is ~20x faster than reduceat
    # along axis 0 for long blocks of wide rows (vectorized over columns).
    ends = np.r_[starts[1:], values.shape[0]]
    for g, s, e in zip(group[starts], starts, ends):
        ufunc.reduce(values[s:e], axis=0, out=out[g])
    return out


def _check_how(how: str) -> str:
    if how not in ("sum", "max"):
        raise ValueError(f"pooling must be 'sum' or 'max', got {how!r}")
    return how


def reduce_sparse_codes(values: np.ndarray, index: np.ndarray, atom: np.ndarray, n_atoms: int, n_words: int,
                        how: str = "sum") -> np.ndarray:
    """Sum or max pooling per atom of sparse codes, without a dense ``(n, n_words)`` array.

    Parameters
    ----------
    values : (n, k) ndarray
        Non-zero code values.
    index : (n, k) ndarray of int
        Their word indices, distinct within a row.
    atom : (n,) ndarray of int
        Atom of every descriptor (in any order).
    n_atoms : int
        Number of atoms (output rows).
    n_words : int
        Length of a dense code (output columns).
    how : {"sum", "max"}

    Returns
    -------
    stats : (n_atoms, n_words) ndarray of float32
        Equal to pooling the dense codes (whose other entries are zero) with
        :func:`reduce_sorted`.
    """
    key = (atom[:, None] * n_words + index).ravel()
    vals = np.asarray(values, np.float32).ravel()
    size = n_atoms * n_words
    if how == "sum":
        return np.bincount(key, weights=vals, minlength=size).astype(np.float32).reshape(n_atoms, n_words)
    out = np.full(size, -np.inf, dtype=np.float32)
    np.maximum.at(out, key, vals)
    # A word used by only some descriptors of the atom also sees their zeros.
    used = np.bincount(key, minlength=size)
    atom_size = np.bincount(atom, minlength=n_atoms)
    partial = used < np.repeat(atom_size, n_words)
    out[partial] = np.maximum(out[partial], 0)
    return out.reshape(n_atoms, n_words)


def combine_atoms(atom_stats: np.ndarray, membership: np.ndarray, n_images: int, n_cells: int,
                  how: str = "sum") -> np.ndarray:
    """Combine per-atom statistics into the cells of every level, image by image.

    Parameters
    ----------
    atom_stats : (n_atoms, k) ndarray
        Statistics (summed or max-pooled codes, or sufficient statistics) of
        every atom.
    membership : (n_atoms, 1 + n_levels) ndarray of int
        As returned by :meth:`SpatialPyramid.atoms` with ``groups``: the image
        of every atom, then its cell at every level.
    n_images : int
        Number of images (groups).
    n_cells : int
        Cells of the pyramid, ``SpatialPyramid.n_cells``.
    how : {"sum", "max"}, default="sum"
        Sum suits sums of codes and sufficient statistics; max suits max-pooled
        codes (empty cells stay zero).

    Returns
    -------
    cells : (n_images, n_cells, k) ndarray of atom_stats.dtype
    """
    n_atoms, n_levels = membership.shape[0], membership.shape[1] - 1
    rows = membership[:, :1] * n_cells + membership[:, 1:]  # (n_atoms, n_levels)
    if _check_how(how) == "sum":
        M = csr_matrix(
            (np.ones(n_atoms * n_levels, dtype=atom_stats.dtype),
             (rows.T.ravel(), np.tile(np.arange(n_atoms), n_levels))),
            shape=(n_images * n_cells, n_atoms),
        )
        out = np.asarray(M @ atom_stats)
    else:
        out = np.full((n_images * n_cells, atom_stats.shape[1]), -np.inf, dtype=atom_stats.dtype)
        for j in range(n_levels):
            np.maximum.at(out, rows[:, j], atom_stats)
        out[np.isneginf(out)] = 0
    return out.reshape(n_images, n_cells, -1)


def _as_grid(level) -> tuple[int, int]:
    if isinstance(level, (Integral, np.integer)) and not isinstance(level, bool):
        if level < 1:
            raise ValueError(f"pyramid level {level!r} must be >= 1")
        return int(level), int(level)
    try:
        rows, cols = level
    except (TypeError, ValueError):
        raise ValueError(
            f"pyramid level {level!r} must be an int g (g x g grid) or a (rows, cols) pair"
        ) from None
    if not all(isinstance(v, (Integral, np.integer)) and not isinstance(v, bool) and v >= 1 for v in (rows, cols)):
        raise ValueError(f"pyramid level {level!r} needs positive integer rows and cols")
    return int(rows), int(cols)


class SpatialPyramid(BaseEstimator):
    """A spatial pyramid: grids of cells at several levels, and the weight of each level.

    The layout that the encoders pool over: they take it as their ``pyramid``
    parameter and choose themselves how a cell pools (their ``pooling``) and how
    the pooled vector is normalized (their ``normalize``). The object is stateless
    (it only holds parameters), so it can be shared by encoders and passed to
    ``clone``; parameters are checked whenever a method uses them.

    Parameters
    ----------
    levels : sequence of int or (int, int), default=(1, 2, 4)
        One entry per level: an int ``g`` for a ``g x g`` grid, or a pair
        ``(rows, cols)``. Lazebnik's pyramid is ``(1, 2, 4)``; the PASCAL VOC
        "1x1 + 3x1" layout (three horizontal strips) is ``(1, (3, 1))``.
    level_weights : None, "lazebnik" or sequence of float, default=None
        Weight applied to every cell of a level. ``"lazebnik"`` gives level 0
        the weight ``1 / 2**L`` and level ``l = 1..L`` the weight
        ``1 / 2**(L - l + 1)``: the weights of the histograms when the pyramid
        match kernel of eq. 3 of [1]_ is expanded into one histogram
        intersection (eq. 4), e.g. ``(1/4, 1/4, 1/2)`` for ``(1, 2, 4)``. It
        assumes that the levels double in resolution.

    Attributes
    ----------
    n_cells : int
        Total number of cells over all levels.

    References
    ----------
    .. [1] S. Lazebnik, C. Schmid and J. Ponce, "Beyond Bags of Features: Spatial
       Pyramid Matching for Recognizing Natural Scene Categories", CVPR 2006.
       https://doi.org/10.1109/CVPR.2006.68

    Examples
    --------
    >>> import numpy as np
    >>> sp = SpatialPyramid(levels=(1, 2))
    >>> sp.n_cells
    5
    >>> sp.cell_index(np.array([[0.1, 0.1], [0.9, 0.2], [1.0, 1.0]]))
    array([[0, 1],
           [0, 2],
           [0, 4]])
    """

    def __init__(self, *, levels=(1, 2, 4), level_weights=None):
        self.levels = levels
        self.level_weights = level_weights

    # ------------------------------------------------------------------ layout
    def grids(self) -> list[tuple[int, int]]:
        """The ``(rows, cols)`` grid of each level."""
        levels = self.levels
        if isinstance(levels, (Integral, np.integer)):
            levels = (levels,)
        try:
            grids = [_as_grid(level) for level in levels]
        except TypeError:
            raise ValueError(f"levels must be a sequence of grid sizes, got {self.levels!r}") from None
        if not grids:
            raise ValueError("levels must name at least one grid")
        return grids

    @property
    def n_levels(self) -> int:
        """Number of levels."""
        return len(self.grids())

    @property
    def n_cells(self) -> int:
        """Total number of cells over all levels."""
        return int(sum(r * c for r, c in self.grids()))

    def _offsets(self) -> np.ndarray:
        sizes = [r * c for r, c in self.grids()]
        return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def cell_weights(self) -> np.ndarray:
        """Weight of every cell, ``(n_cells,)`` float32 (ones without ``level_weights``)."""
        grids = self.grids()
        lw = self.level_weights
        if lw is None:
            weights = np.ones(len(grids))
        elif isinstance(lw, str):
            if lw != "lazebnik":
                raise ValueError(f"level_weights must be None, 'lazebnik' or a sequence, got {lw!r}")
            # kappa^L = I^L + sum_{l<L} (I^l - I^{l+1}) / 2^(L-l)   (eq. 3)
            #         = I^0 / 2^L + sum_{l>=1} I^l / 2^(L-l+1)          (eq. 4)
            L = len(grids) - 1
            weights = np.array([1.0 / 2 ** (L - l + 1) for l in range(L + 1)])
            weights[0] = 1.0 / 2**L
        else:
            weights = np.asarray(lw, dtype=float).reshape(-1)
            if weights.shape[0] != len(grids) or not np.all(np.isfinite(weights)):
                raise ValueError(
                    f"level_weights needs {len(grids)} finite values (one per level), got {lw!r}"
                )
        return np.repeat(weights, [r * c for r, c in grids]).astype(np.float32)

    def _check_positions(self, positions) -> np.ndarray:
        p = np.asarray(positions, dtype=np.float32)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"positions must have shape (n, 2) as (x, y), got {p.shape}")
        return p

    def cell_index(self, positions) -> np.ndarray:
        """Global cell id of every descriptor at every level.

        Parameters
        ----------
        positions : (n, 2) array-like of float
            ``(x, y)`` in ``[0, 1]``; values outside are clipped, and 1.0 falls in
            the last row / column.

        Returns
        -------
        cells : (n, n_levels) ndarray of int64
            Cell ids, offset per level so that they run over ``0 .. n_cells - 1``.
            Within a level, cells are numbered row by row.
        """
        p = self._check_positions(positions)
        grids = self.grids()
        out = np.empty((p.shape[0], len(grids)), dtype=np.int64)
        x = np.clip(p[:, 0], 0.0, 1.0)
        y = np.clip(p[:, 1], 0.0, 1.0)
        for j, ((rows, cols), off) in enumerate(zip(grids, self._offsets())):
            c = np.minimum((x * cols).astype(np.int64), cols - 1)
            r = np.minimum((y * rows).astype(np.int64), rows - 1)
            out[:, j] = off + r * cols + c
        return out

    def atoms(self, positions, groups=None) -> tuple[np.ndarray, np.ndarray]:
        """Split descriptors into atoms: the intersections of one cell per level.

        Parameters
        ----------
        positions : (n, 2) array-like of float
            ``(x, y)`` in ``[0, 1]``.
        groups : (n,) array-like of int, optional
            Image index of every descriptor when descriptors of several images
            are processed together; atoms never mix groups.

        Returns
        -------
        atom_id : (n,) ndarray of int64
            Atom of every descriptor, in ``0 .. n_atoms - 1``. Only non-empty
            atoms get an id, ordered by (group, cells).
        membership : (n_atoms, n_levels) ndarray of int64
            The cell (global id, as in :meth:`cell_index`) that each atom lies in
            at every level. With ``groups``, a further first column holds the
            atom's group: shape ``(n_atoms, 1 + n_levels)``.
        """
        cells = self.cell_index(positions)
        n = cells.shape[0]
        # Mixed-radix key: the tuple of per-level cell ids is one integer.
        sizes = np.array([r * c for r, c in self.grids()], dtype=np.int64)
        local = cells - self._offsets()[None, :]
        key = np.zeros(n, dtype=np.int64)
        for j in range(len(sizes)):
            key = key * sizes[j] + local[:, j]
        if groups is not None:
            g = np.asarray(groups, dtype=np.int64).reshape(-1)
            if g.shape[0] != n:
                raise ValueError(f"groups must have {n} entries, got {g.shape[0]}")
            key = g * int(np.prod(sizes)) + key
        uniq, first, atom_id = np.unique(key, return_index=True, return_inverse=True)
        membership = cells[first]
        if groups is not None:
            membership = np.concatenate([g[first, None], membership], axis=1)
        return atom_id.reshape(-1).astype(np.int64), membership

    # ----------------------------------------------------------------- pooling
    def sorted_atoms(self, positions, groups=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`atoms`, with the order that makes the descriptors of every atom contiguous.

        Parameters
        ----------
        positions : (n, 2) array-like of float
            ``(x, y)`` in ``[0, 1]``.
        groups : (n,) array-like of int, optional
            Image index of every descriptor, as for :meth:`atoms`.

        Returns
        -------
        order : (n,) ndarray of int64
            A stable sort of the descriptors by atom.
        atom : (n,) ndarray of int64
            Atom of the descriptors taken in ``order`` (non-decreasing), as
            :func:`reduce_sorted` needs.
        membership : (n_atoms, n_levels) or (n_atoms, 1 + n_levels) ndarray of int64
            As returned by :meth:`atoms`.
        """
        atom, membership = self.atoms(positions, groups)
        order = np.argsort(atom, kind="stable")
        return order, atom[order], membership

    def weight_cells(self, cells: np.ndarray) -> np.ndarray:
        """Multiply every cell by the weight of its level.

        Parameters
        ----------
        cells : (n_images, n_cells, K) ndarray

        Returns
        -------
        weighted : (n_images, n_cells, K) ndarray (a new array)
        """
        return cells * self.cell_weights().astype(cells.dtype)[None, :, None]

    def pool(self, codes, positions, how: str = "sum") -> np.ndarray:
        """Pool the codes of one image into the pyramid's cells.

        The same steps as the encoders run on a chunk of images (see the
        module's docstring).

        Parameters
        ----------
        codes : (n, K) array-like
            One code per descriptor.
        positions : (n, 2) array-like
            ``(x, y)`` of every descriptor in ``[0, 1]``.
        how : {"sum", "max"}, default="sum"
            Sum or max of the codes in a cell.

        Returns
        -------
        pooled : (n_cells, K) ndarray
            Sum or max of the codes in every cell, times the level weight.
            Empty cells are zero.
        """
        how = _check_how(how)
        codes = np.asarray(codes)
        if codes.ndim != 2:
            raise ValueError(f"codes must be 2-D (n, K), got shape {codes.shape}")
        p = self._check_positions(positions)
        if p.shape[0] != codes.shape[0]:
            raise ValueError(f"got {codes.shape[0]} codes but {p.shape[0]} positions")
        if not np.issubdtype(codes.dtype, np.floating):
            codes = codes.astype(np.float32)
        order, atom, membership = self.sorted_atoms(p, np.zeros(len(p), dtype=np.int64))
        stats = reduce_sorted(codes[order], atom, membership.shape[0], how)
        return self.weight_cells(combine_atoms(stats, membership, 1, self.n_cells, how))[0]
