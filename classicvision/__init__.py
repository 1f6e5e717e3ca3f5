"""classicvision: the classic image-classification pipeline as scikit-learn steps.

Submodules
----------
base           the shared types and checks: ``DescriptorSet``, ``check_image(s)``, ``image_list``
datasets       dataset loaders returning one ``Bunch`` (images, target, target_names)
features       local feature extractors (dense SIFT, HOG, LBP, color SIFT, raw patches)
encoding       codebooks and encoders (VQ, soft VQ, sparse coding, LLC, Fisher, VLAD, ...)
pooling        spatial pyramids and sum / max pooling
kernels        additive kernels, explicit kernel maps and kernel SVMs
presets        ``make_preset(name)``: the published systems as unfitted pipelines
metrics        ``classification_report``: one report for both tracks
augment        mirror augmentation: ``MirrorAugmented``, ``MirrorSymmetric``
preprocessing  ``ChunkedStandardScaler``: standardization with bounded memory
store          ``FeatureStore``: features on disk, chunked and resumable; ``fit_chunked``,
               ``to_streaming``: the classifier out of core
utils          ``utils.validation``: parameter constraints and ``fit_context`` for estimators;
               ``utils.parallel.dask_backend``: the joblib work on a Dask cluster
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "base",
    "datasets",
    "features",
    "encoding",
    "pooling",
    "kernels",
    "presets",
    "metrics",
    "augment",
    "preprocessing",
    "store",
    "utils",
)

__all__ = list(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
