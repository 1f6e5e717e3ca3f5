"""Deterministic image disturbances at five severities, for robustness evaluation.

Each disturbance maps a ``uint8`` image of shape ``(H, W)``, ``(H, W, 1)`` or
``(H, W, 3)`` to a disturbed ``uint8`` image of the same shape, at a severity from 1
(mild) to 5 (strong), drawing whatever is random from ``random_state``: the same
seed gives the same image. They follow the CIFAR-10-C and CIFAR-10-P protocols
(Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019, https://arxiv.org/abs/1903.12261) where
those have the disturbance:

==============  ============  ====================================================
name            group         severities 1..5
==============  ============  ====================================================
brightness      illumination  value (HSV ``V``) + 0.05, 0.1, 0.15, 0.2, 0.3 (C)
contrast        illumination  ``(x - mean) * c + mean``, c = .75, .5, .4, .3, .15 (C)
gamma           illumination  ``x ** g``, g = 1.3, 1.6, 2.0, 2.5, 3.0 (not in C/P)
occlusion       occlusion     one mid-grey box of 10, 20, 30, 40, 50% of the area
rotation        viewpoint     +-3, 6, 9, 12, 15 degrees (P: up to +-15)
perspective     viewpoint     tilt +-2.25 ... +-11.25 degrees about both axes (P)
scale           viewpoint     zoom 1 +- 0.06, 0.12, 0.18, 0.24, 0.30 (P: 0.7-1.3)
gaussian_blur   blur          sigma .4, .6, .7, .8, 1 CIFAR pixels (C)
gaussian_noise  noise         sigma .04, .06, .08, .09, .10 of the range (C)
jpeg            compression   JPEG quality 80, 65, 58, 50, 40 (C, with PIL)
==============  ============  ====================================================

(C) is CIFAR-10-C's ``make_cifar_c.py`` and (P) CIFAR-10-P's ``make_cifar_p.py``,
whose perturbation sequences span the range given; five equal steps up to its end
make the severities here. Lengths in CIFAR pixels (the blur's sigma) are scaled by
``min(H, W) / 32``, so a disturbance takes the same share of every image; below
32 px that makes the blur weaker than a pixel (on 8 x 8 digits, sigma 0.1-0.25 px:
the blur changes no pixel there, see :func:`disturbance_params`). The occlusion box
follows random erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020):
an area fraction and an aspect ratio (log-uniform in [1/2, 2]), placed uniformly
inside the image, filled with grey 128.

Every random draw of one image (noise, box position, signs of the angles) comes from
one generator whose draws do not depend on the severity: with a seed, severity 5 is
severity 1 made stronger (the same box, grown; the same noise, scaled), so accuracy
against severity is a curve, not five independent samples.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import cv2
import numpy as np
from PIL import Image

__all__ = ["DISTURBANCES", "GROUPS", "SEVERITIES", "disturb", "disturb_batch", "disturbance_params"]

#: The valid severities.
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: Disturbance name -> one-line description (the names :func:`disturb` takes).
DISTURBANCES: dict[str, str] = {
    "brightness": "brighter: HSV value + 0.05 ... 0.3 (CIFAR-10-C brightness)",
    "contrast": "lower contrast: (x - mean) * 0.75 ... 0.15 + mean (CIFAR-10-C contrast)",
    "gamma": "darker mid-tones: x ** 1.3 ... 3.0 (gamma, in [0, 1])",
    "occlusion": "a mid-grey box covering 10% ... 50% of the image (random erasing)",
    "rotation": "rotation by +-3 ... 15 degrees, black corners (CIFAR-10-P rotate)",
    "perspective": "3-D tilt by +-2.25 ... 11.25 degrees about both axes (CIFAR-10-P tilt)",
    "scale": "zoom by 1 +- 0.06 ... 0.30 about the centre (CIFAR-10-P scale)",
    "gaussian_blur": "gaussian blur, sigma 0.4 ... 1 CIFAR pixels, scaled to the image (CIFAR-10-C)",
    "gaussian_noise": "additive gaussian noise, sigma 0.04 ... 0.10 of the range (CIFAR-10-C)",
    "jpeg": "JPEG compression at quality 80 ... 40 (CIFAR-10-C jpeg_compression)",
}

#: Disturbance name -> the group of the issue's list it belongs to.
GROUPS: dict[str, str] = {
    "brightness": "illumination", "contrast": "illumination", "gamma": "illumination",
    "occlusion": "occlusion",
    "rotation": "viewpoint", "perspective": "viewpoint", "scale": "viewpoint",
    "gaussian_blur": "blur", "gaussian_noise": "noise", "jpeg": "compression",
}

_BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
_GAMMA = (1.3, 1.6, 2.0, 2.5, 3.0)
_OCCLUSION = (0.1, 0.2, 0.3, 0.4, 0.5)
_ROTATION = (3.0, 6.0, 9.0, 12.0, 15.0)
_TILT = (2.25, 4.5, 6.75, 9.0, 11.25)
_SCALE = (0.06, 0.12, 0.18, 0.24, 0.30)
_BLUR = (0.4, 0.6, 0.7, 0.8, 1.0)
_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)
_JPEG = (80, 65, 58, 50, 40)
#: Side of a CIFAR image: lengths of the protocol are in these pixels.
CIFAR_SIDE = 32
_GREY = 128


# ----------------------------------------------------------------------------- checks
def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind not in DISTURBANCES:
        raise ValueError(f"unknown disturbance {kind!r}; valid: {', '.join(DISTURBANCES)}")
    return kind


def _check_severity(severity: Any) -> int:
    if isinstance(severity, bool) or not isinstance(severity, Integral) or int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(map(str, SEVERITIES))}, got {severity!r}")
    return int(severity)


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)) or 0 in arr.shape[:2]:
        raise ValueError(f"{name} must have shape (H, W), (H, W, 1) or (H, W, 3) with H, W >= 1, "
                         f"got {arr.shape}")
    return arr


def _rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


# ----------------------------------------------------------------------------- parameters
def disturbance_params(kind: str, severity: int, shape: Sequence[int] = (CIFAR_SIDE, CIFAR_SIDE)) -> dict:
    """The parameters of one disturbance at one severity, for an image of ``shape``.

    Parameters
    ----------
    kind : str
        A key of :data:`DISTURBANCES`.
    severity : int
        1 to 5.
    shape : sequence of int
        ``(H, W[, C])`` of the image (lengths in CIFAR pixels are scaled by
        ``min(H, W) / 32``).

    Returns
    -------
    params : dict
        E.g. ``{"sigma_px": 1.2}`` for ``gaussian_blur``; angles in degrees, fractions
        of the image's area or of the value range ``[0, 1]``.

    Examples
    --------
    >>> disturbance_params("gaussian_blur", 5, (96, 96))
    {'sigma_px': 3.0}
    >>> disturbance_params("jpeg", 1)
    {'quality': 80}
    """
    kind, i = _check_kind(kind), _check_severity(severity) - 1
    side = min(int(shape[0]), int(shape[1]))
    table = {
        "brightness": {"value_shift": _BRIGHTNESS[i]},
        "contrast": {"factor": _CONTRAST[i]},
        "gamma": {"gamma": _GAMMA[i]},
        "occlusion": {"area": _OCCLUSION[i], "value": _GREY},
        "rotation": {"degrees": _ROTATION[i]},
        "perspective": {"tilt_degrees": _TILT[i]},
        "scale": {"zoom_change": _SCALE[i]},
        "gaussian_blur": {"sigma_px": round(_BLUR[i] * side / CIFAR_SIDE, 6)},
        "gaussian_noise": {"sigma": _NOISE[i]},
        "jpeg": {"quality": _JPEG[i]},
    }
    return table[kind]


# ----------------------------------------------------------------------------- the disturbances
def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] to uint8, rounded (not truncated: no drift of -0.5 on average)."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _brightness(x: np.ndarray, c: float) -> np.ndarray:
    f = x.astype(np.float32) / 255.0
    if f.ndim == 2 or f.shape[2] == 1:  # gray: the value is the intensity
        return _to_uint8(f + c)
    hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def _contrast(x: np.ndarray, c: float) -> np.ndarray:
    f = x.astype(np.float32) / 255.0
    mean = f.mean(axis=(0, 1), keepdims=True)  # per channel, as CIFAR-10-C
    return _to_uint8((f - mean) * c + mean)


def _gamma(x: np.ndarray, g: float) -> np.ndarray:
    lut = _to_uint8((np.arange(256, dtype=np.float64) / 255.0) ** g)
    return lut[x]


def _occlusion(x: np.ndarray, area: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    u_ratio, u_top, u_left = rng.random(3)
    ratio = float(np.exp((2.0 * u_ratio - 1.0) * np.log(2.0)))  # aspect h/w, log-uniform in [1/2, 2]
    target = area * h * w
    bh = int(np.clip(round(np.sqrt(target * ratio)), 1, h))
    bw = int(np.clip(round(target / bh), 1, w))
    if bw == w and bh < h:  # a box clipped in width grows in height to keep its area
        bh = int(np.clip(round(target / bw), 1, h))
    top = int(u_top * (h - bh + 1))
    left = int(u_left * (w - bw + 1))
    out = x.copy()
    out[top:top + bh, left:left + bw] = _GREY
    return out


def _warp(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    if matrix.shape == (2, 3):
        out = cv2.warpAffine(x, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0)
    else:
        out = cv2.warpPerspective(x, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0)
    return out.reshape(x.shape)


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _rotation(x: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), _sign(rng) * degrees, 1.0)
    return _warp(x, m)


def _scale(x: np.ndarray, change: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), 0.0, 1.0 + _sign(rng) * change)
    return _warp(x, m)


def _perspective(x: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """The image plane turned by ``degrees`` about its vertical and horizontal axes
    (signs drawn) and seen by a pinhole camera of focal length the image's diagonal,
    as CIFAR-10-P's tilt; the homography maps the corners."""
    h, w = x.shape[:2]
    phi = np.deg2rad(_sign(rng) * degrees)  # about the vertical axis
    theta = np.deg2rad(_sign(rng) * degrees)  # about the horizontal axis
    f = float(np.hypot(w, h))
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    pts = np.column_stack([corners[:, 0] - w / 2.0, corners[:, 1] - h / 2.0, np.zeros(4)])
    ry = np.array([[np.cos(phi), 0, -np.sin(phi)], [0, 1, 0], [np.sin(phi), 0, np.cos(phi)]])
    rx = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
    p = pts @ (rx @ ry).T
    z = p[:, 2] + f
    proj = np.column_stack([f * p[:, 0] / z + w / 2.0, f * p[:, 1] / z + h / 2.0])
    m = cv2.getPerspectiveTransform(corners.astype(np.float32), proj.astype(np.float32))
    return _warp(x, m)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return x.copy()
    f = x.astype(np.float32) / 255.0
    # a kernel of +-4 sigma (skimage's truncation, as CIFAR-10-C's filter), reflected borders
    radius = max(1, int(np.ceil(4.0 * sigma)))
    out = cv2.GaussianBlur(f, (2 * radius + 1, 2 * radius + 1), sigmaX=sigma, sigmaY=sigma,
                           borderType=cv2.BORDER_REFLECT)
    return _to_uint8(out).reshape(x.shape)


