"""Tests of cnn.augment: the eight PaddleClas augmentations on batches (CPU, small tensors)."""

import numpy as np
import pytest
import torch
from torch.nn import functional as nnf

from cnn.augment import (
    AUGMENTATIONS,
    AutoAugment,
    BatchAugment,
    CutMix,
    Cutout,
    GridMask,
    HideAndSeek,
    Mixup,
    RandAugment,
    RandomErasing,
    parse_augment,
)
from cnn.data import DeviceData

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PIXEL_OPS = [AutoAugment(), RandAugment()]
OCCLUSIONS = [Cutout(), RandomErasing(p=1.0), RandomErasing(p=1.0, value=0.0), GridMask(p=1.0),
              GridMask(p=1.0, rotate=45, mode=1), HideAndSeek()]
MIXERS = [Mixup(), CutMix()]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def uint8_batch():
    return torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=_gen(1))


@pytest.fixture(scope="module")
def float_batch():
    return torch.randn((16, 3, 32, 32), generator=_gen(2))


def _soft(labels, k):
    return nnf.one_hot(labels, k).float()


def _check_shape_dtype_seed_change(op, x):
    """Same shape and dtype, the same output for one seed, another for another, and changed."""
    out = op(x, _gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, op(x, _gen(0)))
    assert not torch.equal(out, op(x, _gen(1)))
    assert not torch.equal(out, x)
    return out


@pytest.mark.parametrize("op", PIXEL_OPS, ids=repr)
def test_pixel_ops_keep_shape_dtype_are_seeded_and_change_the_batch(op, uint8_batch):
    _check_shape_dtype_seed_change(op, uint8_batch)
    # float images in [0, 1] work too, and keep their dtype
    f = op(uint8_batch.float() / 255, _gen(0))
    assert f.dtype == torch.float32 and f.shape == uint8_batch.shape


@pytest.mark.parametrize("op", PIXEL_OPS, ids=repr)
def test_pixel_ops_draw_per_image_not_per_batch(op):
    """torchvision's v2 AutoAugment applies one sub-policy to a whole batch; these draw per image."""
    one = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=_gen(3))
    out = op(one.repeat(32, 1, 1, 1), _gen(0))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 4


@pytest.mark.parametrize("op", OCCLUSIONS, ids=repr)
def test_occlusions_keep_shape_dtype_are_seeded_and_change_the_batch(op, float_batch):
    out = _check_shape_dtype_seed_change(op, float_batch)
    changed = (out != float_batch).flatten(1).any(1)
    assert changed.float().mean() > 0.5  # most images touched
    assert torch.equal(out.isfinite(), torch.ones_like(out, dtype=torch.bool))


def test_cutout_zeroes_one_square_per_image_clipped_at_the_border():
    x = torch.ones((64, 1, 32, 32))
    out = Cutout(length=8)(x, _gen(0))
    hidden = out[:, 0] == 0
    for m in hidden:
        rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
        assert len(rows) <= 8 and len(cols) <= 8
        assert m.sum() == len(rows) * len(cols)  # one rectangle
        assert m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    assert (hidden.sum((1, 2)) == 64).any() and (hidden.sum((1, 2)) < 64).any()  # whole and clipped squares


def test_random_erasing_rectangles_follow_the_scale_and_probability():
    x = torch.ones((200, 3, 32, 32))
    out = RandomErasing(p=1.0, value=0.0)(x, _gen(0))
    frac = (out[:, 0] == 0).float().mean((1, 2))
    assert frac.min() >= 0.015 and frac.max() <= 0.42
    assert torch.equal(out[:, 0] == 0, out[:, 2] == 0)  # every channel
    half = RandomErasing(p=0.5, value=0.0)(x, _gen(0))
    share = (half[:, 0] == 0).flatten(1).any(1).float().mean()
    assert 0.35 < share < 0.65


def test_gridmask_hides_a_regular_grid():
    x = torch.ones((8, 1, 64, 64))
    out = GridMask(d_min=0.25, d_max=0.26, ratio=0.5, p=1.0)(x, _gen(0))  # d = 16, l = 8
    hidden = out[:, 0] == 0
    frac = hidden.float().mean((1, 2))
    # stripes of 8 px every 16 px on both axes: about 3/4 hidden (mode 0 keeps the squares)
    assert torch.all((frac > 0.55) & (frac < 0.85))
    kept = GridMask(d_min=0.25, d_max=0.26, ratio=0.5, p=1.0, mode=1)(x, _gen(0))
    assert torch.equal(kept[:, 0] == 0, ~hidden)


def test_hide_and_seek_hides_whole_grid_patches():
    x = torch.ones((32, 1, 16, 16))
    out = HideAndSeek(grid_sizes=(4,), hide_prob=0.5)(x, _gen(0))
    hidden = (out[:, 0] == 0).float()
    blocks = hidden.unfold(1, 4, 4).unfold(2, 4, 4)  # (B, 4, 4, 4, 4)
    means = blocks.mean((-1, -2))
    assert torch.all((means == 0) | (means == 1))
    assert 0.35 < hidden.mean() < 0.65
    assert HideAndSeek().sizes_for(32) == (0, 2, 5, 6, 8)
    assert torch.equal(HideAndSeek(grid_sizes=(0,))(x, _gen(0)), x)


