"""The eight data augmentations of PaddleClas, applied per batch on the device.

Every transform works on a whole ``(B, C, H, W)`` batch already on the
training device and draws its randomness **per image** from the
``torch.Generator`` it is given (the classifier's, seeded by
``random_state``), so that a run repeats exactly. Three stages, in this
order within :meth:`BatchAugment.__call__`'s callers
(:meth:`cnn.data.DeviceData.batches`):

``"pixels"``
    :class:`AutoAugment` (the CIFAR-10 policy), :class:`RandAugment`: on the
    ``uint8`` batch (or a float batch in ``[0, 1]``) before normalization,
    through the functional ops of ``torchvision.transforms.v2``.
``"normalized"``
    :class:`Cutout`, :class:`RandomErasing`, :class:`GridMask`,
    :class:`HideAndSeek`: on the normalized float batch, after the random crop
    and flip; a hidden pixel is set to 0, the dataset mean.
``"mix"``
    :class:`Mixup`, :class:`CutMix`: mix pairs of images of the batch and
    return soft targets ``(B, n_classes)`` that sum to one per row.

Why not ``torchvision.transforms.v2.AutoAugment`` / ``RandAugment`` /
``RandomErasing`` themselves: given a batched tensor they draw one
sub-policy (or one erased rectangle) for the whole batch, from torch's global
generator; the papers draw per image. The transforms here draw per image
from the given generator, group the images that drew the same operation
and magnitude, and apply the v2 functional op (``F.affine``, ``F.equalize``,
...) once per group, with torchvision's magnitude tables. GridMask and
HideAndSeek are not in torchvision; Cutout, RandomErasing, Mixup and CutMix
are written here too, vectorized over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as F

__all__ = [
    "AUGMENTATIONS",
    "AutoAugment",
    "BatchAugment",
    "BatchTransform",
    "CutMix",
    "Cutout",
    "GridMask",
    "HideAndSeek",
    "Mixup",
    "RandAugment",
    "RandomErasing",
    "parse_augment",
]


def _rand(shape, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) draws on ``x``'s device (from ``generator``, which must live there)."""
    return torch.rand(shape, device=x.device, generator=generator)


def _host_rng(x: torch.Tensor, generator: torch.Generator | None) -> np.random.Generator:
    """A numpy generator seeded from ``generator`` (for Beta draws, which torch cannot seed)."""
    seed = int(torch.randint(0, 2**62, (1,), device=x.device, generator=generator).item())
    return np.random.default_rng(seed)