def _noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    f = x.astype(np.float32) / 255.0
    return _to_uint8(f + sigma * rng.standard_normal(x.shape, dtype=np.float32))


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    img = Image.fromarray(x[..., 0] if x.ndim == 3 and x.shape[2] == 1 else x)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as dec:
        return np.asarray(dec.convert(img.mode), dtype=np.uint8).reshape(x.shape)


# ----------------------------------------------------------------------------- public
def disturb(image: np.ndarray, kind: str, severity: int, *, random_state: Any = None) -> np.ndarray:
    """One image, disturbed by ``kind`` at ``severity``.

    Parameters
    ----------
    image : (H, W), (H, W, 1) or (H, W, 3) ndarray of uint8
    kind : str
        A key of :data:`DISTURBANCES`: ``brightness``, ``contrast``, ``gamma``,
        ``occlusion``, ``rotation``, ``perspective``, ``scale``, ``gaussian_blur``,
        ``gaussian_noise``, ``jpeg``.
    severity : int
        1 (mild) to 5 (strong); the parameters are in :func:`disturbance_params`.
    random_state : int, numpy Generator, RandomState or None
        Source of the random draws (the box of ``occlusion``, the signs of the
        viewpoint angles, the noise); the same seed gives the same image. The
        deterministic disturbances ignore it.

    Returns
    -------
    disturbed : ndarray of uint8, same shape as ``image``

    Raises
    ------
    ValueError
        An unknown ``kind`` or ``severity`` (the message lists the valid ones), or an
        image of another shape.
    TypeError
        An image that is not ``uint8``.

    References
    ----------
    D. Hendrycks and T. Dietterich, "Benchmarking Neural Network Robustness to Common
    Corruptions and Perturbations", ICLR 2019.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((32, 32), 100, dtype=np.uint8)
    >>> disturb(img, "brightness", 1)[0, 0]  # 100/255 + 0.05, back to 0-255
    np.uint8(113)
    >>> out = disturb(img, "occlusion", 5, random_state=0)
    >>> out.shape, float((out == 128).mean())  # half of the image, to a pixel row
    ((32, 32), 0.48828125)
    """
    kind, sev = _check_kind(kind), _check_severity(severity)
    x = _check_image(image)
    i = sev - 1
    if kind == "brightness":
        return _brightness(x, _BRIGHTNESS[i]).reshape(x.shape)
    if kind == "contrast":
        return _contrast(x, _CONTRAST[i])
    if kind == "gamma":
        return _gamma(x, _GAMMA[i])
    if kind == "gaussian_blur":
        return _blur(x, disturbance_params(kind, sev, x.shape)["sigma_px"])
    if kind == "jpeg":
        return _jpeg(x, _JPEG[i])
    rng = _rng(random_state)
    if kind == "occlusion":
        return _occlusion(x, _OCCLUSION[i], rng)
    if kind == "rotation":
        return _rotation(x, _ROTATION[i], rng)
    if kind == "perspective":
        return _perspective(x, _TILT[i], rng)
    if kind == "scale":
        return _scale(x, _SCALE[i], rng)
    return _noise(x, _NOISE[i], rng)  # gaussian_noise


