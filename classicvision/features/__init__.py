"""Local feature extractors: images in, one descriptor set per image out.

Every extractor is a scikit-learn transformer (``fit`` validates, ``transform``
returns a list of :class:`~classicvision.base.DescriptorSet`, or a 2-D array for
``HOG``/``LBP`` with ``output="vector"``), with a function twin for one image.

==================  ========================================================  ====================
Class               What                                                      Function twin
==================  ========================================================  ====================
:class:`DenseSIFT`  dense SIFT on a grid, several sizes (VLFeat PHOW style)   :func:`dense_sift`
:class:`HOG`        histograms of oriented gradients (skimage's numbers)      :func:`hog`
:class:`LBP`        local binary pattern histograms over a grid or patches    :func:`lbp`
:class:`ColorSIFT`  dense SIFT per channel of a colour space (van de Sande)   :func:`color_sift`
:class:`RawPatches` normalized, ZCA-whitened raw patches (Coates, Lee & Ng)   :func:`raw_patches`
==================  ========================================================  ====================

Images are ``(H, W)`` or ``(H, W, 3)`` ``uint8`` arrays (or floats in ``[0, 1]``),
given as a sequence or one ``(N, H, W[, 3])`` array. Descriptor positions are patch
centres divided by the image width and height.

Every extractor takes ``max_size`` (default None): images whose longer side exceeds it
are downscaled to it first (area interpolation, aspect ratio kept), so a multi-megapixel
photo costs no more than a ``max_size`` one; positions then refer to the downscaled
image. ``HOG`` and ``LBP`` with ``output="vector"`` name their features
(``get_feature_names_out``), so ``set_output`` works on them.
"""

from ._color import ColorSIFT, color_sift, color_transform
from ._common import resize_max_side
from ._hog import HOG, hog
from ._lbp import LBP, lbp, lbp_codes, lbp_n_bins
from ._patches import RawPatches, raw_patches
from ._sift import DenseSIFT, dense_sift, sift_grid

__all__ = [
    "resize_max_side",
    "ColorSIFT",
    "DenseSIFT",
    "HOG",
    "LBP",
    "RawPatches",
    "color_sift",
    "color_transform",
    "dense_sift",
    "hog",
    "lbp",
    "lbp_codes",
    "lbp_n_bins",
    "raw_patches",
    "sift_grid",
]
