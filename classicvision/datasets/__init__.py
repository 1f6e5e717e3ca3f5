"""Dataset loaders: every one returns a :class:`sklearn.utils.Bunch` with ``images``,
``target``, ``target_names`` and ``filenames``.

Images are one ``(N, H, W[, 3])`` ``uint8`` array when they all share a shape,
else a list of ``(H, W)`` / ``(H, W, 3)`` ``uint8`` arrays.

Decoders refuse images larger than :data:`MAX_IMAGE_PIXELS` (read from the
file header before decoding; ``max_pixels=`` overrides it per call, and
assigning ``classicvision.datasets.MAX_IMAGE_PIXELS`` for the process).

=========================  ====================================================
:func:`load_digits_images`  scikit-learn's 8x8 digits with a fixed split
:func:`load_image_folder`   ImageFolder directories and tar archives
:func:`load_cifar10`        CIFAR-10 (official python format, or ImageFolder copy)
:func:`load_cifar100`       CIFAR-100 (official python format), fine or coarse labels
:func:`load_scene15`        15-Scene (ImageFolder copy)
:func:`load_imagenet`       ImageNet / ILSVRC layout (``train/<wnid>/``, ``val/`` + ground truth)
:class:`LazyImages`         images listed now, decoded on access (``lazy=True``)
:func:`load_dataset`        any of the above by name (:data:`DATASETS`)
:func:`dataset_root`        where a named dataset is read from (``$CLASSICVISION_DATA``)
:func:`split_per_class`     reproducible per-class train/test split
=========================  ====================================================
"""

from ._cache import clear_cache, get_cache_dir, is_cache_entry
from ._cifar import CIFAR10_MD5, CIFAR10_URL, download_file, load_cifar10
from ._cifar100 import CIFAR100_MD5, CIFAR100_URL, load_cifar100
from ._decode import MAX_IMAGE_PIXELS, decode_image, read_image
from ._digits import load_digits_images
from ._folder import load_image_folder
from ._imagenet import load_imagenet
from ._lazy import LazyImages
from ._registry import DATASETS, dataset_root, load_dataset, load_scene15
from ._split import split_per_class

__all__ = [
    "DATASETS",
    "LazyImages",
    "MAX_IMAGE_PIXELS",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CIFAR100_MD5",
    "CIFAR100_URL",
    "clear_cache",
    "dataset_root",
    "decode_image",
    "download_file",
    "get_cache_dir",
    "is_cache_entry",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_digits_images",
    "load_image_folder",
    "load_imagenet",
    "load_scene15",
    "read_image",
    "split_per_class",
]
