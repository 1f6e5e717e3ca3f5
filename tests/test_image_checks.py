"""Float images must be finite and in [0, 1]: the extractors refuse others by name."""

from __future__ import annotations

import numpy as np
import pytest

from classicvision.features import HOG, LBP, DenseSIFT

EXTRACTORS = [DenseSIFT, HOG, LBP]


def _images(dtype=np.float32):
    rng = np.random.default_rng(0)
    return [rng.random((24, 24)).astype(dtype), rng.random((24, 24, 3)).astype(dtype)]


@pytest.mark.parametrize("extractor", EXTRACTORS, ids=lambda e: e.__name__)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_images_are_refused_by_name(extractor, bad):
    images = _images()
    images[1][5, 7, 2] = bad
    with pytest.raises(ValueError, match=r"image 1 \(b\.png\) has non-finite values \(NaN or infinity\)"):
        extractor().fit_transform(images, filenames=["a.png", "b.png"])
    with pytest.raises(ValueError, match=r"^image 1 has non-finite values"):
        extractor().fit(images[:1]).transform(images)


@pytest.mark.parametrize("extractor", EXTRACTORS, ids=lambda e: e.__name__)
def test_float_images_outside_0_1_are_refused_by_name(extractor):
    rng = np.random.default_rng(1)
    scaled = (rng.random((24, 24)) * 255).astype(np.float64)  # 0-255 floats, a common slip
    with pytest.raises(ValueError, match=r"image 0 \(x\.jpg\) has float values outside \[0, 1\] "
                                         r"\(min .*, max 2.*\).*divide 0-255 images by 255"):
        extractor().fit_transform([scaled], filenames=["x.jpg"])
    negative = rng.random((24, 24)).astype(np.float32) - 0.25
    with pytest.raises(ValueError, match=r"image 0 has float values outside \[0, 1\] \(min -0\.2"):
        extractor().fit_transform([negative])


@pytest.mark.parametrize("extractor", EXTRACTORS, ids=lambda e: e.__name__)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_valid_float_images_are_accepted(extractor, dtype):
    rng = np.random.default_rng(2)
    u8 = rng.integers(0, 256, size=(3, 24, 24), dtype=np.uint8)
    u8[0, 0, 0], u8[0, 0, 1] = 0, 255  # both ends of the range are valid
    floats = (u8 / 255.0).astype(dtype)
    out = extractor().fit_transform(floats)
    assert len(out) == 3
    arrays = [out] if isinstance(out, np.ndarray) else [s.descriptors for s in out]
    assert all(a.size and np.isfinite(a).all() for a in arrays)


def test_check_image_makes_no_full_size_float_copy():
    from classicvision.base import check_image, check_images

    img = np.random.default_rng(3).random((64, 64, 3))
    out = check_image(img)
    assert np.shares_memory(out, img)  # a valid float image is passed through, not converted
    stack = np.random.default_rng(4).random((2, 16, 16)).astype(np.float32)
    assert all(np.shares_memory(o, stack) for o in check_images(stack))
    stack[1, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"image 1 \(s\.png\) has non-finite"):
        check_images(stack, filenames=["r.png", "s.png"])


def test_base_is_a_public_submodule():
    import classicvision
    from classicvision import base

    assert {"base", "augment", "preprocessing"} <= set(classicvision.__all__)
    assert classicvision.base is base and classicvision.augment.MirrorAugmented
    assert {"DescriptorSet", "check_image", "check_images", "image_list"} <= set(base.__all__)
    assert all(hasattr(base, name) for name in base.__all__)
