"""Dense SIFT (VLFeat ``vl_dsift`` / ``vl_phow`` style), vectorized over the image.

Instead of building one descriptor at a time around each keypoint, the whole image
is processed at once, as VLFeat's dense SIFT does:

1. smooth the image with a Gaussian of ``sigma = sqrt((bin_size / magnification)**2 - 0.25)``;
2. compute the gradient and split its magnitude between the two nearest of 8
   orientation planes (linear interpolation in angle);
3. convolve every orientation plane with a triangular kernel of half-width one bin
   (bilinear spatial interpolation) -- separable, one OpenCV call per axis for all
   8 planes, the second one only on the rows that are sampled;
4. read the 4 x 4 spatial bins of every grid position off the filtered planes
   (pure indexing), weight them with the Gaussian window and normalize.
"""

from __future__ import annotations

import threading
from functools import lru_cache, partial
from numbers import Integral, Real

import cv2
import numpy as np

from ..base import DescriptorSet, check_image, to_gray
from ..utils.validation import Interval
from ._common import BaseExtractor, empty_set, normalized_positions, resize_max_side

__all__ = ["DenseSIFT", "dense_sift", "sift_grid"]

N_BINS = 4  # spatial bins per side
N_ORI = 8  # orientation bins
DIM = N_BINS * N_BINS * N_ORI  # 128
WINDOW = 2.0  # Gaussian window sigma, in bins (VLFeat's default windowSize)
_EPS = 1.1920929e-07  # float32 machine epsilon, as VLFeat's normalization


def _check_sizes(sizes) -> tuple:
    if isinstance(sizes, (Integral, np.integer)):
        sizes = (int(sizes),)
    try:
        sizes = tuple(int(s) for s in sizes)
    except (TypeError, ValueError):
        raise ValueError(f"sizes must be an int or a sequence of ints, got {sizes!r}") from None
    if not sizes:
        raise ValueError("sizes must not be empty")
    for s in sizes:
        if s < 4 or s % 4:
            raise ValueError(
                f"every SIFT size must be a positive multiple of 4 (4 spatial bins of a "
                f"whole number of pixels), got {s} in sizes={sizes!r}"
            )
    return sizes


def sift_grid(shape, size: int, step: int, max_size: int | None = None):
    """Top-left bin centres of the dense SIFT frames of one size.

    Frames are laid out as in VLFeat's PHOW: for every size the descriptor centres
    fall on the same grid (that of the largest size ``max_size``), starting where
    the largest descriptor's first bin centre is at pixel 0.

    Parameters
    ----------
    shape : (int, int)
        ``(height, width)`` of the image.
    size : int
        Descriptor size (4 bins of ``size // 4`` pixels).
    step : int
        Grid step in pixels.
    max_size : int, optional
        Largest size used together with ``size`` (defaults to ``size``).

    Returns
    -------
    fy, fx : 1-D ndarray of int
        Rows / columns of the first (top-left) bin centre of each frame; the frame's
        centre is at ``f + 1.5 * size / 4`` and its bins at ``f + k * size / 4``.
    """
    b = size // 4
    bmax = (max_size or size) // 4
    off = int(np.floor(1.5 * (bmax - b)))
    h, w = shape[:2]
    span = (N_BINS - 1) * b
    fy = np.arange(off, h - span, step)
    fx = np.arange(off, w - span, step)
    return fy, fx


def _bin_window_mean(b: int) -> np.ndarray:
    """Mean Gaussian-window weight over each bin's support (VLFeat's flat window)."""
    t = np.arange(-b + 1, b, dtype=np.float64)
    out = np.empty(N_BINS)
    for j in range(N_BINS):
        delta = b * (j - 0.5 * (N_BINS - 1))
        z = (t + delta) / (b * WINDOW)
        out[j] = np.exp(-0.5 * z * z).mean()
    return out


@lru_cache(maxsize=32)
def _flat_window(b: int) -> np.ndarray:
    """(4, 4, 1) float32 Gaussian-window weight of each spatial bin (flat window)."""
    win = _bin_window_mean(b)
    return (win[:, None] * win[None, :]).astype(np.float32)[:, :, None]