def test_mixup_mixes_images_and_labels_with_one_lambda():
    b = 12
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 4, 4).contiguous()
    y = _soft(torch.arange(b), b)
    xm, ym = Mixup(alpha=1.0)(x, y, _gen(0))
    assert xm.shape == x.shape and xm.dtype == x.dtype and ym.shape == y.shape
    torch.testing.assert_close(ym.sum(1), torch.ones(b))
    # each image is lam * itself + (1 - lam) * its partner, and so is its target
    lam = ym[torch.arange(b), torch.arange(b)]
    partner = torch.where(lam < 1, (ym - torch.diag(lam)).argmax(1), torch.arange(b))
    torch.testing.assert_close(xm[:, 0, 0, 0], lam * x[:, 0, 0, 0] + (1 - lam) * partner.float(), atol=1e-5, rtol=0)
    assert torch.equal(xm, Mixup()(x, y, _gen(0))[0])


def test_cutmix_target_share_is_the_pasted_area():
    b = 10
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 16, 16).contiguous()
    y = _soft(torch.arange(b), b)
    for seed in range(5):
        xm, ym = CutMix()(x, y, _gen(seed))
        torch.testing.assert_close(ym.sum(1), torch.ones(b))
        own = (xm[:, 0] == x[:, 0]).float().mean((1, 2))
        if not torch.equal(ym, y):  # a self-pairing pastes the image onto itself
            mixed = ym.diagonal() < 1
            torch.testing.assert_close(own[mixed], ym.diagonal()[mixed])


@pytest.mark.parametrize("mixer", MIXERS, ids=repr)
def test_mixers_are_seeded_and_check_their_targets(mixer, float_batch):
    y = _soft(torch.randint(0, 10, (16,), generator=_gen(0)), 10)
    a, ya = mixer(float_batch, y, _gen(0))
    b, yb = mixer(float_batch, y, _gen(0))
    assert torch.equal(a, b) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="soft targets"):
        mixer(float_batch, torch.zeros(16, dtype=torch.long), _gen(0))


def test_parse_augment_names_and_errors():
    assert parse_augment(True) == (True, []) and parse_augment(False) == (False, [])
    assert parse_augment(None) == (False, [])
    assert parse_augment("none") == (False, []) and parse_augment("crop") == (True, [])
    crop, ts = parse_augment("cutout+mixup")
    assert crop and [t.name for t in ts] == ["cutout", "mixup"]
    crop, ts = parse_augment("None+Random-Erasing+HideAndSeek")
    assert not crop and [t.name for t in ts] == ["random_erasing", "hide_and_seek"]
    crop, ts = parse_augment(["gridmask", Cutout(length=4)])
    assert crop and ts[1] == Cutout(length=4)
    with pytest.raises(ValueError, match="unknown augmentation 'cutot'.*valid names: crop, none, autoaugment"):
        parse_augment("cutot+mixup")
    with pytest.raises(ValueError, match="twice"):
        parse_augment("mixup+mixup")
    with pytest.raises(ValueError, match="both 'crop' and 'none'"):
        parse_augment("crop+none")
    assert set(AUGMENTATIONS) == {"autoaugment", "randaugment", "cutout", "random_erasing", "gridmask",
                                  "hide_and_seek", "mixup", "cutmix"}


def test_device_data_batches_apply_the_pipeline_reproducibly():
    x = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=_gen(4))
    y = torch.arange(40) % 4
    data = DeviceData(x, y, [0.5] * 3, [0.25] * 3, "cpu")
    _, ts = parse_augment("autoaugment+cutout+mixup+cutmix")
    aug = BatchAugment(ts, num_classes=4)

    def run(seed):
        return list(data.batches(16, shuffle=True, drop_last=True, crop_padding=2, flip=True,
                                 generator=_gen(seed), augment=aug))

    first, again = run(0), run(0)
    assert len(first) == 2
    for (xa, ya), (xb, yb) in zip(first, again):
        assert xa.shape == (16, 3, 16, 16) and xa.dtype == torch.float32
        assert ya.shape == (16, 4) and ya.dtype == torch.float32
        torch.testing.assert_close(ya.sum(1), torch.ones(16))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    plain = list(data.batches(16, shuffle=True, drop_last=True, crop_padding=2, flip=True, generator=_gen(0)))
    assert not torch.equal(plain[0][0], first[0][0])
    assert plain[0][1].dtype == torch.int64


@pytest.mark.parametrize("bad, match", [
    (lambda: RandomErasing(p=2.0), "p must be in"),
    (lambda: GridMask(ratio=1.5), "ratio"),
    (lambda: Cutout(length=0), "length"),
    (lambda: Mixup(alpha=0), "alpha"),
    (lambda: RandAugment(magnitude=40), "magnitude"),
    (lambda: AutoAugment(policy="imagenet"), "cifar10"),
])
def test_bad_parameters_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_wrong_inputs_are_refused(uint8_batch):
    with pytest.raises(ValueError, match="normalized float"):
        Cutout()(uint8_batch, _gen(0))
    with pytest.raises(ValueError, match="1 or 3"):
        AutoAugment()(torch.zeros((2, 2, 8, 8), dtype=torch.uint8), _gen(0))


def test_switch_between_mixup_and_cutmix_uses_both():
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 8, 8).contiguous()
    aug = BatchAugment([Mixup(), CutMix()], num_classes=8)
    g = _gen(0)
    kinds = set()
    for _ in range(20):
        xm, _ = aug.on_normalized(x, torch.arange(8), g)
        frac = np.asarray(xm[:, 0])
        # CutMix copies pixels (values stay integers); Mixup blends them
        kinds.add("cutmix" if np.allclose(frac, np.round(frac)) else "mixup")
    assert kinds == {"mixup", "cutmix"}