def disturb_batch(images: Any, kind: str, severity: int, *, random_state: Any = None) -> Any:
    """Every image of a batch, disturbed by ``kind`` at ``severity``.

    Parameters
    ----------
    images : (N, H, W[, C]) ndarray of uint8, or sequence of (H, W[, C]) uint8 arrays
    kind, severity
        As for :func:`disturb`.
    random_state : int, numpy Generator, SeedSequence or None
        With an int (or a SeedSequence), image ``i`` gets the ``i``-th child of
        ``SeedSequence(random_state)``: its disturbance depends on the seed and its
        position only, whatever the kind, the severity and the other images.

    Returns
    -------
    disturbed : ndarray or list
        An ``(N, H, W[, C])`` uint8 array for an array, else a list of arrays, each
        of its image's shape.

    Raises
    ------
    ValueError, TypeError
        As :func:`disturb`; an image's error names its index.

    Examples
    --------
    >>> import numpy as np
    >>> batch = np.random.default_rng(0).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    >>> a = disturb_batch(batch, "gaussian_noise", 3, random_state=7)
    >>> b = disturb_batch(batch, "gaussian_noise", 3, random_state=7)
    >>> a.shape, a.dtype, bool((a == b).all()), bool((a != batch).any())
    ((4, 16, 16), dtype('uint8'), True, True)
    """
    kind, severity = _check_kind(kind), _check_severity(severity)
    n = len(images)
    if isinstance(random_state, np.random.Generator):
        seeds: list[Any] = list(random_state.spawn(n))
    else:
        root = random_state if isinstance(random_state, np.random.SeedSequence) else np.random.SeedSequence(
            random_state)
        seeds = [np.random.default_rng(s) for s in root.spawn(n)]
    out = []
    for i in range(n):
        try:
            out.append(disturb(images[i], kind, severity, random_state=seeds[i]))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"image {i}: {exc}") from None
    if isinstance(images, np.ndarray):
        return np.stack(out) if out else images.copy()
    return out