def _triangle(b: int) -> np.ndarray:
    t = np.arange(-b + 1, b, dtype=np.float64)
    return 1.0 - np.abs(t) / b


def _bin_kernels(b: int) -> np.ndarray:
    """(4, 2b-1) triangle x Gaussian-window kernels, one per spatial bin."""
    t = np.arange(-b + 1, b, dtype=np.float64)
    tri = 1.0 - np.abs(t) / b
    ker = np.empty((N_BINS, t.size))
    for j in range(N_BINS):
        delta = b * (j - 0.5 * (N_BINS - 1))
        z = (t + delta) / (b * WINDOW)
        ker[j] = tri * np.exp(-0.5 * z * z)
    return ker.astype(np.float32)


_LOCAL = threading.local()
_ONE = np.ones(1, np.float32)
_MAX_CACHED_PIXELS = 4_000_000


def _workspace(h: int, w: int) -> dict:
    """Per-thread scratch buffers for one image shape.

    Reusing the large temporaries (8 orientation planes and their filtered copy)
    between images of the same shape avoids fresh allocations, whose page faults
    cost more than the arithmetic on them.
    """
    ws = getattr(_LOCAL, "ws", None)
    if ws is not None and ws["shape"] == (h, w):
        return ws
    ws = {
        "shape": (h, w),
        "planes": np.empty((h, w, N_ORI), np.float32),
        "filtered": np.empty((h, w, N_ORI), np.float32),
        "base": np.arange(0, h * w * N_ORI, N_ORI, dtype=np.intp).reshape(h, w),
        "i0": np.empty((h, w), np.intp),
        "i1": np.empty((h, w), np.intp),
        "gx": np.empty((h, w), np.float32),
        "gy": np.empty((h, w), np.float32),
        "mag": np.empty((h, w), np.float32),
        "ang": np.empty((h, w), np.float32),
    }
    if h * w <= _MAX_CACHED_PIXELS:
        _LOCAL.ws = ws
    return ws


def _orientation_votes(img: np.ndarray, ws: dict, tops=None, image_height=0):
    """Each pixel's gradient magnitude split between its two nearest orientations.

    Gradient by half central differences (one-sided differences on the border, as
    VLFeat); the y axis points up, as in Lowe's SIFT and OpenCV, so orientation bin
    ``k`` is the direction ``45 k`` degrees counter-clockwise from the x axis. Each
    pixel's magnitude goes to its two nearest orientation bins (linear weights).
    ``tops`` (row indices) and ``image_height`` describe images stacked vertically
    in ``img``, whose own top and bottom rows get one-sided differences too.

    Returns
    -------
    i0, i1 : (H, W) ndarray of intp
        Flat indices into an ``(H, W, 8)`` array of the two bins of each pixel.
    w0, w1 : (H, W) ndarray of float32
        Their weights.
    """
    h, w = img.shape
    gx = cv2.Sobel(
        img, cv2.CV_32F, 1, 0, dst=ws["gx"], ksize=1, scale=0.5, borderType=cv2.BORDER_REPLICATE
    )
    gy = cv2.Sobel(
        img, cv2.CV_32F, 0, 1, dst=ws["gy"], ksize=1, scale=-0.5, borderType=cv2.BORDER_REPLICATE
    )
    if w > 1:
        gx[:, 0] = img[:, 1] - img[:, 0]
        gx[:, -1] = img[:, -1] - img[:, -2]
    if h > 1:
        gy[0] = img[0] - img[1]
        gy[-1] = img[-2] - img[-1]
    if tops is not None:  # stacked images: one-sided differences on each image's edges
        bottoms = tops + (image_height - 1)
        gy[tops] = img[tops] - img[tops + 1]
        gy[bottoms] = img[bottoms - 1] - img[bottoms]
    mag, nt = cv2.cartToPolar(gx, gy, magnitude=ws["mag"], angle=ws["ang"])
    nt *= np.float32(N_ORI / (2 * np.pi))
    w1 = np.floor(nt, out=gx)  # reuse gx's buffer
    i0, i1 = ws["i0"], ws["i1"]
    np.copyto(i0, w1, casting="unsafe")
    np.subtract(nt, w1, out=w1)
    w1 *= mag
    w0 = np.subtract(mag, w1, out=gy)
    i0 &= N_ORI - 1  # N_ORI is a power of two; an angle of exactly 2 pi wraps to 0
    np.add(i0, 1, out=i1)
    i1 &= N_ORI - 1
    i0 += ws["base"]
    i1 += ws["base"]
    return i0, i1, w0, w1


