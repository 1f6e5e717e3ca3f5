"""Presets: the published classic systems as unfitted scikit-learn pipelines.

Every preset is a :class:`sklearn.pipeline.Pipeline` whose first step, named
``"features"``, maps a sequence of images to a 2-D feature array, and whose later
steps (normalization, explicit kernel map, SVM) take 2-D arrays. ``bench`` relies
on that split to cache features.

>>> from classicvision.presets import make_preset, PRESETS
>>> sorted(PRESETS)[:3]
['coates_kmeans', 'coates_soft_threshold', 'fisher']
>>> pipe = make_preset("hog_svm", C=0.5)
>>> [name for name, _ in pipe.steps]
['features', 'kernel_map', 'svm']

Each builder's parameters are the preset's overrides (``make_preset(name, **overrides)``);
any nested pipeline parameter (``features__encoder__n_words``) is accepted too.

The defaults are the papers' settings, for images of a few hundred pixels. A preset may
also carry settings for a named dataset (``PRESETS[name]["datasets"]``), applied by
``make_preset(name, dataset=...)`` under the explicit overrides: the SIFT, LBP and Coates
presets have ``"cifar10"`` settings sized for 32x32 images and a linear classifier that
scales to 50,000 training images.

The ``"cifar10"`` settings are the presets' *small-image* settings
(:data:`SMALL_IMAGE_SETTING`): they follow the images, not the dataset's name. Given
``image_side`` (the median longer side of the training images,
:func:`median_image_side`), a dataset the preset has no settings for gets them when
``image_side <= SMALL_IMAGE_SIDE`` (64 px), so CIFAR-10 loaded as an image folder is
treated as CIFAR-10 (:func:`setting_for`).

>>> make_preset("lazebnik_spm", dataset="cifar10").get_params()["features__extractor__sizes"]
(8,)
>>> preset_params("lazebnik_spm", dataset="cifar10", n_words=200)["n_words"]
200
>>> setting_for("lazebnik_spm", dataset="folder", image_side=32)
'cifar10'

Every preset bounds the image size it extracts features from: the ``max_size``
parameter (longer side in pixels; larger images are downscaled with area
interpolation first), or, for ``hog_svm``, the fixed ``image_size`` every image is
resized to. The SIFT presets also take ``color="gray" | "opponent" | "rgb"`` (colour
SIFT, van de Sande et al. 2010).

The presets that fit a codebook or a GMM take ``max_descriptors``: how many local
descriptors are kept from the training images to fit on, spread evenly over them
(the :class:`~classicvision.encoding.ImageEncoder`'s ``fit_descriptors``). The
encoder (and the PCA, where there is one) then fits on a random sample of at most
its own ``max_descriptors`` of these, 100,000 by default
(``features__encoder__max_descriptors``, ``features__reducer__max_descriptors``).

Measured accuracies are not written here: ``BENCHMARKS.md``, generated from the
reports of ``python -m bench compare``, has every preset's figures, and
``PRESETS[name]["published"]`` the papers' own. The comments below say why a
setting was chosen.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import Normalizer

from .augment import MirrorAugmented, MirrorSymmetric
from .encoding import (
    LLC,
    VLAD,
    BagOfWords,
    DescriptorPCA,
    FisherVector,
    ImageEncoder,
    KMeansTriangle,
    SoftThreshold,
    SparseCoding,
    SuperVector,
)
from .features import HOG, LBP, ColorSIFT, DenseSIFT, RawPatches
from .kernels import HomogeneousKernelMap, KernelSVC, LinearSVM, NystroemMap
from .pooling import SpatialPyramid
from .preprocessing import ChunkedStandardScaler

__all__ = [
    "PRESETS",
    "SMALL_IMAGE_SETTING",
    "SMALL_IMAGE_SIDE",
    "make_preset",
    "median_image_side",
    "preset_names",
    "preset_params",
    "setting_for",
]

#: Images whose median longer side is at most this many pixels get a preset's
#: small-image settings (:func:`setting_for`).
SMALL_IMAGE_SIDE = 64

#: The key of ``PRESETS[name]["datasets"]`` that holds a preset's small-image settings
#: (sized for 32x32 CIFAR-10 images, where they were tuned; the key keeps its name so
#: that ``dataset="cifar10"`` and the figures measured with it stay as they were).
SMALL_IMAGE_SETTING = "cifar10"

_BUILDERS: dict[str, Callable[..., Pipeline]] = {}

#: name -> {"description", "citation", "url", "published", "datasets", "notes"}.
#: ``published`` maps a dataset name to the paper's figure: a float (top-1 accuracy as a
#: fraction) or a mapping ``{"value": float, "metric": "top1" | "mean_class_accuracy",
#: "note": str}``; ``datasets`` maps a dataset name to the builder parameters
#: ``make_preset(name, dataset=...)`` uses for it.
PRESETS: dict[str, dict[str, Any]] = {}


def _register(name: str, *, description: str, citation: str, url: str,
              published: Mapping[str, float | Mapping[str, Any]] | None = None,
              datasets: Mapping[str, Mapping[str, Any]] | None = None, notes: str = ""):
    def decorator(builder):
        if name in _BUILDERS:
            raise RuntimeError(f"preset {name!r} registered twice")
        accepted = set(inspect.signature(builder).parameters)
        for dataset, settings in (datasets or {}).items():
            unknown = sorted(set(settings) - accepted)
            if unknown:
                raise RuntimeError(f"preset {name!r}: settings for {dataset!r} name unknown parameters {unknown}")
        _BUILDERS[name] = builder
        PRESETS[name] = {
            "description": description,
            "citation": citation,
            "url": url,
            "published": dict(published or {}),
            "datasets": {d: dict(s) for d, s in (datasets or {}).items()},
            "notes": notes,
        }
        return builder

    return decorator


def preset_names() -> list[str]:
    """Names of the registered presets, sorted."""
    return sorted(PRESETS)


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        close = difflib.get_close_matches(str(name), _BUILDERS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown preset {name!r}{hint} Available presets: {', '.join(preset_names())}"
        )


def median_image_side(images: np.ndarray | Sequence[np.ndarray]) -> float:
    """Median longer side of a set of images, in pixels (from their shapes only).

    Parameters
    ----------
    images : (N, H, W) or (N, H, W, C) ndarray, or sequence of (H, W[, C]) ndarray
        The images (e.g. the training images of a run); only ``.shape`` is read.

    Returns
    -------
    float
        ``median(max(H_i, W_i))``; for one array of images, ``max(H, W)``.

    Raises
    ------
    ValueError
        For no images, or an image with fewer than 2 dimensions.

    Examples
    --------
    >>> median_image_side(np.zeros((5, 32, 32, 3), np.uint8))
    32.0
    >>> median_image_side([np.zeros((300, 250)), np.zeros((200, 400)), np.zeros((10, 20))])
    300.0
    """
    if isinstance(images, np.ndarray) and images.dtype != object:
        if images.ndim not in (3, 4) or len(images) == 0:
            raise ValueError(
                f"median_image_side needs (N, H, W[, C]) images with N >= 1, got an array of shape "
                f"{images.shape}"
            )
        return float(max(images.shape[1], images.shape[2]))
    sides = []
    for i, im in enumerate(images):
        shape = np.shape(im)
        if len(shape) < 2:
            raise ValueError(f"median_image_side: image {i} has shape {shape}, not (H, W[, C])")
        sides.append(max(shape[0], shape[1]))
    if not sides:
        raise ValueError("median_image_side needs at least one image, got none")
    return float(np.median(sides))


def setting_for(name: str, *, dataset: str | None = None, image_side: float | None = None) -> str | None:
    """Which of a preset's dataset settings applies (a key of ``PRESETS[name]["datasets"]``).

    Parameters
    ----------
    name : str
        A preset.
    dataset : str or None, default=None
        The dataset's name. A dataset the preset has settings for selects them, whatever
        ``image_side`` says (so ``dataset="cifar10"`` resolves as it always has).
    image_side : float or None, default=None
        The median longer side of the training images in pixels
        (:func:`median_image_side`). For any other dataset, ``image_side <=``
        :data:`SMALL_IMAGE_SIDE` selects the small-image settings
        (:data:`SMALL_IMAGE_SETTING`) when the preset has them.

    Returns
    -------
    str or None
        The key, or None for the preset's defaults (the paper's settings).

    Raises
    ------
    ValueError
        For an unknown preset, or an ``image_side`` that is not a positive number.

    Examples
    --------
    >>> setting_for("vlad", dataset="cifar10"), setting_for("vlad", dataset="folder", image_side=32)
    ('cifar10', 'cifar10')
    >>> setting_for("vlad", dataset="folder", image_side=300) is None
    True
    """
    _check_name(name)
    settings = PRESETS[name]["datasets"]
    if dataset is not None and dataset in settings:
        return dataset
    if image_side is not None:
        try:
            side = float(image_side)
        except (TypeError, ValueError):
            side = float("nan")
        if not side > 0:
            raise ValueError(f"image_side must be a positive number of pixels, got {image_side!r}")
        if side <= SMALL_IMAGE_SIDE and SMALL_IMAGE_SETTING in settings:
            return SMALL_IMAGE_SETTING
    return None


def _resolve(name: str, dataset: str | None, overrides: Mapping[str, Any], image_side: float | None = None):
    """``(builder, builder keyword arguments, nested pipeline parameters)`` of a preset."""
    _check_name(name)
    builder = _BUILDERS[name]
    accepted = set(inspect.signature(builder).parameters)
    direct = {k: v for k, v in overrides.items() if k in accepted}
    nested = {k: v for k, v in overrides.items() if k not in accepted and "__" in k}
    unknown = sorted(set(overrides) - set(direct) - set(nested))
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for preset {name!r}; it accepts "
            f"{sorted(accepted)} or nested pipeline parameters such as 'features__...'"
        )
    key = setting_for(name, dataset=dataset, image_side=image_side)
    settings = PRESETS[name]["datasets"][key] if key is not None else {}
    return builder, {**settings, **direct}, nested


def preset_params(name: str, *, dataset: str | None = None, image_side: float | None = None,
                  **overrides) -> dict[str, Any]:
    """The effective parameters of ``make_preset(name, dataset=..., image_side=..., **overrides)``.

    Parameters
    ----------
    name, dataset, image_side, **overrides
        As for :func:`make_preset`.

    Returns
    -------
    dict
        Every parameter of the preset's builder with the value the pipeline is built
        with (its default, else the dataset's setting, else the override), followed by
        the nested ``step__param`` overrides.

    Raises
    ------
    ValueError
        As :func:`make_preset`.
    """
    builder, kwargs, nested = _resolve(name, dataset, overrides, image_side)
    defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items()}
    return {**defaults, **kwargs, **nested}


def make_preset(name: str, *, dataset: str | None = None, image_side: float | None = None,
                **overrides) -> Pipeline:
    """Build the unfitted pipeline of a named classic system.

    Parameters
    ----------
    name : str
        One of :data:`PRESETS` (``hog_svm``, ``lbp_svm``, ``lazebnik_spm``, ``scspm``,
        ``llc``, ``fisher``, ``vlad``, ``coates_kmeans``, ``nec2010``).
    dataset : str or None, default=None
        Apply the preset's settings for this dataset (``PRESETS[name]["datasets"]``,
        e.g. ``"cifar10"``: patch sizes, pyramid and classifier for 32x32 images).
        A dataset the preset has no settings for, and None, give the preset's
        defaults (the paper's settings), unless ``image_side`` says the images are
        small.
    image_side : float or None, default=None
        The median longer side of the training images in pixels
        (:func:`median_image_side`): when the preset has no settings for ``dataset``,
        ``image_side <= SMALL_IMAGE_SIDE`` (64) applies its small-image settings
        (the ``"cifar10"`` ones). See :func:`setting_for`.
    **overrides
        Either a parameter of the preset's builder (e.g. ``n_words=400``, ``C=10``,
        ``n_jobs=2``, ``random_state=0``; see each builder's docstring) or a nested
        pipeline parameter in scikit-learn's ``step__param`` form. Overrides win over
        the dataset's settings.

    Returns
    -------
    sklearn.pipeline.Pipeline or classicvision.augment.MirrorAugmented
        Unfitted; the pipeline's first step is named ``"features"``. Presets asked to
        train on mirror images too (``coates_kmeans(mirror=True)``) return the
        pipeline wrapped in :class:`~classicvision.augment.MirrorAugmented`.

    Raises
    ------
    ValueError
        For an unknown preset (close matches are listed) or an unknown override.

    See Also
    --------
    preset_params : the builder parameters this call resolves to.
    """
    builder, kwargs, nested = _resolve(name, dataset, overrides, image_side)
    pipe = builder(**kwargs)
    if nested:  # step parameters name the pipeline's steps, also inside a mirror wrapper
        (pipe.estimator if isinstance(pipe, MirrorAugmented) else pipe).set_params(**nested)
    return pipe


def _svm(kind: str, C: float, random_state=None):
    """The classifier step: ``"linear"`` (squared-hinge linear SVM, seeded by
    ``random_state``) or an additive kernel SVC (libsvm, one-vs-rest, deterministic)."""
    if kind == "linear":
        return LinearSVM(C=C, random_state=random_state)
    if kind in ("intersection", "chi2", "hellinger"):
        return KernelSVC(kernel=kind, C=C, multi_class="ovr")
    raise ValueError(f"svm must be 'linear', 'intersection', 'chi2' or 'hellinger', got {kind!r}")


#: ``color`` values of the SIFT presets -> ColorSIFT colour space (None: gray DenseSIFT).
_SIFT_COLORS = {"gray": None, "opponent": "opponent", "rgb": "rgb"}


def _sift(sizes, step: int, max_size: int | None, color: str, **kwargs) -> DenseSIFT:
    """The SIFT extractor of a preset: gray :class:`DenseSIFT` (128-D), or
    :class:`~classicvision.features.ColorSIFT` (384-D) for ``"opponent"`` / ``"rgb"``."""
    if color not in _SIFT_COLORS:
        raise ValueError(f"color must be 'gray', 'opponent' or 'rgb', got {color!r}")
    if _SIFT_COLORS[color] is None:
        return DenseSIFT(sizes=tuple(sizes), step=step, max_size=max_size, **kwargs)
    return ColorSIFT(color=_SIFT_COLORS[color], sizes=tuple(sizes), step=step, max_size=max_size, **kwargs)


# ----------------------------------------------------------------------------- presets
@_register(
    "hog_svm",
    description="HOG of the whole image + RBF-kernel SVM (Nystroem map + linear SVM)",
    citation="Dalal & Triggs, Histograms of Oriented Gradients for Human Detection, CVPR 2005",
    url="https://doi.org/10.1109/CVPR.2005.177",
    notes="No peer-reviewed CIFAR-10 figure for this exact recipe; HOG + kernel SVM is often quoted at "
          "about 62% on CIFAR-10 without a primary source, so it is not used in the reproduction table.",
)
def hog_svm(*, image_size: int = 32, orientations: int = 9, cell: int = 4, block: int = 2,
            kernel: str | None = "rbf", n_components: int = 4000, gamma: float | None = None,
            C: float = 10.0, n_jobs=None, random_state=None) -> Pipeline:
    """HOG + kernel SVM baseline.

    Every image is resized to ``image_size`` x ``image_size`` and described by one HOG
    vector (``orientations`` bins, ``cell`` x ``cell`` pixel cells, ``block`` x ``block``
    cell blocks, L2-Hys). An RBF kernel SVM is approximated by a Nystroem feature map
    with ``n_components`` landmarks (Williams & Seeger 2001) followed by a linear SVM,
    so that 50,000 training images fit in minutes; ``kernel=None`` gives the plain
    linear SVM on HOG.

    Size bound: the resize to ``image_size`` x ``image_size`` (area interpolation
    when shrinking) bounds every image already, so this preset has no ``max_size``:
    a 4000 px photo is described at ``image_size`` px like any other image.

    ``gamma=None`` sets the RBF width from the descriptor layout: every L2-Hys block
    has unit norm, so squared distances between HOG vectors are of the order of the
    number of blocks ``B``, and ``gamma = 2 / B`` (measured on CIFAR-10: median squared
    distance 47 for B = 49).

    Notes
    -----
    Dalal & Triggs use 8x8-pixel cells on 64x128 windows with a linear SVM; for
    32x32 CIFAR images 4x4-pixel cells keep the same number of cells per object.
    On a 10,000-image CIFAR-10 subset the RBF map scored clearly above an order-1
    chi2 map with a linear SVM (the preset's own figures are in BENCHMARKS.md).
    """
    blocks_per_side = max(image_size // cell - block + 1, 1)
    if gamma is None:
        gamma = 2.0 / blocks_per_side**2
    if kernel is None:
        kernel_map = "passthrough"
    else:
        kernel_map = NystroemMap(kernel=kernel, gamma=gamma, n_components=n_components,
                              random_state=random_state)
    steps = [
        ("features", HOG(orientations=orientations, pixels_per_cell=(cell, cell),
                         cells_per_block=(block, block), resize=(image_size, image_size),
                         output="vector", n_jobs=n_jobs)),
        ("kernel_map", kernel_map),
        ("svm", _svm("linear", C, random_state)),
    ]
    return Pipeline(steps)


@_register(
    "lbp_svm",
    description="uniform LBP histograms over a 4x4 grid + chi2 kernel map + linear SVM",
    citation="Ojala, Pietikainen & Maenpaa, Multiresolution gray-scale and rotation invariant texture "
             "classification with local binary patterns, TPAMI 2002; Ahonen, Hadid & Pietikainen, TPAMI 2006",
    url="https://doi.org/10.1109/TPAMI.2002.1017623",
    # 4x4 cells of 8 px on 32x32 images; C=0.01 scored best of 0.01, 0.03, 0.1 (and 1) on 10,000
    # CIFAR-10 images; the figures of these settings are in BENCHMARKS.md
    datasets={"cifar10": {"grid": (4, 4), "C": 0.01}},
)
def lbp_svm(*, P: int = 8, R: float = 1.0, method: str = "uniform", grid=(4, 4),
            kernel_map: str | None = "chi2", C: float = 1.0, max_size: int | None = 300,
            n_jobs=None, random_state=None) -> Pipeline:
    """LBP texture histograms + SVM (``random_state`` seeds the linear SVM).

    ``P`` neighbours on a circle of radius ``R``; ``method`` selects the code mapping;
    one normalized histogram per cell of a ``grid`` (rows, cols) laid over the image,
    concatenated; order-1 chi2 feature map; linear SVM. Images larger than
    ``max_size`` pixels on their longer side are downscaled first (area
    interpolation; None: no bound).

    Notes
    -----
    Ahonen et al. compare grids of LBP histograms with the chi2 distance and a
    nearest-neighbour rule; here the chi2 kernel map and a linear SVM take its place.

    ``max_size=300`` is not from the papers, which work on small images throughout
    (Ojala et al.: 128x128 texture samples; Ahonen et al.: 130x150 face crops); it is
    the bound of the SIFT presets, so scene-sized images (15-Scene, about 250-300 px)
    are described at their own scale as before while a multi-megapixel photo is not
    described at a texture scale (R = 1 px) no other image has. 32x32 images are
    unaffected.
    """
    steps = [
        ("features", LBP(P=P, R=R, method=method, grid=grid, output="vector", max_size=max_size,
                         n_jobs=n_jobs)),
        ("kernel_map", HomogeneousKernelMap(kernel=kernel_map, order=1) if kernel_map else "passthrough"),
        ("svm", _svm("linear", C, random_state)),
    ]
    return Pipeline(steps)


@_register(
    "lazebnik_spm",
    description="dense SIFT + k-means words + 3-level spatial pyramid + intersection-kernel SVM",
    citation="Lazebnik, Schmid & Ponce, Beyond Bags of Features: Spatial Pyramid Matching for "
             "Recognizing Natural Scene Categories, CVPR 2006",
    url="https://doi.org/10.1109/CVPR.2006.68",
    # 8 px SIFT every 2 px (169 per 32x32 image; 16/8 px give 9); the intersection kernel through
    # its explicit map, as good as the exact kernel SVC on 2,000 CIFAR-10 images and well above a
    # linear SVM without the map or the scene settings; the preset's figures are in BENCHMARKS.md.
    # Caltech-101: the paper's M=200 words for its 64.6% (Table 2, strong features, L=2).
    datasets={"cifar10": {"patch": 8, "step": 2, "max_size": None, "levels": (1, 2, 4),
                          "svm": "linear", "kernel_map": "intersection", "C": 1.0},
              "caltech101": {"n_words": 200}},
    published={"scene15": {"value": 0.814, "metric": "mean_class_accuracy",
                            "note": "mean per-class recognition rate over 10 random splits, 100 training "
                                    "images per class; M=400, L=2"},
               "caltech101": {"value": 0.646, "std": 0.008, "metric": "mean_class_accuracy",
                              "note": "mean per-class recognition rate over 10 random splits, 30 training "
                                      "images per class, up to 50 test; M=200, L=2"}},
    notes="15-Scene: 81.4 +/- 0.5 with M=400 words, L=2 (81.1 with M=200); mean of per-class recall.",
)
def lazebnik_spm(*, n_words: int = 400, patch: int = 16, step: int = 8, levels=(1, 2, 4),
                 svm: str = "intersection", kernel_map: str | None = None, C: float = 3.0,
                 max_size: int | None = 300, color: str = "gray", max_descriptors: int = 200_000,
                 n_jobs=None, random_state=None) -> Pipeline:
    """Spatial pyramid matching (Lazebnik et al. 2006).

    SIFT descriptors of ``patch`` x ``patch`` pixel patches on a grid with ``step``
    pixels spacing (16 and 8 in the paper), a vocabulary of ``n_words`` k-means words
    (M=200 or 400), histograms over a spatial pyramid ``levels`` (L=2 gives 1x1, 2x2,
    4x4) with the paper's level weights, and an SVM with the histogram intersection
    kernel (``svm="intersection"``). For training sets too large for an
    ``n x n`` kernel matrix, ``svm="linear"`` with ``kernel_map="intersection"``
    approximates the same kernel by an order-1 explicit feature map (Vedaldi &
    Zisserman 2012; 3x the dimension) and a linear SVM; ``kernel_map=None`` with
    ``svm="linear"`` is the plain linear SVM on the histograms.

    The kernel SVM is one-versus-all, as in the paper (the class whose machine
    gives the highest response wins): one machine per class
    on all training images (:class:`~classicvision.kernels.KernelSVC` with
    ``multi_class="ovr"``), not libsvm's one-vs-one voting. The paper gives no
    ``C``; ``C=3`` was chosen by 5-fold cross-validation on the training images
    of split 0 of 15-Scene and of Caltech-101 (grid 0.3, 1, 3, 10, 100; 3 was best
    on both, 10 within 0.7 points: mean per-class CV accuracy at C = 1, 3, 10 of
    76.7, 80.2, 80.1% on 15-Scene and 57.3, 60.9, 60.2% on Caltech-101, M=400).

    ``color``: ``"gray"`` (the paper's gray SIFT, 128-D), ``"opponent"`` (OpponentSIFT)
    or ``"rgb"`` (RGB-SIFT): SIFT on each of three colour channels, concatenated
    (384-D; van de Sande, Gevers & Snoek, TPAMI 2010); gray images are replicated
    into three channels.

    Notes
    -----
    The paper fits k-means on a random subset of descriptors from the training
    images; so does this preset (a sample of the ``max_descriptors`` kept, see the
    module's docstring). Images larger than
    ``max_size`` pixels on their longer side are downscaled first (15-Scene images are
    about 250-300 pixels, so this rarely applies).
    """
    pyramid = SpatialPyramid(levels=levels, level_weights="lazebnik")
    features = ImageEncoder(
        _sift((patch,), step, max_size, color),
        BagOfWords(n_words=n_words, pyramid=pyramid, normalize="l1", random_state=random_state),
        fit_descriptors=max_descriptors, n_jobs=n_jobs, random_state=random_state,
    )
    if kernel_map is not None and svm != "linear":
        raise ValueError(f"kernel_map={kernel_map!r} needs svm='linear' (got svm={svm!r})")
    kmap = HomogeneousKernelMap(kernel=kernel_map, order=1) if kernel_map is not None else "passthrough"
    return Pipeline([("features", features), ("kernel_map", kmap), ("svm", _svm(svm, C, random_state))])


@_register(
    "scspm",
    description="dense SIFT + sparse coding (1024 atoms) + max-pooled spatial pyramid + linear SVM",
    citation="Yang, Yu, Gong & Huang, Linear Spatial Pyramid Matching Using Sparse Coding for Image "
             "Classification, CVPR 2009",
    url="https://doi.org/10.1109/CVPR.2009.5206757",
    # 8 px SIFT every 4 px (49 per 32x32 image), 512 atoms (10,752-D), above the scene settings on
    # 2,000 CIFAR-10 images; sparse coding is the slow stage, hence 512 atoms and a step of 4 (the
    # preset's figures are in BENCHMARKS.md)
    datasets={"cifar10": {"patch": 8, "step": 4, "max_size": None, "n_words": 512, "levels": (1, 2, 4)}},
    published={"scene15": {"value": 0.8028, "metric": "mean_class_accuracy",
                            "note": "mean per-class recognition rate over 10 random splits, 100 training "
                                    "images per class; 1024 atoms"},
               "caltech101": {"value": 0.732, "std": 0.0054, "metric": "mean_class_accuracy",
                              "note": "mean per-class recognition rate over 10 random splits, 30 training "
                                      "images per class; 1024 atoms"}},
    notes="15-Scene: 80.28 +/- 0.93 with 1024 atoms, 100 training images per class.",
)
def scspm(*, n_words: int = 1024, alpha: float = 0.15, patch: int = 16, step: int = 8,
          levels=(1, 2, 4), C: float = 1.0, max_size: int | None = 300, color: str = "gray",
          max_descriptors: int = 100_000, n_jobs=None, random_state=None) -> Pipeline:
    """ScSPM (Yang et al. 2009).

    SIFT on ``patch`` x ``patch`` patches every ``step`` pixels, a dictionary of
    ``n_words`` atoms learned by sparse coding, codes with L1 weight ``alpha``,
    max pooling over a 1x1, 2x2, 4x4 pyramid, linear SVM.

    ``color``: ``"gray"`` (the paper's gray SIFT, 128-D), ``"opponent"`` (OpponentSIFT)
    or ``"rgb"`` (RGB-SIFT): SIFT on each of three colour channels, concatenated
    (384-D; van de Sande, Gevers & Snoek, TPAMI 2010); gray images are replicated
    into three channels.

    Notes
    -----
    The paper samples patches every 6 pixels and resizes images to at most 300
    pixels (``max_size``); a step of 8 pixels gives (6/8)^2 = 56% as many
    descriptors to code.
    """
    pyramid = SpatialPyramid(levels=levels)
    features = ImageEncoder(
        _sift((patch,), step, max_size, color),
        SparseCoding(n_words=n_words, alpha=alpha, pooling="max", pyramid=pyramid,
                     random_state=random_state),
        fit_descriptors=max_descriptors, n_jobs=n_jobs, random_state=random_state,
    )
    return Pipeline([("features", features), ("svm", _svm("linear", C, random_state))])


@_register(
    "llc",
    description="multi-scale dense SIFT + LLC (1024 words, 5-NN) + max-pooled pyramid + linear SVM",
    citation="Wang, Yang, Yu, Lv, Huang & Gong, Locality-constrained Linear Coding for Image "
             "Classification, CVPR 2010",
    url="https://doi.org/10.1109/CVPR.2010.5540018",
    published={"caltech101": {"value": 0.7344, "metric": "mean_class_accuracy",
                              "note": "30 training images per class; 2048 words, 5-NN (Wang et al. 2010, Table 1)"}},
    # 8, 12, 16 px SIFT every 2 px (365 per 32x32 image; 21,504-D): above a step of 4 px and the
    # scene settings on 2,000 CIFAR-10 images (the preset's figures are in BENCHMARKS.md)
    # Caltech-101: the paper's codebook of 2048 words for its 73.44% (Table 1).
    datasets={"cifar10": {"sizes": (8, 12, 16), "step": 2, "max_size": None, "n_words": 1024,
                          "levels": (1, 2, 4)},
              "caltech101": {"n_words": 2048}},
)
def llc(*, n_words: int = 1024, knn: int = 5, beta: float = 1e-4, sizes=(16, 24, 32), step: int = 8,
        levels=(1, 2, 4), C: float = 1.0, max_size: int | None = 300, color: str = "gray",
        max_descriptors: int = 200_000, n_jobs=None, random_state=None) -> Pipeline:
    """LLC (Wang et al. 2010).

    Dense descriptors at three patch ``sizes`` (16, 24, 32) every ``step`` (8) pixels,
    a k-means codebook of ``n_words``, approximated LLC codes on the ``knn`` nearest
    words with regularization ``beta``, max pooling over a 1x1, 2x2, 4x4 pyramid,
    L2 normalization, linear SVM — the paper's setting.

    ``color``: ``"gray"`` (the paper's gray SIFT, 128-D), ``"opponent"`` (OpponentSIFT)
    or ``"rgb"`` (RGB-SIFT): SIFT on each of three colour channels, concatenated
    (384-D; van de Sande, Gevers & Snoek, TPAMI 2010); gray images are replicated
    into three channels.

    Notes
    -----
    Wang et al. use a 128-D HOG descriptor on 16, 25 and 31 pixel patches every 8
    pixels; this preset uses dense SIFT (also 128-D, 4x4 cells x 8 orientations) on
    16, 24 and 32 pixel patches, sizes that divide into SIFT's 4x4 bins. Images are
    downscaled to at most ``max_size`` = 300 pixels, the bound of ScSPM (Yang et
    al. 2009), the system LLC is compared with.
    """
    pyramid = SpatialPyramid(levels=levels)
    features = ImageEncoder(
        _sift(sizes, step, max_size, color),
        LLC(n_words=n_words, knn=knn, beta=beta, pooling="max", pyramid=pyramid, normalize="l2",
            random_state=random_state),
        fit_descriptors=max_descriptors, n_jobs=n_jobs, random_state=random_state,
    )
    return Pipeline([("features", features), ("svm", _svm("linear", C, random_state))])


@_register(
    "fisher",
    description="multi-scale dense SIFT + PCA 64 + improved Fisher vectors (GMM 256) + 1x1+3x1 pyramid "
                "+ linear SVM",
    citation="Perronnin, Sanchez & Mensink, Improving the Fisher Kernel for Large-Scale Image "
             "Classification, ECCV 2010",
    url="https://doi.org/10.1007/978-3-642-15561-1_11",
    published={"caltech101": {"value": 0.7778, "metric": "mean_class_accuracy",
                              "note": "30 training images per class; the improved Fisher vector as evaluated by "
                                      "Chatfield, Lempitsky, Vedaldi & Zisserman, The devil is in the details, "
                                      "BMVC 2011 (256 Gaussians, 1x1+2x2+3x1 pyramid)"}},
    # 8, 12, 16 px SIFT every 2 px, 64 Gaussians (2 x 64 x 64 x 4 cells = 32,768-D): above a step
    # of 4 px and the scene settings on 2,000 CIFAR-10 images (the preset's figures: BENCHMARKS.md)
    datasets={"cifar10": {"sizes": (8, 12, 16), "step": 2, "max_size": None, "n_components": 64,
                          "pca": 64, "levels": (1, (3, 1))}},
)
def fisher(*, n_components: int = 256, pca: int = 64, sizes=(16, 24, 32), step: int = 8,
           levels=(1, (3, 1)), C: float = 1.0, max_size: int | None = 300, rootsift: bool = True,
           color: str = "gray", max_descriptors: int = 200_000, n_jobs=None,
           random_state=None) -> Pipeline:
    """Improved Fisher vectors (Perronnin et al. 2010; Chatfield et al. 2011).

    Dense SIFT at several ``sizes``, PCA to ``pca`` dimensions, a diagonal GMM with
    ``n_components`` Gaussians, Fisher vectors with respect to means and variances,
    signed square root and L2 normalization per cell of a 1x1 + 3x1 pyramid, linear
    SVM.

    ``color``: ``"gray"`` (the paper's gray SIFT, 128-D), ``"opponent"`` (OpponentSIFT)
    or ``"rgb"`` (RGB-SIFT): SIFT on each of three colour channels, concatenated
    (384-D; van de Sande, Gevers & Snoek, TPAMI 2010); gray images are replicated
    into three channels.
    The PCA step reduces colour descriptors to ``pca`` dimensions too, so the
    Fisher vector keeps its width.

    Notes
    -----
    Perronnin et al. use 128-D SIFT reduced to 64-D by PCA, a 256-Gaussian GMM and
    the 1x1 + 2x2 + 3x1 pyramid on PASCAL VOC; the 2x2 level is left out here to
    halve the dimension. RootSIFT (Arandjelovic & Zisserman 2012) is on by default.
    ``max_size=300`` as the other SIFT presets (images downscaled to at most 300 px,
    Yang et al. 2009).
    """
    pyramid = SpatialPyramid(levels=levels)
    features = ImageEncoder(
        _sift(sizes, step, max_size, color, rootsift=rootsift),
        FisherVector(n_components=n_components, improved=True, pyramid=pyramid, random_state=random_state),
        reducer=DescriptorPCA(n_components=pca, random_state=random_state),
        fit_descriptors=max_descriptors, n_jobs=n_jobs, random_state=random_state,
    )
    return Pipeline([("features", features), ("svm", _svm("linear", C, random_state))])


@_register(
    "vlad",
    description="multi-scale dense SIFT + PCA 64 + VLAD (256 words, intra-normalized) + linear SVM",
    citation="Jegou, Douze, Schmid & Perez, Aggregating local descriptors into a compact image "
             "representation, CVPR 2010; Arandjelovic & Zisserman, All about VLAD, CVPR 2013",
    url="https://doi.org/10.1109/CVPR.2010.5540039",
    # 8, 12, 16 px SIFT every 2 px, 128 words (128 x 64 x 4 cells = 32,768-D): above a step of
    # 4 px and the scene settings on 2,000 CIFAR-10 images (the preset's figures: BENCHMARKS.md)
    datasets={"cifar10": {"sizes": (8, 12, 16), "step": 2, "max_size": None, "n_words": 128,
                          "pca": 64, "levels": (1, (3, 1))}},
)
def vlad(*, n_words: int = 256, pca: int = 64, sizes=(16, 24, 32), step: int = 8,
         levels=(1, (3, 1)), C: float = 1.0, max_size: int | None = 300, rootsift: bool = True,
         color: str = "gray", max_descriptors: int = 200_000, n_jobs=None,
         random_state=None) -> Pipeline:
    """VLAD with intra-normalization.

    Dense RootSIFT, PCA to ``pca`` dimensions, residuals to ``n_words`` k-means words
    summed per word and per pyramid cell, intra-normalized, signed square root and L2,
    linear SVM.

    ``color``: ``"gray"`` (the paper's gray SIFT, 128-D), ``"opponent"`` (OpponentSIFT)
    or ``"rgb"`` (RGB-SIFT): SIFT on each of three colour channels, concatenated
    (384-D; van de Sande, Gevers & Snoek, TPAMI 2010); gray images are replicated
    into three channels.
    The PCA step reduces colour descriptors to ``pca`` dimensions too.

    Notes
    -----
    Jegou et al. use VLAD for retrieval; its use for classification with a spatial
    pyramid follows later comparisons (e.g. Chatfield et al. 2011 for the encodings).
    ``max_size=300`` as the other SIFT presets (Yang et al. 2009).
    """
    pyramid = SpatialPyramid(levels=levels)
    features = ImageEncoder(
        _sift(sizes, step, max_size, color, rootsift=rootsift),
        VLAD(n_words=n_words, intra_normalize=True, power=0.5, pyramid=pyramid, random_state=random_state),
        reducer=DescriptorPCA(n_components=pca, random_state=random_state),
        fit_descriptors=max_descriptors, n_jobs=n_jobs, random_state=random_state,
    )
    return Pipeline([("features", features), ("svm", _svm("linear", C, random_state))])


@_register(
    "coates_kmeans",
    description="6x6 whitened raw patches + k-means triangle coding (1600) + quadrant sum pooling "
                "+ linear SVM",
    citation="Coates, Lee & Ng, An Analysis of Single-Layer Networks in Unsupervised Feature Learning, "
             "AISTATS 2011",
    url="https://proceedings.mlr.press/v15/coates11a.html",
    published={"cifar10": 0.779},
    # the JPEG copy of CIFAR-10: a stronger whitening regularizer, and mirror-symmetric features
    # (a departure from the paper; see the builder's notes)
    datasets={"cifar10": {"whiten_eps": 1.0, "mirror": "symmetric"}},
    notes="CIFAR-10: 77.9% with 1600 features (79.6% with 4000).",
)
def coates_kmeans(*, n_words: int = 1600, patch: int = 6, step: int = 1, whiten_eps: float = 0.1,
                  C: float = 0.002, mirror: bool | str = False, max_size: int | None = 96,
                  max_descriptors: int = 400_000, n_jobs=None,
                  random_state=None) -> Pipeline | MirrorAugmented:
    """Single-layer k-means features (Coates et al. 2011).

    Every ``patch`` x ``patch`` patch (stride ``step``) is brightness and contrast
    normalized and ZCA-whitened (eigenvalue regularizer ``whiten_eps``); k-means
    with ``n_words`` centroids on a sample of the ``max_descriptors`` patches kept
    from the training images (see the module's docstring); the
    "triangle" activation max(0, mean(z) - z_k); sum pooling over the four image
    quadrants; standardization; linear L2-SVM. With ``mirror=True`` (or
    ``"augment"``) the pipeline is wrapped in
    :class:`~classicvision.augment.MirrorAugmented` (trained on every image and its
    mirror, scores averaged over both at test time); with ``mirror="symmetric"``
    the features step is wrapped in :class:`~classicvision.augment.MirrorSymmetric`
    (features of the image plus its mirror: half the rows, and, with the triangle's
    dictionary-wide mean, close to but not exactly the augmented model).
    Images larger than ``max_size`` pixels on their longer side are downscaled
    first (area interpolation; None: no bound).

    Notes
    -----
    * ``max_size=96``: the paper works on 32x32 CIFAR-10 and 96x96 STL-10 images
      (the data set it introduced), and its 6x6 receptive fields and quadrant
      pooling are sized for objects of that scale; 96 is its largest image. It also
      bounds the cost, which grows with the pixel count (every patch at stride 1 is
      coded against every centroid): 8,281 patches per image at 96 px against
      87,025 at 300 px. CIFAR-10 images (32 px) are unaffected.
    * The paper's best CIFAR-10 figure uses 4000 centroids; 1600 is its smaller
      setting and keeps the features (6,400-D) and the training time manageable on
      2 CPU cores.
    * ``C = 0.002``: the authors' code minimizes ``0.5 ||w||^2 + 100 * mean(hinge^2)``
      over 50,000 images, i.e. ``C = 100 / 50000`` in the summed form used here
      (and by LIBLINEAR). Its bias is regularized, ours is not.
    * ``whiten_eps``: 0.1 in the paper (lossless images). The project's CIFAR-10
      copy is JPEG (quality 75), whose block artifacts the whitening amplifies; its
      ``"cifar10"`` setting is 1.0, which scored above 0.1 on a 10,000-image subset
      and on all of CIFAR-10 (both full runs are in BENCHMARKS.md).
    * ``mirror`` is a departure from the paper (which trains on the 50,000 images
      as they are). On all of CIFAR-10 (whitening 1.0), ``"symmetric"`` scored
      above ``"augment"`` at half its memory, and both above no mirrors (the runs
      are in BENCHMARKS.md); hence ``mirror="symmetric"`` in the ``"cifar10"`` setting.
    """
    _check_mirror(mirror)
    pyramid = SpatialPyramid(levels=(2,))
    features = ImageEncoder(
        RawPatches(patch_size=patch, step=step, normalize=True, whiten=True, whiten_eps=whiten_eps,
                   max_size=max_size, random_state=random_state),
        KMeansTriangle(n_words=n_words, pooling="sum", pyramid=pyramid, random_state=random_state),
        fit_descriptors=max_descriptors, n_jobs=n_jobs, random_state=random_state,
    )
    return _linear_on_features(features, C, mirror, random_state)


def _check_mirror(mirror) -> None:
    if mirror not in (False, True, "augment", "symmetric"):
        raise ValueError(f"mirror must be False, True, 'augment' or 'symmetric', got {mirror!r}")


def _linear_on_features(features, C: float, mirror: bool | str, random_state=None) -> Pipeline | MirrorAugmented:
    """features -> in-place standardization -> linear SVM, with the mirror option applied.

    The scaler has chunked statistics (``StandardScaler.fit`` makes a float64 copy of
    the features) and works in place (``copy=False``) on the features step's fresh
    output, which saves one copy of the training features.
    """
    if mirror == "symmetric":
        features = MirrorSymmetric(features)
    pipe = Pipeline([("features", features), ("scale", ChunkedStandardScaler(copy=False)),
                     ("svm", _svm("linear", C, random_state))])
    return MirrorAugmented(pipe) if mirror in (True, "augment") else pipe


@_register(
    "coates_soft_threshold",
    description="6x6 whitened raw patches + soft-threshold coding on 1600 random-patch atoms (sign split) "
                "+ quadrant sum pooling + linear SVM",
    citation="Coates & Ng, The Importance of Encoding Versus Training with Sparse Coding and Vector "
             "Quantization, ICML 2011",
    url="https://www.stanford.edu/~acoates/papers/coatesng_icml_2011.pdf",
    published={"cifar10": {"value": 0.791, "metric": "top1",
                           "note": "random patches as dictionary, soft threshold, 1600 atoms"}},
    # the JPEG copy: whitening regularizer 1.0 as coates_kmeans; mirror-symmetric features (a
    # departure from the paper), above the features without mirrors on 20,000 / 5,000 CIFAR-10
    # images (see the builder's notes)
    datasets={"cifar10": {"whiten_eps": 1.0, "mirror": "symmetric"}},
    notes="CIFAR-10: 79.1% with 1600 random patches as atoms (79.4% with an OMP-1 dictionary, 81.5% "
          "with 6000 atoms).",
)
def coates_soft_threshold(*, n_words: int = 1600, alpha: float = 0.25, dictionary: str = "patches",
                          patch: int = 6, step: int = 1, whiten_eps: float = 0.1, C: float = 0.003,
                          mirror: bool | str = False, max_size: int | None = 96,
                          max_descriptors: int = 400_000, n_jobs=None,
                          random_state=None) -> Pipeline | MirrorAugmented:
    """Single-layer soft-threshold features (Coates & Ng 2011).

    As :func:`coates_kmeans` (contrast-normalized, ZCA-whitened ``patch`` x ``patch``
    patches every ``step`` pixels, sum pooling over the four quadrants, standardization,
    linear L2-SVM), but every patch ``x`` is coded against ``n_words`` unit-norm atoms
    ``d_k`` by the soft threshold ``max(0, d_k . x - alpha)`` and ``max(0, -d_k . x -
    alpha)`` (:class:`~classicvision.encoding.SoftThreshold`): ``8 n_words`` features.
    The paper's point is that the encoder matters more than how the dictionary is
    trained; its default dictionary here is ``n_words`` whitened patches drawn at
    random (``dictionary="kmeans"`` uses normalized k-means centroids).

    ``mirror``: ``False`` (the paper); ``"symmetric"``: the features of an image plus
    those of its mirror (:class:`~classicvision.augment.MirrorSymmetric`: the mirror
    augmentation folded into the features, as wide as without it); ``True`` or
    ``"augment"``: train on every image and its mirror, average the test scores
    (:class:`~classicvision.augment.MirrorAugmented`, twice the rows).

    Notes
    -----
    * The figures of the preset on all of CIFAR-10 (``python -m bench compare
      --dataset cifar10 --pipelines coates_soft_threshold --cnn none``: accuracy,
      time, memory) are in BENCHMARKS.md.
    * The settings were chosen on 20,000 training / 5,000 test CIFAR-10 images
      (whitening 1.0): the random-patch dictionary scored as well as the k-means
      one, and the soft threshold above the triangle of :func:`coates_kmeans`;
      ``"symmetric"`` scored above ``"augment"``, which scored above averaging the
      scores of each test image and its mirror, itself above no mirrors; of
      ``alpha`` 0, 0.1, 0.25 and 0.5, the paper's 0.25 scored best.
    * ``C = 0.003``: on that subset C = 0.0025, 0.005 and 0.01 (symmetric
      features) were a plateau for ``C * n`` between 100 and 200; 0.003 is
      150 / 50,000.
    * ``whiten_eps``: the paper's 0.1 by default; the ``"cifar10"`` setting is the
      1.0 that suits the JPEG copy in :func:`coates_kmeans`.
    * The paper picked C by cross-validation and trained on the unmirrored images.
    * ``max_size=96`` (larger images are downscaled first), as :func:`coates_kmeans`:
      the papers' largest images are the 96x96 STL-10 ones.
    """
    _check_mirror(mirror)
    pyramid = SpatialPyramid(levels=(2,))
    features = ImageEncoder(
        RawPatches(patch_size=patch, step=step, normalize=True, whiten=True, whiten_eps=whiten_eps,
                   max_size=max_size, random_state=random_state),
        SoftThreshold(n_words=n_words, alpha=alpha, dictionary=dictionary, pooling="sum", pyramid=pyramid,
                      random_state=random_state),
        fit_descriptors=max_descriptors, n_jobs=n_jobs, random_state=random_state,
    )
    return _linear_on_features(features, C, mirror, random_state)


@_register(
    "nec2010",
    description="dense SIFT (or multi-scale HOG) + dense LBP, super-vector (and LLC) coding, "
                "1x1+2x2+3x1 pyramid, linear SVM (the NEC-UIUC ILSVRC 2010 recipe at small scale)",
    citation="Lin, Lv, Zhu, Yang, Cour, Yu, Cao & Huang, Large-scale Image Classification: Fast Feature "
             "Extraction and SVM Training, CVPR 2011; Zhou, Yu, Zhang & Huang, Image Classification using "
             "Super-Vector Coding of Local Image Descriptors, ECCV 2010",
    url="https://doi.org/10.1109/CVPR.2011.5995477",
    published={"imagenet": {"value": 1 - 0.282, "metric": "top5",
                            "note": "ILSVRC 2010 test set, top-5 error 28.2% (47.1% top-1 error; Krizhevsky et al. 2012, Table 1); HOG + LBP, "
                                    "LCC + super-vector coding, ASGD, a 1.26 M-image training set"}},
    # 8, 12, 16 px SIFT every 2 px and LBP on 8 px patches every 4 px, 64 words, 1x1 + 3x1 cells
    # (32,000-D), C=0.1; on 2,000 CIFAR-10 images the 1x1 + 2x2 pyramid (40,000-D) was within
    # noise of it for 25% more memory, and C=1 lower; the preset's figures are in BENCHMARKS.md
    datasets={"cifar10": {"sizes": (8, 12, 16), "step": 2, "max_size": None, "n_words": 64,
                          "lbp_cell": 8, "lbp_step": 4, "levels": (1, (3, 1)), "C": 0.1},
              # the paper's descriptors and coders (HOG at two cell sizes, LBP; super-vector and
              # LLC standing in for LCC), its pyramid and its averaged-SGD SVM, with codebooks sized
              # so that 80,000 images of features fit one disk (69,000-D, float16 in the store)
              "imagenet": {"descriptor": "hog", "hog_cells": (8, 16), "n_words": 64, "coding": "supervector+llc",
                           "levels": (1, 2, (3, 1)), "max_size": 300, "solver": "minibatch-asgd",
                           "fit_images": 0.1}},
    notes="ILSVRC 2010 (1000 classes): 71.8% top-5 and 52.9% top-1 accuracy (28.2% / 47.1% error); "
          "no figure on our other datasets.",
)
def nec2010(*, n_words: int = 256, pca: int = 64, sizes=(16, 24, 32), step: int = 8,
            lbp_cell: int = 16, lbp_step: int | None = None, levels=(1, 2, (3, 1)), C: float = 1.0,
            max_size: int | None = 300, color: str = "gray", descriptor: str = "sift", hog_cells=(8, 16),
            coding: str = "supervector", solver: str = "auto", max_descriptors: int = 200_000,
            fit_images=None, n_jobs=None, random_state=None) -> Pipeline:
    """The NEC-UIUC ILSVRC-2010 winner's recipe, scaled down.

    Channels whose features are concatenated: a gradient channel and dense LBP
    histograms on ``lbp_cell`` pixel patches every ``lbp_step`` pixels (default
    ``lbp_cell``: no overlap; it must divide ``lbp_cell``); each coded by super-vector
    coding on ``n_words`` k-means words and pooled over a 1x1, 2x2, 3x1 pyramid; one
    linear SVM on the concatenation. Every channel sees the images downscaled to at
    most ``max_size`` pixels (300, the bound of the other SIFT presets, from Yang et
    al. 2009; not a figure of the NEC papers).

    ``descriptor="sift"`` (the default): the gradient channel is dense SIFT reduced by
    PCA to ``pca`` dimensions; ``color``: ``"gray"`` (the paper's gray SIFT, 128-D),
    ``"opponent"`` (OpponentSIFT) or ``"rgb"`` (RGB-SIFT): SIFT on each of three colour
    channels, concatenated (384-D; van de Sande, Gevers & Snoek, TPAMI 2010); gray
    images are replicated into three channels. (LBP stays on the gray image.)
    ``descriptor="hog"``: the paper's dense HOG instead, one channel per cell size of
    ``hog_cells`` (2x2-cell blocks, 36-D, one block per cell step: dense every cell
    size pixels), its several scales. ``coding="supervector+llc"`` codes every
    gradient channel a second time with LLC on ``n_words`` words (Wang et al. 2010, the
    fast approximation of the LCC the paper used, max pooled), concatenated too: the two
    coders are one ``FeatureUnion`` on the same descriptors, so each image's descriptors
    are extracted once. ``fit_images`` is each channel's
    :class:`~classicvision.encoding.ImageEncoder` ``fit_images``: the training images
    the codebooks (and PCA) are fitted on (None: all of them; a float: that fraction).
    ``solver`` is the :class:`~classicvision.kernels.LinearSVM` solver; ``"asgd"`` and
    ``"minibatch-asgd"`` are the paper's averaged stochastic gradient descent, out of
    core (the second on all classes at once: the one that scales to 1,000 classes).

    The ``"imagenet"`` setting (``make_preset("nec2010", dataset="imagenet")``, chosen
    by ``compare --dataset imagenet``) is this recipe: HOG at 8 and 16 px cells and LBP,
    super-vector and LLC coding on 64 words, the 1x1 + 2x2 + 3x1 pyramid, mini-batch ASGD,
    codebooks fitted on a 10% sample of the training images (the ``max_descriptors``
    descriptors spread over them), so that fitting costs a tenth of one extraction pass.

    Notes
    -----
    The winning system used HOG and LBP descriptors, both LCC and super-vector coding
    with far larger codebooks, and trained on 1.2 million images with averaged
    stochastic gradient descent; this preset keeps the structure
    (two descriptors, super-vector coding, the same pyramid, linear SVM) at a scale
    that runs on a laptop. It trains one SVM on the concatenated features, where the
    paper combined the scores of classifiers trained per feature.
    """
    if descriptor not in ("sift", "hog"):
        raise ValueError(f"descriptor must be 'sift' or 'hog', got {descriptor!r}")
    if coding not in ("supervector", "supervector+llc"):
        raise ValueError(f"coding must be 'supervector' or 'supervector+llc', got {coding!r}")
    pyramid = SpatialPyramid(levels=levels)

    def encoder(extractor, coder, reducer=None):
        return ImageEncoder(extractor, coder, reducer=reducer, fit_images=fit_images,
                            fit_descriptors=max_descriptors, n_jobs=n_jobs, random_state=random_state)

    def supervector():
        return SuperVector(n_words=n_words, pyramid=pyramid, random_state=random_state)

    def gradient_coder():
        if coding == "supervector":
            return supervector()
        return FeatureUnion([("supervector", supervector()),
                             ("llc", LLC(n_words=n_words, pyramid=pyramid, random_state=random_state))])

    if descriptor == "sift":
        gradients = [("sift", _sift(sizes, step, max_size, color),
                      DescriptorPCA(n_components=pca, random_state=random_state))]
    else:
        gradients = [(f"hog{c}", HOG(pixels_per_cell=int(c), cells_per_block=2, output="descriptors",
                                     max_size=max_size), None) for c in hog_cells]
    channels = [(name, encoder(ext, gradient_coder(), red)) for name, ext, red in gradients]
    lbp = encoder(LBP(output="descriptors", cell_size=lbp_cell, step=lbp_step, method="uniform",
                      max_size=max_size), supervector())
    features = FeatureUnion([*channels, ("lbp", lbp)])
    svm = LinearSVM(C=C, solver=solver, random_state=random_state)
    return Pipeline([("features", features), ("svm", svm)])


@_register(
    "cnn_features_svm",
    description="pooled penultimate features of a CNN trained on the training images + L2 normalization "
                "+ linear SVM (CNN features for the classic classifier)",
    citation="Razavian, Azizpour, Sullivan & Carlsson, CNN Features off-the-shelf: an Astounding Baseline "
             "for Recognition, CVPR Workshops 2014; Donahue et al., DeCAF: A Deep Convolutional Activation "
             "Feature for Generic Visual Recognition, ICML 2014",
    url="https://arxiv.org/abs/1403.6382",
    notes="The papers take an ImageNet-trained network frozen (pretrained='imagenet', train=False); "
          "without such weights the network is trained on the training images first. No figure on our "
          "datasets in either paper.",
)
def cnn_features_svm(*, model: str = "resnet20", pretrained: str | None = None, train: bool = True,
                     layer: str = "pre_logits", epochs: int = 15, image_size: int = 32, C: float = 1.0,
                     device: str = "auto", n_jobs=None, random_state=None) -> Pipeline:
    """CNN features off the shelf for a linear SVM: the bridge between the two eras.

    A :class:`cnn.CNNFeatures` step (the pooled input of the network's last linear
    layer, DeCAF's "fc7" for AlexNet-like nets, the global-average-pooled map for
    ResNets), each row L2-normalized as Razavian et al. do, then the project's linear
    SVM. ``train=True`` trains ``model`` on the training images for ``epochs`` epochs
    first (from ``pretrained`` weights when given: fine-tuning); ``train=False`` uses
    the ``pretrained`` network frozen, which is the papers' setting.

    Parameters
    ----------
    model : str, default="resnet20"
        A registered CNN (``python -m bench list``).
    pretrained : None, "imagenet" or path, default=None
        Weights to start from (see :class:`cnn.CNNFeatures`); required with ``train=False``.
    train : bool, default=True
        Train (or fine-tune) the network on the labelled training images.
    layer : {"pre_logits", "pooled"}, default="pre_logits"
        Which activations are the features (see :class:`cnn.CNNFeatures`).
    epochs : int, default=15
        Training epochs (``train=True``).
    image_size : int, default=32
        Side of the network input (every image is resized to ``image_size`` x
        ``image_size``; 32 for the CIFAR ResNets, 224 for the ImageNet families).
    C : float, default=1.0
        The linear SVM's C.
    device : str, default="auto"
        Where the network runs (CUDA when present).
    n_jobs : ignored
        Kept for the common preset interface (the network uses torch's threads).
    random_state : int or None
        Seeds the network's training and the SVM.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``features`` (CNNFeatures) -> ``normalize`` (Normalizer, L2) -> ``svm`` (LinearSVM).

    References
    ----------
    .. [1] Razavian, Azizpour, Sullivan & Carlsson, CNN Features off-the-shelf: an
       Astounding Baseline for Recognition, CVPR Workshops 2014.
    .. [2] Donahue, Jia, Vinyals, Hoffman, Zhang, Tzeng & Darrell, DeCAF, ICML 2014.
    """
    from cnn.features import CNNFeatures  # the classic track imports torch only for this preset

    features = CNNFeatures(model=model, pretrained=pretrained, train=train, layer=layer, epochs=epochs,
                           input_size=image_size, device=device, random_state=random_state)
    return Pipeline([("features", features), ("normalize", Normalizer()),
                     ("svm", _svm("linear", C, random_state))])
