"""Tests for classicvision.pooling.SpatialPyramid."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from classicvision.encoding import BagOfWords
from classicvision.encoding._base import normalize_rows
from classicvision.pooling import SpatialPyramid, combine_atoms, reduce_sorted


def _brute_pool(codes, positions, grids, how):
    """Per cell, a mask over all descriptors: the obvious O(n * n_cells) pooling."""
    out = []
    x, y = positions[:, 0], positions[:, 1]
    for rows, cols in grids:
        for r in range(rows):
            for c in range(cols):
                inx = (x >= c / cols) & ((x < (c + 1) / cols) | ((c == cols - 1) & (x <= 1)))
                iny = (y >= r / rows) & ((y < (r + 1) / rows) | ((r == rows - 1) & (y <= 1)))
                m = inx & iny
                if not m.any():
                    out.append(np.zeros(codes.shape[1]))
                elif how == "sum":
                    out.append(codes[m].sum(0))
                else:
                    out.append(codes[m].max(0))
    return np.array(out)


@pytest.mark.parametrize(
    "levels, n_cells, n_levels",
    [((1, 2, 4), 21, 3), ((1, (3, 1)), 4, 2), ((2,), 4, 1), (3, 9, 1), ((1, (2, 3)), 7, 2)],
)
def test_n_cells(levels, n_cells, n_levels):
    sp = SpatialPyramid(levels=levels)
    assert sp.n_cells == n_cells
    assert sp.n_levels == n_levels


def test_cell_index_known_positions():
    sp = SpatialPyramid(levels=(1, 2, (3, 1)))
    pos = np.array([[0.0, 0.0], [0.6, 0.1], [0.1, 0.6], [1.0, 1.0], [0.5, 0.5], [0.3, 0.34]])
    got = sp.cell_index(pos)
    # level 0: cell 0; level 1: cells 1..4 row by row; level 2: strips 5, 6, 7 (by y).
    expected = np.array(
        [[0, 1, 5], [0, 2, 5], [0, 3, 6], [0, 4, 7], [0, 4, 6], [0, 1, 6]]
    )
    assert_array_equal(got, expected)
    assert got.dtype == np.int64


def test_atoms_are_intersections():
    rng = np.random.default_rng(0)
    pos = rng.random((500, 2)).astype(np.float32)
    sp = SpatialPyramid(levels=(1, 2, 4))
    atom, membership = sp.atoms(pos)
    assert membership.shape == (16, 3)  # the 4x4 grid refines every level
    assert_array_equal(membership[atom], sp.cell_index(pos))
    sp = SpatialPyramid(levels=((1, 2), (2, 1)))
    atom, membership = sp.atoms(pos)
    assert membership.shape == (4, 2)
    assert_array_equal(membership[atom], sp.cell_index(pos))


def test_atoms_with_groups_never_mix_images():
    rng = np.random.default_rng(1)
    pos = rng.random((200, 2))
    groups = np.repeat([0, 1, 2, 3], 50)
    atom, membership = SpatialPyramid(levels=(1, 2)).atoms(pos, groups)
    assert membership.shape[1] == 3
    assert_array_equal(membership[atom, 0], groups)
    assert np.all(np.diff(membership[:, 0]) >= 0)


@pytest.mark.parametrize("how", ["sum", "max"])
@pytest.mark.parametrize("levels", [(1, 2, 4), (1, (3, 1)), ((2, 3),)])
def test_pool_matches_brute_force(how, levels):
    rng = np.random.default_rng(2)
    pos = rng.random((300, 2)).astype(np.float32)
    pos[:5] = [[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.25, 0.75]]
    codes = rng.standard_normal((300, 7)).astype(np.float32)
    sp = SpatialPyramid(levels=levels)
    got = sp.pool(codes, pos, how=how)
    assert got.shape == (sp.n_cells, 7)
    assert_allclose(got, _brute_pool(codes, pos, sp.grids(), how), rtol=1e-5, atol=1e-5)


def test_empty_cells_are_zero():
    pos = np.array([[0.1, 0.1], [0.2, 0.2]])
    codes = -np.ones((2, 3))
    for how in ("sum", "max"):
        pooled = SpatialPyramid(levels=(1, 2)).pool(codes, pos, how=how)
        assert_array_equal(pooled[2:], 0)
        assert_array_equal(pooled[1], -2 if how == "sum" else -1)
    empty = SpatialPyramid(levels=(1, 2)).pool(np.zeros((0, 3)), np.zeros((0, 2)))
    assert_array_equal(empty, np.zeros((5, 3)))


def test_lazebnik_weights():
    w = SpatialPyramid(levels=(1, 2, 4), level_weights="lazebnik").cell_weights()
    # L = 2: eq. 4 of Lazebnik et al. 2006 weighs levels 0, 1, 2 by 1/4, 1/4, 1/2
    assert_allclose(w, np.r_[0.25, np.full(4, 0.25), np.full(16, 0.5)])
    w = SpatialPyramid(levels=(1, 2, 4, 8), level_weights="lazebnik").cell_weights()
    assert_allclose(np.unique(w), [1 / 8, 1 / 4, 1 / 2])
    assert np.sum(w == 1 / 8) == 1 + 4  # levels 0 and 1 share 1 / 2**L


def test_lazebnik_weights_give_the_pyramid_match_kernel():
    """Intersection of weighted histograms == sum over levels of eq. 3."""
    rng = np.random.default_rng(5)
    sp = SpatialPyramid(levels=(1, 2, 4), level_weights="lazebnik")
    codes_a = np.eye(6)[rng.integers(0, 6, 80)]
    codes_b = np.eye(6)[rng.integers(0, 6, 90)]
    pos_a, pos_b = rng.random((80, 2)), rng.random((90, 2))
    ha, hb = sp.pool(codes_a, pos_a), sp.pool(codes_b, pos_b)
    weighted = np.minimum(ha, hb).sum()
    raw_a = SpatialPyramid(levels=(1, 2, 4)).pool(codes_a, pos_a)
    raw_b = SpatialPyramid(levels=(1, 2, 4)).pool(codes_b, pos_b)
    inter = np.minimum(raw_a, raw_b)
    I = [inter[:1].sum(), inter[1:5].sum(), inter[5:].sum()]
    L = 2
    kappa = I[L] + sum((I[l] - I[l + 1]) / 2 ** (L - l) for l in range(L))
    assert_allclose(weighted, kappa)
    w = SpatialPyramid(levels=(1, 2), level_weights=[2.0, 3.0]).cell_weights()
    assert_allclose(w, [2, 3, 3, 3, 3])


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_pool_weights_and_normalize(norm):
    rng = np.random.default_rng(3)
    pos, codes = rng.random((100, 2)), rng.random((100, 4))
    raw = SpatialPyramid(levels=(1, 2)).pool(codes, pos)
    sp = SpatialPyramid(levels=(1, 2), level_weights="lazebnik")
    # the normalization of the pooled vector is the encoder's (its ``normalize``)
    got = normalize_rows(sp.pool(codes, pos).reshape(1, -1), norm).reshape(sp.n_cells, -1)
    ref = raw * sp.cell_weights()[:, None]
    ref /= np.abs(ref).sum() if norm == "l1" else np.linalg.norm(ref)
    assert_allclose(got, ref, rtol=1e-5)


def test_reduce_sorted():
    values = np.array([[1.0], [2.0], [5.0], [-1.0]])
    group = np.array([0, 0, 2, 2])
    assert_array_equal(reduce_sorted(values, group, 4, "sum")[:, 0], [3, 0, 4, 0])
    assert_array_equal(reduce_sorted(values, group, 4, "max")[:, 0], [2, 0, 5, 0])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"levels": (0, 2)}, "must be >= 1"),
        ({"levels": ((2, 0),)}, "positive integer"),
        ({"levels": ("a",)}, "int g"),
        ({"levels": ()}, "at least one"),
        ({"level_weights": "nope"}, "level_weights"),
        ({"level_weights": [1.0]}, "one per level"),
    ],
)
def test_bad_parameters(params, match):
    sp = SpatialPyramid(**params)
    with pytest.raises(ValueError, match=match):
        sp.pool(np.ones((3, 2)), np.full((3, 2), 0.5))


def test_bad_inputs():
    sp = SpatialPyramid()
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        sp.cell_index(np.ones((3, 3)))
    with pytest.raises(ValueError, match="3 codes but 2 positions"):
        sp.pool(np.ones((3, 2)), np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match="pooling must be"):
        SpatialPyramid().pool(np.ones((3, 2)), np.ones((3, 2)) / 2, how="mean")
    with pytest.raises(ValueError, match="normalize' parameter of BagOfWords must be"):
        BagOfWords(normalize="l3").fit([])


def test_clone_params_pickle():
    sp = SpatialPyramid(levels=(1, (3, 1)), level_weights=[1, 2])
    c = clone(sp)
    assert c.get_params() == sp.get_params()
    c.set_params(levels=(1, 2))
    assert c.n_cells == 5 and sp.n_cells == 4
    p = pickle.loads(pickle.dumps(sp))
    rng = np.random.default_rng(0)
    pos, codes = rng.random((20, 2)), rng.random((20, 3))
    assert_array_equal(p.pool(codes, pos, how="max"), sp.pool(codes, pos, how="max"))


def test_pooling_and_normalization_are_the_encoders_options():
    """The pyramid is the layout: sum / max and the normalization are chosen once, by the encoder."""
    with pytest.raises(TypeError, match="pooling"):
        SpatialPyramid(pooling="max")
    with pytest.raises(TypeError, match="normalize"):
        SpatialPyramid(normalize="l2")
    assert set(SpatialPyramid().get_params()) == {"levels", "level_weights"}


@pytest.mark.parametrize("how", ["sum", "max"])
def test_combine_atoms_of_several_images_is_pooling_each_image(how):
    """The chunked path of the encoders (atoms of several images at once) == one image at a time."""
    rng = np.random.default_rng(7)
    sp = SpatialPyramid(levels=(1, 2, (3, 1)), level_weights=[1.0, 0.5, 2.0])
    lens = [40, 0, 25, 60]
    groups = np.repeat(np.arange(len(lens)), lens)
    pos = rng.random((groups.size, 2)).astype(np.float32)
    codes = rng.standard_normal((groups.size, 5)).astype(np.float32)
    order, atom, membership = sp.sorted_atoms(pos, groups)
    assert np.all(np.diff(atom) >= 0) and membership.shape[1] == 1 + sp.n_levels
    stats = reduce_sorted(codes[order], atom, membership.shape[0], how)
    cells = sp.weight_cells(combine_atoms(stats, membership, len(lens), sp.n_cells, how))
    assert cells.shape == (len(lens), sp.n_cells, 5)
    for i in range(len(lens)):
        mine = groups == i
        assert_allclose(cells[i], sp.pool(codes[mine], pos[mine], how=how), rtol=1e-6, atol=1e-6)