def _orientation_planes(img: np.ndarray, ws: dict, tops=None, image_height=0) -> np.ndarray:
    """(H, W, 8) float32 orientation planes of the whole image (in ``ws["planes"]``)."""
    i0, i1, w0, w1 = _orientation_votes(img, ws, tops, image_height)
    planes = ws["planes"]
    planes.fill(0.0)
    flat = planes.reshape(-1)
    flat[i0.reshape(-1)] = w0.reshape(-1)
    flat[i1.reshape(-1)] = w1.reshape(-1)
    return planes


@lru_cache(maxsize=64)
def _layout(h: int, w: int, size: int, step: int, max_size: int):
    """Geometry of one size on one image shape (cached: it only depends on shapes)."""
    b = size // 4
    fy, fx = sift_grid((h, w), size, step, max_size)
    offs = b * np.arange(N_BINS)
    ys = fy[:, None] + offs  # (ny, 4) rows of the bin centres
    xs = fx[:, None] + offs  # (nx, 4)
    rows = np.unique(ys)
    cy, cx = np.meshgrid(fy + 1.5 * b, fx + 1.5 * b, indexing="ij")
    return {
        "ny": fy.size,
        "nx": fx.size,
        "ys": ys,
        "xs": xs,
        "rows": rows,
        "row_of": np.searchsorted(rows, ys),
        "tri": _triangle(b).astype(np.float32),
        "flat_window": _flat_window(b),
        "kernels": _bin_kernels(b),
        "cx": cx.ravel(),
        "cy": cy.ravel(),
    }


def _sift_one_size(img, size, step, max_size, fast):
    """Raw (un-normalized) descriptors of one size: (n, 128), centres (cx, cy)."""
    h, w = img.shape[:2]
    lay = _layout(h, w, size, step, max_size)
    ny, nx = lay["ny"], lay["nx"]
    if ny == 0 or nx == 0:
        return np.zeros((0, DIM), np.float32), lay["cx"], lay["cy"]
    ws = _workspace(h, w)
    ys, xs = lay["ys"], lay["xs"]
    one = _ONE
    if fast:
        tri = lay["tri"]
        rows = lay["rows"]
        # filter along y on the whole image, keep only the rows that are sampled
        planes = _orientation_planes(img, ws)
        tmp = cv2.sepFilter2D(
            planes, -1, one, tri, dst=ws["filtered"], borderType=cv2.BORDER_REPLICATE
        )
        sel = np.take(tmp, rows, axis=0, out=ws["planes"][: rows.size], mode="clip")
        tmp = cv2.sepFilter2D(
            sel, -1, tri, one, dst=ws["filtered"][: rows.size], borderType=cv2.BORDER_REPLICATE
        )
        row_of = lay["row_of"]  # (ny, 4) index into tmp
        # (ny, nx, 4 biny, 4 binx, 8)
        desc = tmp[row_of[:, None, :, None], xs[None, :, None, :]]
        desc *= lay["flat_window"]
    else:
        planes = _orientation_planes(img, ws)
        ker = lay["kernels"]
        desc = np.empty((ny, nx, N_BINS, N_BINS, N_ORI), np.float32)
        for j in range(N_BINS):
            tmp = cv2.sepFilter2D(
                planes, -1, one, ker[j], dst=ws["filtered"], borderType=cv2.BORDER_REPLICATE
            )
            tmp = tmp[ys[:, j]]  # (ny, W, 8)
            for i in range(N_BINS):
                tmp2 = cv2.sepFilter2D(tmp, -1, ker[i], one, borderType=cv2.BORDER_REPLICATE)
                desc[:, :, j, i, :] = tmp2[:, xs[:, i]]
    desc = np.ascontiguousarray(desc).reshape(ny * nx, DIM)
    return desc, lay["cx"], lay["cy"]