class BatchTransform:
    """Base class: one augmentation of a ``(B, C, H, W)`` batch.

    Subclasses set ``name`` (the name :func:`parse_augment` knows) and
    ``stage`` (``"pixels"``, ``"normalized"`` or ``"mix"``). ``__call__(x,
    generator)`` returns a new batch of the same shape and dtype (the mixing
    transforms take and return ``(x, soft_targets)``).
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = ""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    __hash__ = None  # mutable parameters


# --------------------------------------------------------------------- pixel ops
def _posterize_bits(num_bins: int) -> torch.Tensor:
    return (8 - (torch.arange(num_bins) / ((num_bins - 1) / 4))).round().int()


#: torchvision's magnitude tables (``v2.AutoAugment._AUGMENTATION_SPACE``):
#: op -> (magnitudes(num_bins, height, width) or None, signed).
_SPACE = {
    "Identity": (lambda n, h, w: None, False),
    "ShearX": (lambda n, h, w: torch.linspace(0.0, 0.3, n), True),
    "ShearY": (lambda n, h, w: torch.linspace(0.0, 0.3, n), True),
    "TranslateX": (lambda n, h, w: torch.linspace(0.0, 150.0 / 331.0 * w, n), True),
    "TranslateY": (lambda n, h, w: torch.linspace(0.0, 150.0 / 331.0 * h, n), True),
    "Rotate": (lambda n, h, w: torch.linspace(0.0, 30.0, n), True),
    "Brightness": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Color": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Contrast": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Sharpness": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Posterize": (lambda n, h, w: _posterize_bits(n), False),
    "Solarize": (lambda n, h, w: torch.linspace(1.0, 0.0, n), False),
    "AutoContrast": (lambda n, h, w: None, False),
    "Equalize": (lambda n, h, w: None, False),
    "Invert": (lambda n, h, w: None, False),
}

#: The CIFAR-10 policy of Cubuk et al. (2019), Table 7 (as in torchvision):
#: 25 sub-policies of two (operation, probability, magnitude bin) each.
CIFAR10_POLICY: tuple = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)


def _apply_op(x: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """One AutoAugment operation on a batch, as ``torchvision.transforms.v2.AutoAugment`` does it."""
    nearest = F.InterpolationMode.NEAREST
    if op == "Identity":
        return x
    if op in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(magnitude))
        return F.affine(x, angle=0.0, translate=[0, 0], scale=1.0, interpolation=nearest, center=[0, 0],
                        shear=[shear, 0.0] if op == "ShearX" else [0.0, shear])
    if op in ("TranslateX", "TranslateY"):
        t = int(magnitude)
        return F.affine(x, angle=0.0, translate=[t, 0] if op == "TranslateX" else [0, t], scale=1.0,
                        shear=[0.0, 0.0], interpolation=nearest)
    if op == "Rotate":
        return F.rotate(x, angle=magnitude, interpolation=nearest)
    if op == "Brightness":
        return F.adjust_brightness(x, brightness_factor=1.0 + magnitude)
    if op == "Color":
        return F.adjust_saturation(x, saturation_factor=1.0 + magnitude)
    if op == "Contrast":
        return F.adjust_contrast(x, contrast_factor=1.0 + magnitude)
    if op == "Sharpness":
        return F.adjust_sharpness(x, sharpness_factor=1.0 + magnitude)
    if op == "Posterize":
        return F.posterize(x, bits=int(magnitude))
    if op == "Solarize":
        bound = 255.0 if x.dtype == torch.uint8 else 1.0
        return F.solarize(x, threshold=bound * magnitude)
    if op == "AutoContrast":
        return F.autocontrast(x)
    if op == "Equalize":
        return F.equalize(x)
    if op == "Invert":
        return F.invert(x)
    raise ValueError(f"unknown AutoAugment operation {op!r}; valid: {sorted(_SPACE)}")


def _magnitude(op: str, bin_index: int | None, num_bins: int, h: int, w: int) -> float:
    table = _SPACE[op][0](num_bins, h, w)
    return 0.0 if table is None or bin_index is None else float(table[bin_index])


def _check_pixels(x: torch.Tensor, who: str) -> None:
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{who} takes a (B, 1 or 3, H, W) batch, got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(f"{who} takes uint8 or float (in [0, 1]) images, got {x.dtype}")


def _apply_grouped(x: torch.Tensor, keys: list, ops: dict) -> torch.Tensor:
    """``out[i] = ops[keys[i]](x[i])``, one call per distinct key (keys None: unchanged)."""
    groups: dict = {}
    for i, k in enumerate(keys):
        if k is not None:
            groups.setdefault(k, []).append(i)
    if not groups:
        return x
    out = x.clone()
    for k, idx in groups.items():
        index = torch.as_tensor(idx, device=x.device)
        out[index] = ops[k](x[index])
    return out


class AutoAugment(BatchTransform):
    """AutoAugment's CIFAR-10 policy (Cubuk et al., CVPR 2019), one sub-policy per image.

    Each image draws one of the 25 sub-policies uniformly; each of its two
    operations is applied with its probability, at its magnitude bin of
    torchvision's 10-bin table, with a random sign for the signed ones
    (shears, translations, rotation, the enhancements). Geometric operations
    use nearest interpolation and fill with black, as torchvision does.

    Parameters
    ----------
    policy : {"cifar10"}, default="cifar10"

    References
    ----------
    E. D. Cubuk, B. Zoph, D. Mane, V. Vasudevan, Q. V. Le, "AutoAugment:
    Learning Augmentation Strategies from Data", CVPR 2019.
    https://arxiv.org/abs/1805.09501
    """

    name = "autoaugment"
    stage = "pixels"

    def __init__(self, policy: str = "cifar10"):
        if policy != "cifar10":
            raise ValueError(f"AutoAugment policy must be 'cifar10', got {policy!r}")
        self.policy = policy

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``x`` (B, C, H, W) uint8 or float in [0, 1]; same shape and dtype."""
        _check_pixels(x, "AutoAugment")
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        n = len(CIFAR10_POLICY)
        choice = torch.randint(0, n, (b,), device=x.device, generator=generator)
        draws = _rand((b, 2, 2), x, generator)  # [apply?, sign] per operation
        choice, draws = choice.tolist(), draws.tolist()  # one device sync per batch
        for j in range(2):
            keys, ops = [], {}
            for i in range(b):
                op, p, bin_index = CIFAR10_POLICY[choice[i]][j]
                if draws[i][j][0] >= p:
                    keys.append(None)
                    continue
                mag = _magnitude(op, bin_index, 10, h, w)
                if _SPACE[op][1] and draws[i][j][1] < 0.5:
                    mag = -mag
                keys.append((op, mag))
                ops[(op, mag)] = lambda t, op=op, mag=mag: _apply_op(t, op, mag)
            x = _apply_grouped(x, keys, ops)
        return x


