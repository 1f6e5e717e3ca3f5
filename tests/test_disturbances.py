"""classicvision.disturbances: shape, dtype, determinism and strength of every disturbance."""

import numpy as np
import pytest

from classicvision.disturbances import (
    DISTURBANCES,
    GROUPS,
    SEVERITIES,
    disturb,
    disturb_batch,
    disturbance_params,
)

RANDOM_KINDS = ("occlusion", "rotation", "perspective", "scale", "gaussian_noise")


def _image(shape, seed=0):
    """A textured image with no pixel at the occlusion grey (128): smooth gradients plus noise."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    base = 40 + 150 * (xx / max(1, w - 1)) * (0.5 + 0.5 * np.sin(yy / 3.0)) ** 2
    img = base[..., None] + rng.normal(0, 25, (h, w, 1 if len(shape) == 2 else shape[2]))
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    img[img == 128] = 127
    return img[..., 0] if len(shape) == 2 else img


@pytest.mark.parametrize("shape", [(32, 32), (33, 47, 3), (24, 40, 1)])
@pytest.mark.parametrize("kind", list(DISTURBANCES))
def test_every_severity_keeps_shape_dtype_is_deterministic_and_disturbs(kind, shape):
    img = _image(shape)
    before = img.copy()
    for sev in SEVERITIES:
        out = disturb(img, kind, sev, random_state=3)
        assert out.shape == img.shape and out.dtype == np.uint8, (kind, sev)
        np.testing.assert_array_equal(out, disturb(img, kind, sev, random_state=3))
        assert (out != img).any(), f"{kind} at severity {sev} left the {shape} image unchanged"
    np.testing.assert_array_equal(img, before)  # the input is never written to


@pytest.mark.parametrize("kind", ["gaussian_noise", "occlusion"])
def test_another_seed_draws_another_disturbance(kind):
    img = _image((32, 32, 3))
    assert (disturb(img, kind, 3, random_state=1) != disturb(img, kind, 3, random_state=2)).any()


@pytest.mark.parametrize("kind", ["brightness", "contrast", "gamma", "gaussian_blur", "jpeg"])
def test_deterministic_disturbances_ignore_the_seed(kind):
    img = _image((32, 32, 3))
    np.testing.assert_array_equal(disturb(img, kind, 4, random_state=1), disturb(img, kind, 4, random_state=99))


@pytest.mark.parametrize("kind", ["brightness", "contrast", "gamma", "occlusion", "rotation", "gaussian_blur",
                                  "gaussian_noise"])
def test_strength_grows_with_severity(kind):
    """One generator per image, whatever the severity: severity 5 is severity 1 made stronger."""
    img = _image((48, 48, 3))
    change = [np.abs(disturb(img, kind, s, random_state=5).astype(int) - img).mean() for s in SEVERITIES]
    assert all(a < b for a, b in zip(change, change[1:])), change


@pytest.mark.parametrize("severity", SEVERITIES)
def test_occlusion_covers_its_share_of_the_image(severity):
    img = _image((40, 50))
    area = disturbance_params("occlusion", severity)["area"]
    assert area == pytest.approx(0.1 * severity)
    for seed in range(5):
        out = disturb(img, "occlusion", severity, random_state=seed)
        grey = out == 128
        assert abs(grey.mean() - area) <= 50 / 2000  # within one row of the box, rounded
        rows, cols = np.nonzero(grey)  # one solid rectangle
        assert grey[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_protocol_parameters_and_scaling_by_image_size():
    assert [disturbance_params("gaussian_noise", s)["sigma"] for s in SEVERITIES] == [0.04, 0.06, 0.08, 0.09, 0.10]
    assert [disturbance_params("jpeg", s)["quality"] for s in SEVERITIES] == [80, 65, 58, 50, 40]
    assert [disturbance_params("contrast", s)["factor"] for s in SEVERITIES] == [0.75, 0.5, 0.4, 0.3, 0.15]
    # the blur's sigma is in CIFAR pixels: scaled by the shorter side / 32
    assert disturbance_params("gaussian_blur", 1, (32, 32))["sigma_px"] == pytest.approx(0.4)
    assert disturbance_params("gaussian_blur", 1, (256, 320, 3))["sigma_px"] == pytest.approx(3.2)
    assert set(GROUPS) == set(DISTURBANCES)
    assert set(GROUPS.values()) == {"illumination", "occlusion", "viewpoint", "blur", "noise", "compression"}


def test_brightness_contrast_and_gamma_values():
    img = np.full((8, 8, 3), 100, dtype=np.uint8)
    img[0, 0] = (200, 50, 0)
    out = disturb(img, "brightness", 5)  # HSV value + 0.3: grey 100 -> 100 + 76.5
    assert out[4, 4].tolist() == [177, 177, 177]
    assert out[0, 0, 0] == 255 and out[0, 0, 2] == 0  # hue kept: the max channel grows, zero stays
    gray = np.array([[0, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(disturb(gray, "contrast", 2), [[64, 191]])  # (x - 0.5) * 0.5 + 0.5
    np.testing.assert_array_equal(disturb(np.array([[0, 128, 255]], np.uint8), "gamma", 3), [[0, 64, 255]])


def test_bad_names_severities_and_images_fail_naming_the_valid_ones():
    img = _image((16, 16))
    with pytest.raises(ValueError, match="unknown disturbance 'fog'; valid: brightness, contrast"):
        disturb(img, "fog", 1)
    for bad in (0, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match=r"severity must be one of 1, 2, 3, 4, 5"):
            disturb(img, "jpeg", bad)
    with pytest.raises(TypeError, match="must be uint8, got dtype float64"):
        disturb(img / 255.0, "jpeg", 1)
    with pytest.raises(ValueError, match=r"shape \(H, W\), \(H, W, 1\) or \(H, W, 3\)"):
        disturb(np.zeros((4, 4, 4), np.uint8), "jpeg", 1)
    with pytest.raises(ValueError, match="unknown disturbance"):
        disturbance_params("snow", 1)


def test_batch_of_an_array_and_of_a_list():
    batch = np.stack([_image((20, 20, 3), seed=i) for i in range(6)])
    out = disturb_batch(batch, "gaussian_noise", 2, random_state=11)
    assert isinstance(out, np.ndarray) and out.shape == batch.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, disturb_batch(batch, "gaussian_noise", 2, random_state=11))
    # an image's disturbance depends on the seed and its position only
    np.testing.assert_array_equal(out[:3], disturb_batch(batch[:3], "gaussian_noise", 2, random_state=11))
    child = np.random.SeedSequence(11).spawn(6)[4]
    np.testing.assert_array_equal(out[4], disturb(batch[4], "gaussian_noise", 2, random_state=np.random.default_rng(child)))
    assert not (out[0] == out[1]).all()  # every image has its own noise
    images = [_image((20, 30)), _image((15, 12, 3))]
    listed = disturb_batch(images, "rotation", 5, random_state=0)
    assert isinstance(listed, list) and [im.shape for im in listed] == [(20, 30), (15, 12, 3)]
    assert disturb_batch(batch[:0], "jpeg", 1).shape == (0, 20, 20, 3)
    with pytest.raises(TypeError, match="image 1: image must be uint8"):
        disturb_batch([images[0], images[1].astype(np.float32)], "jpeg", 1)