def normalize_sift(desc: np.ndarray, contrast_threshold: float = 0.0, rootsift: bool = False) -> np.ndarray:
    """SIFT normalization in place: L2, clip at 0.2, L2; low-contrast rows zeroed.

    Parameters
    ----------
    desc : (n, d) ndarray of float32
        Raw histograms; modified in place.
    contrast_threshold : float
        Rows whose L2 norm before normalization is below this are set to zero.
    rootsift : bool
        Then L1-normalize and take the square root (RootSIFT).

    Returns
    -------
    desc : (n, d) ndarray of float32
    """
    norm = np.sqrt(np.einsum("ij,ij->i", desc, desc))
    desc /= (norm + _EPS)[:, None]
    np.minimum(desc, 0.2, out=desc)
    desc /= (np.sqrt(np.einsum("ij,ij->i", desc, desc)) + _EPS)[:, None]
    if contrast_threshold > 0:
        desc[norm < contrast_threshold] = 0.0
    if rootsift:
        desc /= (desc.sum(axis=1) + _EPS)[:, None]
        np.sqrt(desc, out=desc)
    return desc


def _dense_sift_gray(gray, sizes, step, contrast_threshold, rootsift, magnification, fast):
    """Descriptors, centres (pixel-index units) and sizes for a float32 gray image."""
    max_size = max(sizes)
    descs, cxs, cys, scales = [], [], [], []
    for size in sizes:
        b = size // 4
        sigma2 = (b / magnification) ** 2 - 0.25  # the image is taken as pre-blurred by 0.5
        img = gray
        if sigma2 > 1e-6:
            img = cv2.GaussianBlur(gray, (0, 0), np.sqrt(sigma2), borderType=cv2.BORDER_REPLICATE)
        desc, cx, cy = _sift_one_size(img, size, step, max_size, fast)
        descs.append(desc)
        cxs.append(cx)
        cys.append(cy)
        scales.append(np.full(len(cx), size, np.float32))
    if len(descs) == 1:
        desc, cx, cy, scale = descs[0], cxs[0], cys[0], scales[0]
    else:
        desc, cx, cy, scale = (np.concatenate(v) for v in (descs, cxs, cys, scales))
    desc = normalize_sift(desc, contrast_threshold, rootsift)
    return desc, cx, cy, scale


@lru_cache(maxsize=64)
def _positions(h: int, w: int, sizes: tuple, step: int):
    """Normalized positions and scales of the frames (cached per image shape)."""
    max_size = max(sizes)
    cx = np.concatenate([_layout(h, w, s, step, max_size)["cx"] for s in sizes])
    cy = np.concatenate([_layout(h, w, s, step, max_size)["cy"] for s in sizes])
    scales = np.concatenate(
        [np.full(len(_layout(h, w, s, step, max_size)["cx"]), s, np.float32) for s in sizes]
    )
    return normalized_positions(cx, cy, (h, w)), scales


def _dense_sift_set(image, sizes, step, contrast_threshold, rootsift, magnification, fast, max_size):
    image = resize_max_side(image, max_size)
    gray = to_gray(image)
    desc, _, _, _ = _dense_sift_gray(
        gray, sizes, step, contrast_threshold, rootsift, magnification, fast
    )
    if desc.shape[0] == 0:
        return empty_set(DIM, gray.shape)
    positions, scales = _positions(gray.shape[0], gray.shape[1], tuple(sizes), step)
    return DescriptorSet(desc, positions.copy(), scales.copy(), gray.shape)


_STACK_MAX_PIXELS = 96 * 96  # images up to this size are processed stacked together
_STACK_MAX_ROWS = 8192  # rows of one stack