class RandAugment(BatchTransform):
    """RandAugment (Cubuk et al., CVPR Workshops 2020): ``num_ops`` random operations per image.

    Each image draws, ``num_ops`` times, one of torchvision's 14 operations
    (identity included) uniformly, at the fixed ``magnitude`` bin of
    ``num_magnitude_bins``, with a random sign for the signed ones.

    Parameters
    ----------
    num_ops : int, default=2
    magnitude : int, default=9
    num_magnitude_bins : int, default=31

    References
    ----------
    E. D. Cubuk, B. Zoph, J. Shlens, Q. V. Le, "RandAugment: Practical
    Automated Data Augmentation with a Reduced Search Space", CVPR Workshops
    2020. https://arxiv.org/abs/1909.13719
    """

    name = "randaugment"
    stage = "pixels"
    _OPS: ClassVar[tuple] = tuple(_SPACE)

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31):
        if int(num_ops) < 0:
            raise ValueError(f"RandAugment num_ops must be >= 0, got {num_ops}")
        if not 0 <= int(magnitude) < int(num_magnitude_bins):
            raise ValueError(f"RandAugment magnitude must be in 0..{int(num_magnitude_bins) - 1}, got {magnitude}")
        self.num_ops = int(num_ops)
        self.magnitude = int(magnitude)
        self.num_magnitude_bins = int(num_magnitude_bins)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``x`` (B, C, H, W) uint8 or float in [0, 1]; same shape and dtype."""
        _check_pixels(x, "RandAugment")
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        for _ in range(self.num_ops):
            choice = torch.randint(0, len(self._OPS), (b,), device=x.device, generator=generator).tolist()
            sign = (_rand((b,), x, generator) < 0.5).tolist()
            keys, ops = [], {}
            for i in range(b):
                op = self._OPS[choice[i]]
                mag = _magnitude(op, self.magnitude, self.num_magnitude_bins, h, w)
                if _SPACE[op][1] and sign[i]:
                    mag = -mag
                keys.append(None if op == "Identity" else (op, mag))
                ops[(op, mag)] = lambda t, op=op, mag=mag: _apply_op(t, op, mag)
            x = _apply_grouped(x, keys, ops)
        return x


# ------------------------------------------------------------- occlusion (float)
def _check_float(x: torch.Tensor, who: str) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"{who} takes a normalized float (B, C, H, W) batch, got {tuple(x.shape)} {x.dtype}")


def _box_mask(h: int, w: int, y0, y1, x0, x1) -> torch.Tensor:
    """(B, 1, H, W) bool: ``y0 <= row < y1`` and ``x0 <= col < x1`` per image (bounds (B,) tensors)."""
    rows = torch.arange(h, device=y0.device)[None, :, None]
    cols = torch.arange(w, device=y0.device)[None, None, :]
    in_rows = (rows >= y0[:, None, None]) & (rows < y1[:, None, None])
    in_cols = (cols >= x0[:, None, None]) & (cols < x1[:, None, None])
    return (in_rows & in_cols)[:, None]


class Cutout(BatchTransform):
    """Cutout (DeVries & Taylor, 2017): zero a ``length`` x ``length`` square per image.

    The square's centre is uniform over the image, so it may be cut by the
    border, as in the paper's code; it is applied to every image, after
    normalization (0 is the dataset mean).

    Parameters
    ----------
    length : int or None, default=None
        Side in pixels; None: half the image side (16 at 32x32, the paper's
        CIFAR-10 value).
    n_holes : int, default=1

    References
    ----------
    T. DeVries, G. W. Taylor, "Improved Regularization of Convolutional
    Neural Networks with Cutout", arXiv:1708.04552, 2017.
    """

    name = "cutout"
    stage = "normalized"

    def __init__(self, length: int | None = None, n_holes: int = 1):
        if length is not None and int(length) < 1:
            raise ValueError(f"Cutout length must be >= 1 pixel, got {length}")
        if int(n_holes) < 1:
            raise ValueError(f"Cutout n_holes must be >= 1, got {n_holes}")
        self.length = None if length is None else int(length)
        self.n_holes = int(n_holes)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``x`` (B, C, H, W float) with the squares set to 0."""
        _check_float(x, "Cutout")
        b, _, h, w = x.shape
        length = self.length if self.length is not None else max(1, min(h, w) // 2)
        hidden = torch.zeros((b, 1, h, w), dtype=torch.bool, device=x.device)
        for _ in range(self.n_holes):
            cy = torch.randint(0, h, (b,), device=x.device, generator=generator)
            cx = torch.randint(0, w, (b,), device=x.device, generator=generator)
            hidden |= _box_mask(h, w, cy - length // 2, cy - length // 2 + length,
                                cx - length // 2, cx - length // 2 + length)
        return x.masked_fill(hidden, 0.0)


class RandomErasing(BatchTransform):
    """Random Erasing (Zhong et al., AAAI 2020): erase a random rectangle with probability ``p``.

    Per image: with probability ``p``, an area ``S_e ~ U(scale) * H * W`` and
    an aspect ratio ``r_e ~ U(ratio)`` (the paper's uniform draws) give a
    rectangle placed uniformly inside the image; of up to ``attempts`` draws,
    the first that fits is erased (none fits: the image is kept).

    Parameters
    ----------
    p : float, default=0.5
    scale : (float, float), default=(0.02, 0.4)
        The paper's ``s_l``, ``s_h``.
    ratio : (float, float), default=(0.3, 1 / 0.3)
        The paper's ``r_1``, ``1 / r_1``.
    value : "random" or float, default="random"
        ``"random"``: standard-normal values per pixel in normalized units
        (the paper's RE-R, random values, its best variant); a number: that
        value (0: the dataset mean, the paper's RE-M).
    attempts : int, default=10

    References
    ----------
    Z. Zhong, L. Zheng, G. Kang, S. Li, Y. Yang, "Random Erasing Data
    Augmentation", AAAI 2020. https://arxiv.org/abs/1708.04896
    """

    name = "random_erasing"
    stage = "normalized"

    def __init__(self, p: float = 0.5, scale: Sequence[float] = (0.02, 0.4),
                 ratio: Sequence[float] = (0.3, 1 / 0.3), value: str | float = "random", attempts: int = 10):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"RandomErasing p must be in [0, 1], got {p}")
        if not 0.0 < scale[0] <= scale[1] <= 1.0 or not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomErasing needs 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], "
                             f"got scale={scale}, ratio={ratio}")
        if value != "random" and not isinstance(value, (int, float)):
            raise ValueError(f"RandomErasing value must be 'random' or a number, got {value!r}")
        self.p = float(p)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.value = value
        self.attempts = max(1, int(attempts))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``x`` (B, C, H, W float) with the rectangles erased."""
        _check_float(x, "RandomErasing")
        b, _, h, w = x.shape
        k = self.attempts
        u = _rand((4, b, k), x, generator)
        area = h * w * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[0])
        r = self.ratio[0] + (self.ratio[1] - self.ratio[0]) * u[1]
        eh = torch.sqrt(area * r).round().long()
        ew = torch.sqrt(area / r).round().long()
        fits = (eh >= 1) & (ew >= 1) & (eh < h) & (ew < w)
        first = torch.where(fits.any(1), fits.float().argmax(1), 0)
        pick = first[:, None]
        eh, ew = eh.gather(1, pick)[:, 0], ew.gather(1, pick)[:, 0]
        y0 = ((h - eh + 1) * u[2].gather(1, pick)[:, 0]).long().clamp_max(h - 1)
        x0 = ((w - ew + 1) * u[3].gather(1, pick)[:, 0]).long().clamp_max(w - 1)
        apply = (_rand((b,), x, generator) < self.p) & fits.any(1)
        mask = _box_mask(h, w, y0, y0 + eh, x0, x0 + ew) & apply[:, None, None, None]
        if self.value == "random":
            fill = torch.randn(x.shape, device=x.device, generator=generator, dtype=x.dtype)
            return torch.where(mask, fill, x)
        return x.masked_fill(mask, float(self.value))


class GridMask(BatchTransform):
    """GridMask (Chen et al., 2020): hide a regular grid of squares per image, with probability ``p``.

    As the authors' code: per image a unit ``d`` is drawn uniformly in
    ``[d_min, d_max)`` (fractions of the image side), stripes of width
    ``l = ceil(d * ratio)`` start at random offsets ``(delta_y, delta_x) <
    d`` every ``d`` pixels along both axes; with ``mode=0`` the stripes are
    zeroed (squares of side ``d - l`` are kept), with ``mode=1`` the mask is
    inverted (squares of side ``l`` are removed). The mask is drawn on a
    square of side ``ceil(sqrt(H^2 + W^2))``, rotated by a random angle in
    ``[0, rotate)`` degrees and cropped to the image centre.

    Parameters
    ----------
    d_min, d_max : float, default=96/224, 1.0
        The unit range as fractions of the image side (PaddleClas's
        ``d1=96, d2=224`` at 224 px).
    ratio : float in (0, 1), default=0.5
    rotate : float, default=0
        Largest rotation in degrees (PaddleClas's ``rotate=1`` is no rotation).
    mode : {0, 1}, default=0
    p : float, default=0.8

    References
    ----------
    P. Chen, S. Liu, H. Zhao, J. Jia, "GridMask Data Augmentation",
    arXiv:2001.04086, 2020.
    """

    name = "gridmask"
    stage = "normalized"

    def __init__(self, d_min: float = 96 / 224, d_max: float = 1.0, ratio: float = 0.5, rotate: float = 0.0,
                 mode: int = 0, p: float = 0.8):
        if not 0.0 < d_min <= d_max:
            raise ValueError(f"GridMask needs 0 < d_min <= d_max, got d_min={d_min}, d_max={d_max}")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"GridMask ratio must be in (0, 1), got {ratio}")
        if mode not in (0, 1):
            raise ValueError(f"GridMask mode must be 0 or 1, got {mode}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"GridMask p must be in [0, 1], got {p}")
        self.d_min, self.d_max, self.ratio = float(d_min), float(d_max), float(ratio)
        self.rotate, self.mode, self.p = float(rotate), int(mode), float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``x`` (B, C, H, W float) times the per-image grid masks."""
        _check_float(x, "GridMask")
        b, _, h, w = x.shape
        hh = math.ceil(math.sqrt(h * h + w * w))
        lo = max(2, round(self.d_min * min(h, w)))
        hi = max(lo + 1, round(self.d_max * min(h, w)))
        d = torch.randint(lo, hi, (b,), device=x.device, generator=generator)
        length = torch.ceil(d * self.ratio).long()
        u = _rand((3, b), x, generator)
        sy, sx = (u[0] * d).long(), (u[1] * d).long()
        pos = torch.arange(hh, device=x.device)[None, :]

        def stripes(start):  # (B, hh): inside one of the hh // d stripes from ``start``
            off = pos - start[:, None]
            return (off >= 0) & (off % d[:, None] < length[:, None]) & (off // d[:, None] < (hh // d)[:, None])

        hidden = stripes(sy)[:, :, None] | stripes(sx)[:, None, :]  # (B, hh, hh)
        keep = (~hidden if self.mode == 0 else hidden).float()[:, None]
        if self.rotate > 0:
            angle = torch.deg2rad(u[2] * self.rotate)
            cos, sin = torch.cos(angle), torch.sin(angle)
            zero = torch.zeros_like(cos)
            theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
            grid = nnf.affine_grid(theta, list(keep.shape), align_corners=False)
            # the canvas is the image's diagonal: the centre crop never sees the corners rotated in
            keep = nnf.grid_sample(keep, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        top, left = (hh - h) // 2, (hh - w) // 2
        keep = keep[:, :, top : top + h, left : left + w]
        apply = (_rand((b,), x, generator) < self.p)[:, None, None, None]
        return torch.where(apply, x * keep.to(x.dtype), x)


class HideAndSeek(BatchTransform):
    """Hide-and-Seek (Singh & Lee, ICCV 2017): hide each grid patch with probability ``hide_prob``.

    Per image a patch size is drawn from ``grid_sizes`` (0: the image is kept
    whole); the image is divided into patches of that size, and each patch is
    hidden independently, set to 0 (the dataset mean, as in the paper).

    Parameters
    ----------
    grid_sizes : sequence of int or None, default=None
        Patch sides in pixels; None: PaddleClas's ``0, 16, 32, 44, 56`` at
        224 px, scaled to the image side (``0, 2, 5, 6, 8`` at 32 px).
    hide_prob : float, default=0.5

    References
    ----------
    K. K. Singh, Y. J. Lee, "Hide-and-Seek: Forcing a Network to be
    Meticulous for Weakly-supervised Object and Action Localization", ICCV
    2017. https://arxiv.org/abs/1704.04232
    """

    name = "hide_and_seek"
    stage = "normalized"
    _PADDLE_SIZES: ClassVar[tuple] = (0, 16, 32, 44, 56)

    def __init__(self, grid_sizes: Sequence[int] | None = None, hide_prob: float = 0.5):
        if grid_sizes is not None and (not len(grid_sizes) or any(int(g) < 0 for g in grid_sizes)):
            raise ValueError(f"HideAndSeek grid_sizes must be non-negative pixel sizes, got {grid_sizes}")
        if not 0.0 <= hide_prob <= 1.0:
            raise ValueError(f"HideAndSeek hide_prob must be in [0, 1], got {hide_prob}")
        self.grid_sizes = None if grid_sizes is None else tuple(int(g) for g in grid_sizes)
        self.hide_prob = float(hide_prob)

    def sizes_for(self, side: int) -> tuple[int, ...]:
        """The patch sizes used on images of ``side`` pixels."""
        if self.grid_sizes is not None:
            return self.grid_sizes
        return tuple(0 if g == 0 else max(1, round(g * side / 224)) for g in self._PADDLE_SIZES)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``x`` (B, C, H, W float) with the hidden patches set to 0."""
        _check_float(x, "HideAndSeek")
        b, _, h, w = x.shape
        sizes = self.sizes_for(min(h, w))
        pick = torch.randint(0, len(sizes), (b,), device=x.device, generator=generator)
        hidden = torch.zeros((b, 1, h, w), dtype=torch.bool, device=x.device)
        for j, g in enumerate(sizes):
            draw = _rand((b, -(-h // g) if g else 1, -(-w // g) if g else 1), x, generator) < self.hide_prob
            if g == 0:
                continue
            patch = draw.repeat_interleave(g, 1).repeat_interleave(g, 2)[:, :h, :w]
            hidden |= (patch & (pick == j)[:, None, None])[:, None]
        return x.masked_fill(hidden, 0.0)


# ------------------------------------------------------------------- mixing
def _check_targets(x: torch.Tensor, y: torch.Tensor, who: str) -> None:
    if y.ndim != 2 or y.shape[0] != x.shape[0] or not y.is_floating_point():
        raise ValueError(f"{who} takes soft targets of shape (B, n_classes), got {tuple(y.shape)} {y.dtype}")


class _Mixer(BatchTransform):
    """A mixing transform drawing ``lam ~ Beta(alpha, alpha)`` once per batch."""

    stage = "mix"

    def __init__(self, alpha: float = 1.0):
        if not float(alpha) > 0:
            raise ValueError(f"{type(self).__name__} alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def _draw(self, x: torch.Tensor, y: torch.Tensor, generator) -> tuple[np.random.Generator, float]:
        """Check the batch, return a host generator (seeded from ``generator``) and ``lam``."""
        _check_float(x, type(self).__name__)
        _check_targets(x, y, type(self).__name__)
        rng = _host_rng(x, generator)
        return rng, float(rng.beta(self.alpha, self.alpha))


class Mixup(_Mixer):
    """mixup (Zhang et al., ICLR 2018): convex combinations of pairs of images and of their targets.

    One ``lam ~ Beta(alpha, alpha)`` per batch and a random pairing
    (a permutation of the batch), as in the paper's code:
    ``x = lam * x + (1 - lam) * x[perm]``, ``y = lam * y + (1 - lam) * y[perm]``.

    Parameters
    ----------
    alpha : float > 0, default=1.0
        The paper's CIFAR-10 value (PaddleClas uses 0.2 on ImageNet).

    References
    ----------
    H. Zhang, M. Cisse, Y. N. Dauphin, D. Lopez-Paz, "mixup: Beyond Empirical
    Risk Minimization", ICLR 2018. https://arxiv.org/abs/1710.09412
    """

    name = "mixup"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None):
        """Mix ``x`` (B, C, H, W float) and ``y`` (B, K soft targets); returns ``(x, y)``."""
        _, lam = self._draw(x, y, generator)
        perm = torch.randperm(x.shape[0], device=x.device, generator=generator)
        return x * lam + x[perm] * (1.0 - lam), y * lam + y[perm] * (1.0 - lam)


class CutMix(_Mixer):
    """CutMix (Yun et al., ICCV 2019): paste a box of a paired image, mix targets by area.

    One ``lam ~ Beta(alpha, alpha)`` per batch; a box of sides
    ``H * sqrt(1 - lam)``, ``W * sqrt(1 - lam)`` centred uniformly (clipped at
    the border) is copied from ``x[perm]``; the targets are mixed by the
    box's actual area, ``lam = 1 - box_area / (H * W)``, as in the paper's code.

    Parameters
    ----------
    alpha : float > 0, default=1.0
        The paper's value on CIFAR and ImageNet.

    References
    ----------
    S. Yun, D. Han, S. J. Oh, S. Chun, J. Choe, Y. Yoo, "CutMix:
    Regularization Strategy to Train Strong Classifiers with Localizable
    Features", ICCV 2019. https://arxiv.org/abs/1905.04899
    """

    name = "cutmix"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None):
        """Mix ``x`` (B, C, H, W float) and ``y`` (B, K soft targets); returns ``(x, y)``."""
        b, _, h, w = x.shape
        rng, lam = self._draw(x, y, generator)
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        perm = torch.randperm(b, device=x.device, generator=generator)
        out = x.clone()
        out[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        return out, y * lam + y[perm] * (1.0 - lam)


# ----------------------------------------------------------------- pipeline
#: Name -> class of every augmentation :func:`parse_augment` knows.
AUGMENTATIONS: dict[str, type[BatchTransform]] = {
    cls.name: cls
    for cls in (AutoAugment, RandAugment, Cutout, RandomErasing, GridMask, HideAndSeek, Mixup, CutMix)
}
#: The words that set the random crop and flip: ``crop`` (on, the default) or ``none`` (off).
BASE_WORDS = ("crop", "none")


def _key(word: str) -> str:
    return word.strip().lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(n): n for n in AUGMENTATIONS}


def parse_augment(augment) -> tuple[bool, list[BatchTransform]]:
    """Read ``CNNClassifier``'s ``augment``: (random crop and flip on?, the extra transforms).

    Parameters
    ----------
    augment : bool, None, str or sequence
        ``True``: crop and flip only; ``False`` or ``None``: nothing. A string
        of ``+``-joined names (case, ``-`` and ``_`` ignored), e.g.
        ``"cutout+mixup"``: those transforms on top of the crop and flip;
        ``"none+cutout"``: without the crop and flip (``"none"`` alone is
        ``False``, ``"crop"`` alone is ``True``). A sequence may mix names and
        :class:`BatchTransform` instances (for non-default parameters).

    Returns
    -------
    crop_flip : bool
    transforms : list of BatchTransform
        In the order given (each applied at its stage).

    Raises
    ------
    ValueError
        An unknown name (the message lists the valid ones), a name given
        twice, or both ``crop`` and ``none``.
    """
    if augment is None or isinstance(augment, (bool, np.bool_)):
        return bool(augment), []
    items = augment.split("+") if isinstance(augment, str) else list(augment)
    base, out, seen = None, [], set()
    for item in items:
        if isinstance(item, BatchTransform):
            t = item
        elif isinstance(item, str) and _key(item) in BASE_WORDS:
            if base is not None and base != _key(item):
                raise ValueError(f"augment={augment!r} asks for both 'crop' and 'none'")
            base = _key(item)
            continue
        elif isinstance(item, str) and _key(item) in _BY_KEY:
            t = AUGMENTATIONS[_BY_KEY[_key(item)]]()
        else:
            raise ValueError(
                f"unknown augmentation {item!r} in augment={augment!r}; valid names: "
                f"{', '.join([*BASE_WORDS, *AUGMENTATIONS])} (joined with '+', e.g. 'cutout+mixup'), "
                "or True / False"
            )
        if t.name in seen:
            raise ValueError(f"augmentation {t.name!r} is given twice in augment={augment!r}")
        seen.add(t.name)
        out.append(t)
    return base != "none", out


class BatchAugment:
    """The extra transforms of one fit, by stage, with the number of classes for soft targets.

    Parameters
    ----------
    transforms : sequence of BatchTransform
    num_classes : int
    switch_prob : float, default=0.5
        With both Mixup and CutMix, the probability of CutMix for a batch
        (one of the two per batch, as timm's ``Mixup(switch_prob=0.5)``).
    """

    def __init__(self, transforms: Sequence[BatchTransform], num_classes: int, switch_prob: float = 0.5):
        self.pixels = [t for t in transforms if t.stage == "pixels"]
        self.normalized = [t for t in transforms if t.stage == "normalized"]
        self.mixers = [t for t in transforms if t.stage == "mix"]
        self.num_classes = int(num_classes)
        self.switch_prob = float(switch_prob)

    @property
    def soft_targets(self) -> bool:
        """Whether batches carry ``(B, n_classes)`` soft targets."""
        return bool(self.mixers)

    def on_pixels(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The pixel-stage transforms on a uint8 (or [0, 1] float) batch."""
        for t in self.pixels:
            x = t(x, generator)
        return x

    def on_normalized(self, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator | None = None):
        """The occlusion transforms, then one mixing transform; returns ``(x, y)``.

        With mixing, integer labels ``y`` become one-hot float targets first.
        """
        for t in self.normalized:
            x = t(x, generator)
        if self.mixers and y is not None:
            soft = nnf.one_hot(y, self.num_classes).to(x.dtype) if y.ndim == 1 else y
            mixer = self.mixers[0]
            if len(self.mixers) > 1:  # Mixup and CutMix: CutMix with probability switch_prob
                cutmix = _rand((), x, generator).item() < self.switch_prob
                mixer = next(m for m in self.mixers if isinstance(m, CutMix) == cutmix)
            x, y = mixer(x, soft, generator)
        return x, y