def _stack_one_size(grays: np.ndarray, size, step, max_size, magnification) -> np.ndarray:
    """Raw fast-window descriptors of N same-shape images processed as one image.

    The images are stacked vertically, each with ``pad`` replicated rows above and
    below, so the Gaussian blur, the one-sided border gradient and the replicated
    border of the spatial filter give, inside every image, exactly what
    processing it alone gives; then every step runs once for the whole stack.

    Returns
    -------
    (N, n, 128) ndarray of float32
    """
    n_img, h, w = grays.shape
    b = size // 4
    lay = _layout(h, w, size, step, max_size)
    ny, nx = lay["ny"], lay["nx"]
    if ny == 0 or nx == 0:
        return np.zeros((n_img, 0, DIM), np.float32)
    sigma2 = (b / magnification) ** 2 - 0.25
    sigma = np.sqrt(sigma2) if sigma2 > 1e-6 else 0.0
    pad = max(b, int(np.ceil(4 * sigma)) + 1)  # >= blur radius and filter half-width
    hp = h + 2 * pad
    stack = np.empty((n_img, hp, w), np.float32)
    stack[:, pad : pad + h] = grays
    stack[:, :pad] = grays[:, :1]
    stack[:, pad + h :] = grays[:, -1:]
    tall = stack.reshape(n_img * hp, w)
    if sigma > 0:
        tall = cv2.GaussianBlur(tall, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    ws = _workspace(n_img * hp, w)
    tops = np.arange(n_img) * hp + pad
    planes = _orientation_planes(tall, ws, tops, h).reshape(n_img, hp, w, N_ORI)
    planes[:, :pad] = planes[:, pad : pad + 1]  # replicated border of each image's planes
    planes[:, pad + h :] = planes[:, pad + h - 1 : pad + h]
    tri = lay["tri"]
    tmp = cv2.sepFilter2D(
        planes.reshape(n_img * hp, w, N_ORI), -1, _ONE, tri, dst=ws["filtered"],
        borderType=cv2.BORDER_REPLICATE,
    )
    rows = lay["rows"]
    all_rows = (tops[:, None] + rows[None, :]).ravel()
    sel = np.take(tmp, all_rows, axis=0, out=ws["planes"][: all_rows.size], mode="clip")
    tmp = cv2.sepFilter2D(
        sel, -1, tri, _ONE, dst=ws["filtered"][: all_rows.size], borderType=cv2.BORDER_REPLICATE
    )
    tmp = tmp.reshape(n_img, rows.size, w, N_ORI)
    desc = tmp[:, lay["row_of"][:, None, :, None], lay["xs"][None, :, None, :]]
    desc *= lay["flat_window"]
    return desc.reshape(n_img, ny * nx, DIM)


def _gray_channels(image: np.ndarray) -> np.ndarray:
    return to_gray(image)[None]


def _stacked_sift_chunk(images, one, channels, sizes, step, contrast_threshold, rootsift,
                       magnification, max_size) -> list:
    """Fast-window SIFT of a list of images, small same-shape images stacked.

    Parameters
    ----------
    images : list of ndarray
        Validated images.
    one : callable
        Image -> DescriptorSet, used for images too large to stack.
    channels : callable
        Image (after ``max_size``) -> ``(C, H, W)`` float32 channels; each channel
        gets its own 128-D SIFT, concatenated in channel order.
    """
    out = [None] * len(images)
    groups: dict = {}
    chans = {}
    for i, im in enumerate(images):
        im = resize_max_side(im, max_size)
        shape = im.shape[:2]
        if shape[0] * shape[1] <= _STACK_MAX_PIXELS:
            chans[i] = channels(im)
            groups.setdefault(shape, []).append(i)
        else:
            out[i] = one(images[i])
    for shape, idx in groups.items():
        h, w = shape
        n_ch = chans[idx[0]].shape[0]
        per_stack = max(1, _STACK_MAX_ROWS // ((h + 2 * max(sizes)) * n_ch))
        positions, scales = _positions(h, w, tuple(sizes), step)
        for a in range(0, len(idx), per_stack):
            part = idx[a : a + per_stack]
            stack = np.concatenate([chans[i] for i in part])  # (len(part) * C, h, w)
            raw = np.concatenate(
                [_stack_one_size(stack, s, step, max(sizes), magnification) for s in sizes], axis=1
            )
            n_per = raw.shape[1]
            desc = normalize_sift(raw.reshape(-1, DIM), contrast_threshold, rootsift)
            desc = desc.reshape(len(part), n_ch, n_per, DIM)
            if n_ch > 1:
                desc = np.ascontiguousarray(desc.transpose(0, 2, 1, 3))
            desc = desc.reshape(len(part), n_per, n_ch * DIM)
            for k, i in enumerate(part):
                if n_per == 0:
                    out[i] = empty_set(n_ch * DIM, shape)
                else:
                    out[i] = DescriptorSet(desc[k], positions.copy(), scales.copy(), shape)
    return out


def _dense_sift_chunk(images, sizes, step, contrast_threshold, rootsift, magnification, fast,
                      max_size) -> list:
    """Dense SIFT of a list of images; small same-shape images are stacked."""
    one = partial(
        _dense_sift_set, sizes=sizes, step=step, contrast_threshold=contrast_threshold,
        rootsift=rootsift, magnification=magnification, fast=fast, max_size=max_size,
    )
    if not fast:
        return [one(im) for im in images]
    return _stacked_sift_chunk(
        images, one, _gray_channels, sizes, step, contrast_threshold, rootsift, magnification,
        max_size,
    )


def dense_sift(
    image: np.ndarray,
    *,
    sizes=(16,),
    step: int = 8,
    contrast_threshold: float = 0.005,
    rootsift: bool = False,
    magnification: float = 6.0,
    fast: bool = True,
    max_size: int | None = None,
) -> DescriptorSet:
    """Dense SIFT descriptors of one image (see :class:`DenseSIFT`).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        ``uint8`` or float in ``[0, 1]``; colour is converted to gray.
    sizes, step, contrast_threshold, rootsift, magnification, fast, max_size
        As :class:`DenseSIFT`.

    Returns
    -------
    DescriptorSet
        ``(n, 128)`` float32 descriptors, patch centres and sizes.
    """
    sizes = _check_sizes(sizes)
    image = check_image(image, min_size=max(sizes))
    return _dense_sift_set(
        image, sizes, int(step), float(contrast_threshold), bool(rootsift),
        float(magnification), bool(fast), max_size,
    )


class DenseSIFT(BaseExtractor):
    """Dense SIFT on a regular grid, at one or several sizes (VLFeat PHOW style).

    Each descriptor has 4 x 4 spatial bins of ``size / 4`` pixels and 8 orientation
    bins (128-D). All descriptors of an image are computed together: Gaussian
    smoothing, gradient orientation planes with linear angular interpolation,
    separable triangular (bilinear) spatial filtering of all planes at once, then
    sampling of the grid -- no per-keypoint loop.

    Parameters
    ----------
    sizes : int or tuple of int, default=(16,)
        Descriptor sizes in pixels (multiples of 4; bin size = size / 4). Several
        sizes give the union of the descriptors, all centred on the same grid.
    step : int, default=8
        Grid step in pixels.
    contrast_threshold : float, default=0.005
        Descriptors whose gradient energy (L2 norm before normalization, image in
        ``[0, 1]``) is below this are set to zero, as VLFeat's ``vl_phow``.
        0 keeps all.
    rootsift : bool, default=False
        RootSIFT: L1-normalize then take the square root (Arandjelovic & Zisserman).
    magnification : float, default=6.0
        The image is smoothed with ``sigma = sqrt((bin_size / magnification)**2 - 0.25)``
        before the gradient (PHOW's choice, 6).
    fast : bool, default=True
        Use a flat Gaussian window (the window weight averaged over each bin, as
        VLFeat's ``'fast'`` option). ``False`` weights every pixel by the Gaussian
        window of sigma 2 bins (like Lowe's SIFT and OpenCV): 4 + 16 one-dimensional
        filterings per size instead of 2, about twice the time.
    max_size : int or None, default=None
        Downscale (area interpolation) images whose longer side exceeds this first.
    n_jobs : int or None, default=None
        Parallel jobs (joblib) over chunks of images; ``None`` means 1.

    Attributes
    ----------
    n_features_out_ : int
        128.

    Notes
    -----
    * Descriptor layout is ``(y_bin, x_bin, orientation)`` with y bins top to
      bottom and orientations counter-clockwise with the y axis pointing up, as in
      Lowe's code and OpenCV's ``SIFT.compute`` with ``angle=0`` keypoints. An
      OpenCV keypoint of ``size = 2 * bin_size / 3`` covers the same support.
    * Orientation is not normalized (upright descriptors), as is usual for dense
      SIFT in image classification.
    * ``contrast_threshold`` follows VLFeat's PHOW (low-contrast descriptors are
      zeroed rather than dropped, so every image has the same grid); the gradient
      scale is VLFeat's (half central differences on a ``[0, 1]`` image).
    * Positions are descriptor centres in continuous image coordinates divided by
      the width and height; ``scales`` is ``size``.
    * With ``fast=True``, small images of one shape (up to 96 x 96, e.g. CIFAR)
      are stacked and processed as one image, with replicated padding rows so the
      numbers are exactly those of one image at a time.

    References
    ----------
    D. G. Lowe, "Distinctive Image Features from Scale-Invariant Keypoints", IJCV
    2004. https://doi.org/10.1023/B:VISI.0000029664.99615.94

    A. Bosch, A. Zisserman and X. Munoz, "Image Classification using Random Forests
    and Ferns", ICCV 2007 (PHOW). https://doi.org/10.1109/ICCV.2007.4409066

    A. Vedaldi and B. Fulkerson, "VLFeat: An Open and Portable Library of Computer
    Vision Algorithms", 2008. https://www.vlfeat.org

    R. Arandjelovic and A. Zisserman, "Three things everyone should know to improve
    object retrieval", CVPR 2012 (RootSIFT). https://doi.org/10.1109/CVPR.2012.6248018

    Examples
    --------
    >>> import numpy as np
    >>> from classicvision.features import DenseSIFT
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 64, 64), dtype=np.uint8)
    >>> sets = DenseSIFT(sizes=(16,), step=8).fit_transform(images)
    >>> sets[0].descriptors.shape
    (49, 128)
    """

    _parameter_constraints: dict = {
        **BaseExtractor._parameter_constraints,
        "sizes": [Interval(Integral, 4, None, closed="left"), tuple, list],
        "step": [Interval(Integral, 1, None, closed="left")],
        "contrast_threshold": [Interval(Real, 0, None, closed="left")],
        "rootsift": ["boolean"],
        "magnification": [Interval(Real, 0, None, closed="neither")],
        "fast": ["boolean"],
        "max_size": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        sizes=(16,),
        step=8,
        contrast_threshold=0.005,
        rootsift=False,
        magnification=6.0,
        fast=True,
        max_size=None,
        n_jobs=None,
    ):
        self.sizes = sizes
        self.step = step
        self.contrast_threshold = contrast_threshold
        self.rootsift = rootsift
        self.magnification = magnification
        self.fast = fast
        self.max_size = max_size
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        self._sizes = _check_sizes(self.sizes)
        if self.max_size is not None and self.max_size < max(self._sizes):
            raise ValueError(
                f"max_size={self.max_size} is smaller than the largest SIFT size {max(self._sizes)}"
            )

    def _min_size(self) -> int:
        return max(self._sizes)

    def _n_features(self, images) -> int:
        return DIM

    def _sift_params(self) -> dict:
        """The keyword arguments of the SIFT kernels, from the validated parameters."""
        return dict(
            sizes=self._sizes,
            step=int(self.step),
            contrast_threshold=float(self.contrast_threshold),
            rootsift=bool(self.rootsift),
            magnification=float(self.magnification),
            fast=bool(self.fast),
            max_size=self.max_size,
        )

    def _extract_chunk_function(self):
        return partial(_dense_sift_chunk, **self._sift_params())

    def _extract_function(self):
        return partial(_dense_sift_set, **self._sift_params())
