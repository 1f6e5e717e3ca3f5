"""Presets: registry, overrides, and every preset fitted end to end at small scale."""

import pickle

import cv2
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from classicvision.datasets import load_digits_images
from classicvision.presets import PRESETS, make_preset, preset_names, preset_params

EXPECTED = {"hog_svm", "lbp_svm", "lazebnik_spm", "scspm", "llc", "fisher", "vlad",
            "coates_kmeans", "coates_soft_threshold", "nec2010"}

# Small settings so that every preset fits in seconds on 48x48 digits; the structure
# (extractor, encoder, pyramid, classifier) stays the preset's own.
SMALL = {
    "hog_svm": dict(n_components=100),
    "lbp_svm": dict(),
    "lazebnik_spm": dict(n_words=16),
    "scspm": dict(n_words=16, features__encoder__max_iter=20),
    "llc": dict(n_words=16, sizes=(16, 24)),
    "fisher": dict(n_components=4, pca=16, sizes=(16, 24)),
    "vlad": dict(n_words=8, pca=16, sizes=(16, 24)),
    "coates_kmeans": dict(n_words=32, step=3, C=0.1),
    "coates_soft_threshold": dict(n_words=32, step=3, C=0.1),
    "nec2010": dict(n_words=8, pca=16, sizes=(16, 24)),
}


@pytest.fixture(scope="module")
def digits48():
    """300 train / 150 test digits, upscaled to 48x48 so 16-32 px patches fit."""
    bunch = load_digits_images()
    images = np.stack([cv2.resize(im, (48, 48), interpolation=cv2.INTER_LINEAR) for im in bunch.images])
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(images))[:450]
    return images[idx[:300]], bunch.target[idx[:300]], images[idx[300:]], bunch.target[idx[300:]]


def test_registry_lists_the_published_systems():
    assert EXPECTED <= set(PRESETS)
    assert preset_names() == sorted(PRESETS)
    for name, info in PRESETS.items():
        assert info["description"] and info["citation"] and info["url"].startswith("http")
        for dataset, figure in info["published"].items():
            assert dataset in {"cifar10", "scene15", "caltech101", "imagenet"}
            if isinstance(figure, dict):  # a figure that names its metric
                assert figure["metric"] in {"top1", "top5", "mean_class_accuracy"} and figure["note"]
                figure = figure["value"]
            assert 0 < figure < 1
        assert isinstance(info["datasets"], dict)
    # the 15-Scene papers report the mean per-class recognition rate, not top-1
    for name in ("lazebnik_spm", "scspm"):
        assert PRESETS[name]["published"]["scene15"]["metric"] == "mean_class_accuracy"


# The presets sized for 32x32 images, and small codebooks for the fit test below.
CIFAR = {
    "lbp_svm": dict(),
    "lazebnik_spm": dict(n_words=8),
    "scspm": dict(n_words=8, features__encoder__max_iter=20),
    "llc": dict(n_words=8),
    "fisher": dict(n_components=2, pca=16),
    "vlad": dict(n_words=4, pca=16),
    "nec2010": dict(n_words=4, pca=16),
}


@pytest.fixture(scope="module")
def stripes32():
    """24 train / 12 test 32x32 images: noisy horizontal (class 0) or vertical (class 1) stripes."""
    rng = np.random.default_rng(0)
    n = 36
    y = np.arange(n) % 2
    period = rng.integers(3, 7, n)
    ramp = (np.arange(32)[None, :] // period[:, None]) % 2 * 200.0
    images = np.where(y[:, None, None] == 0, ramp[:, :, None], ramp[:, None, :])
    images = np.clip(images + rng.normal(0, 20, images.shape), 0, 255).astype(np.uint8)
    return images[:24], y[:24], images[24:], y[24:]


def test_every_small_image_preset_has_cifar10_settings():
    assert {n for n, info in PRESETS.items() if "cifar10" in info["datasets"]} >= set(CIFAR)


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar10_settings_fit_and_predict_on_32px_images(name, stripes32):
    settings = PRESETS[name]["datasets"]["cifar10"]
    pipe = make_preset(name, dataset="cifar10", **CIFAR[name])
    effective = preset_params(name, dataset="cifar10", **CIFAR[name])
    for key, value in settings.items():  # the settings apply unless overridden
        assert effective[key] == (CIFAR[name].get(key, value))
    assert effective != preset_params(name)
    if name != "lbp_svm":  # the SIFT presets: small patches, no downscaling, linear SVM
        extractor = pipe.get_params()["features__sift__extractor" if name == "nec2010" else "features__extractor"]
        assert max(extractor.sizes) <= 16 and extractor.max_size is None
    assert type(pipe.steps[-1][1]).__name__ == "LinearSVM"
    Xtr, ytr, Xte, yte = stripes32
    pipe.fit(Xtr, ytr)
    scores = pipe.decision_function(Xte)
    assert scores.shape == (len(Xte),) and np.all(np.isfinite(scores))
    assert np.mean(pipe.predict(Xte) == yte) > 0.7  # chance is 0.5


def test_explicit_overrides_beat_dataset_settings():
    settings = PRESETS["lazebnik_spm"]["datasets"]["cifar10"]
    assert settings["patch"] != 12
    pipe = make_preset("lazebnik_spm", dataset="cifar10", patch=12, features__extractor__step=3)
    params = pipe.get_params()
    assert params["features__extractor__sizes"] == (12,) and params["features__extractor__step"] == 3
    assert params["features__extractor__max_size"] == settings["max_size"]  # the rest still applies
    assert preset_params("lazebnik_spm", dataset="cifar10", patch=12)["patch"] == 12


def test_datasets_without_settings_give_the_defaults():
    default = preset_params("lazebnik_spm")
    assert default["patch"] == 16 and default["svm"] == "intersection"
    for dataset in ("scene15", "no_such_dataset", None):
        assert preset_params("lazebnik_spm", dataset=dataset) == default
    assert preset_params("hog_svm", dataset="cifar10") == preset_params("hog_svm")  # hog_svm has none
    with pytest.raises(ValueError, match="unknown override"):
        preset_params("lazebnik_spm", dataset="cifar10", n_wordz=3)


def test_lazebnik_follows_the_paper_on_caltech_and_keeps_cifar():
    # one-versus-all machines (Lazebnik et al. 2006), C from cross-validation on training images
    svm = make_preset("lazebnik_spm").named_steps["svm"]
    assert svm.multi_class == "ovr" and svm.C == 3.0
    assert preset_params("lazebnik_spm", dataset="caltech101")["n_words"] == 200  # the paper's M
    assert preset_params("lazebnik_spm", dataset="scene15")["n_words"] == 400
    assert preset_params("lazebnik_spm", dataset="cifar10")["C"] == 1.0  # CIFAR-10's figure unchanged


def test_llc_uses_the_papers_codebook_on_caltech():
    # Wang et al. 2010, Table 1: 2048 words for Caltech-101; the other datasets keep 1024
    assert preset_params("llc", dataset="caltech101")["n_words"] == 2048
    assert preset_params("llc", dataset="scene15")["n_words"] == 1024
    assert preset_params("llc", dataset="cifar10")["n_words"] == 1024
    assert make_preset("llc", dataset="caltech101").named_steps["features"].encoder.n_words == 2048


def test_dataset_settings_are_checked_at_registration():
    from classicvision.presets import _register

    def builder(*, a=1):
        return None

    with pytest.raises(RuntimeError, match="unknown parameters.*'b'"):
        _register("test_only_preset", description="", citation="", url="",
                  datasets={"cifar10": {"b": 2}})(builder)
    assert "test_only_preset" not in PRESETS


def test_lazebnik_kernel_map_needs_a_linear_svm():
    pipe = make_preset("lazebnik_spm", svm="linear", kernel_map="intersection")
    assert type(pipe.named_steps["kernel_map"]).__name__ == "HomogeneousKernelMap"
    with pytest.raises(ValueError, match="needs svm='linear'"):
        make_preset("lazebnik_spm", kernel_map="intersection")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_make_preset_builds_an_unfitted_pipeline(name):
    pipe = make_preset(name)
    assert isinstance(pipe, Pipeline)
    assert pipe.steps[0][0] == "features"
    assert hasattr(pipe.steps[-1][1], "decision_function")
    clone(pipe)  # parameters round-trip
    assert pipe.get_params()["features"] is pipe.steps[0][1]


def test_unknown_preset_lists_close_matches():
    with pytest.raises(ValueError, match="unknown preset 'fisherr'.*did you mean fisher"):
        make_preset("fisherr")


def test_overrides_direct_nested_and_unknown():
    pipe = make_preset("lazebnik_spm", n_words=50, svm__C=3.0)
    assert pipe.get_params()["features__encoder__n_words"] == 50
    assert pipe.get_params()["svm__C"] == 3.0
    with pytest.raises(ValueError, match="unknown override.*n_wordz"):
        make_preset("lazebnik_spm", n_wordz=50)
    with pytest.raises(ValueError, match="svm must be"):
        make_preset("lazebnik_spm", svm="quadratic")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_fits_and_predicts(name, digits48):
    Xtr, ytr, Xte, yte = digits48
    seeded = {} if name == "lbp_svm" else {"random_state": 0}  # lbp_svm has nothing random
    pipe = make_preset(name, **seeded, **SMALL[name])
    pipe.fit(Xtr, ytr)
    scores = pipe.decision_function(Xte)
    assert scores.shape == (len(Xte), 10)
    assert np.all(np.isfinite(scores))
    acc = np.mean(pipe.predict(Xte) == yte)
    assert acc > 0.6, f"{name}: {acc:.3f}"  # chance is 0.1
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_allclose(again.decision_function(Xte[:5]), scores[:5], rtol=1e-5, atol=1e-6)


def test_preset_is_reproducible_and_grid_searchable(digits48):
    Xtr, ytr, Xte, _ = digits48
    a = make_preset("lazebnik_spm", random_state=0, n_words=16).fit(Xtr, ytr).decision_function(Xte)
    b = make_preset("lazebnik_spm", random_state=0, n_words=16).fit(Xtr, ytr).decision_function(Xte)
    np.testing.assert_array_equal(a, b)
    search = GridSearchCV(make_preset("lbp_svm"), {"svm__C": [0.1, 1.0]}, cv=2)
    search.fit(Xtr[:120], ytr[:120])
    assert search.best_params_["svm__C"] in (0.1, 1.0)


@pytest.mark.parametrize("mirror", ["symmetric", "augment"])
def test_coates_soft_threshold_mirror_modes(mirror, stripes32):
    Xtr, ytr, Xte, yte = stripes32
    pipe = make_preset("coates_soft_threshold", n_words=16, step=2, mirror=mirror, random_state=0)
    if mirror == "symmetric":
        assert type(pipe.named_steps["features"]).__name__ == "MirrorSymmetric"
        assert pipe.named_steps["scale"].copy is False  # standardized in place, no copy of the features
    else:
        assert type(pipe).__name__ == "MirrorAugmented"
    pipe.fit(Xtr, ytr)
    scores = pipe.decision_function(Xte)
    # both are mirror-invariant classifiers: a mirrored test image gets the same score
    np.testing.assert_allclose(pipe.decision_function(Xte[:, :, ::-1]), scores, rtol=1e-4, atol=1e-4)
    assert np.mean(pipe.predict(Xte) == yte) > 0.7
    for name in ("coates_soft_threshold", "coates_kmeans"):
        assert preset_params(name, dataset="cifar10")["mirror"] == "symmetric"
    with pytest.raises(ValueError, match="mirror must be"):
        make_preset("coates_soft_threshold", mirror="both")


def test_too_small_images_are_named_in_the_error():
    tiny = np.zeros((4, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="image 0 .*8x8"):
        make_preset("lazebnik_spm", n_words=2).fit(tiny, [0, 1, 0, 1])


# ----------------------------------------------------------------- settings follow the images
from classicvision.presets import SMALL_IMAGE_SIDE, median_image_side, setting_for  # noqa: E402

WITH_SMALL = sorted(n for n, info in PRESETS.items() if "cifar10" in info["datasets"])


def test_small_images_get_the_small_image_settings_whatever_the_dataset_name():
    assert WITH_SMALL and SMALL_IMAGE_SIDE == 64
    for name in WITH_SMALL:
        cifar = preset_params(name, dataset="cifar10")
        assert preset_params(name, dataset="folder", image_side=32) == cifar
        assert preset_params(name, image_side=SMALL_IMAGE_SIDE) == cifar
        assert setting_for(name, dataset="folder", image_side=32) == "cifar10"
        # large images: the paper's defaults; a dataset with settings keeps them (figures hold)
        assert preset_params(name, dataset="folder", image_side=300) == preset_params(name)
        assert preset_params(name, image_side=SMALL_IMAGE_SIDE + 1) == preset_params(name)
        assert preset_params(name, dataset="cifar10", image_side=300) == cifar
        assert setting_for(name, dataset="folder", image_side=300) is None
    # explicit overrides still win over the small-image settings
    params = preset_params("lazebnik_spm", dataset="folder", image_side=32, patch=12)
    assert params["patch"] == 12 and params["step"] == 2
    pipe = make_preset("lazebnik_spm", dataset="folder", image_side=32, patch=12)
    assert pipe.get_params()["features__extractor__sizes"] == (12,)
    assert pipe.get_params()["features__extractor__max_size"] is None  # the rest of the setting applies
    # presets without small-image settings, and no size given: the defaults
    assert setting_for("hog_svm", dataset="folder", image_side=32) is None
    assert setting_for("lazebnik_spm", dataset="folder") is None
    with pytest.raises(ValueError, match="image_side must be a positive number"):
        setting_for("lazebnik_spm", image_side=0)
    with pytest.raises(ValueError, match="unknown preset"):
        setting_for("lazebnik", image_side=32)


def test_median_image_side_reads_shapes_only():
    assert median_image_side(np.zeros((3, 32, 48, 3), np.uint8)) == 48.0
    images = [np.zeros((300, 250), np.uint8), np.zeros((200, 400, 3), np.uint8), np.zeros((20, 10), np.uint8)]
    assert median_image_side(images) == 300.0
    assert median_image_side(images[:2]) == 350.0
    with pytest.raises(ValueError, match="at least one image"):
        median_image_side([])
    with pytest.raises(ValueError, match="image 1 has shape"):
        median_image_side([np.zeros((4, 4)), np.zeros(4)])


# ------------------------------------------------------------------------- size bounds
# Settings small enough to fit each preset's features step in about a second on digits48.
BOUND_SMALL = {**SMALL, "coates_kmeans": dict(n_words=8, step=3), "coates_soft_threshold": dict(n_words=8, step=3),
               "lazebnik_spm": dict(n_words=8), "scspm": dict(n_words=8, features__encoder__max_iter=5)}


@pytest.fixture(scope="module")
def photo1000x800():
    """One smooth 1000x800 (H x W) colour 'photo' with structure at every scale."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (25, 20, 3)).astype(np.uint8)
    photo = cv2.resize(base, (800, 1000), interpolation=cv2.INTER_CUBIC)
    return np.clip(photo.astype(np.int16) + rng.integers(-20, 21, photo.shape), 0, 255).astype(np.uint8)


def _downscaled(image, bound):
    from classicvision.features._common import resize_max_side

    return resize_max_side(image, bound)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_extracts_from_images_at_most_its_bound(name, digits48, photo1000x800):
    params = preset_params(name)
    Xtr = digits48[0][:30]
    seeded = {} if name == "lbp_svm" else {"random_state": 0}
    features = make_preset(name, **seeded, **BOUND_SMALL[name]).steps[0][1]
    features.fit(Xtr)
    if name == "hog_svm":  # resized to image_size x image_size: bounded already, no max_size
        assert "max_size" not in params and params["image_size"] == 32
        small = cv2.resize(photo1000x800, (32, 32), interpolation=cv2.INTER_AREA)
    else:
        assert params["max_size"] == (96 if name.startswith("coates") else 300)
        small = _downscaled(photo1000x800, params["max_size"])
        assert max(small.shape[:2]) == params["max_size"]
    np.testing.assert_array_equal(features.transform([photo1000x800]), features.transform([small]))


# ----------------------------------------------------------------------------- colour
SIFT_PRESETS = ["fisher", "lazebnik_spm", "llc", "nec2010", "scspm", "vlad"]


@pytest.fixture(scope="module")
def colour32():
    """10 32x32 colour images: the class is the hue of the stripes (red-green or blue-yellow)."""
    rng = np.random.default_rng(2)
    y = np.arange(10) % 2
    stripes = ((np.arange(32) // 4) % 2).astype(float)[None, :, None]
    hues = np.where(y[:, None] == 0, [[220, 40, 40]], [[40, 40, 220]])[:, None, None, :]
    images = stripes * hues + (1 - stripes) * (255 - hues)
    images = np.broadcast_to(images, (10, 32, 32, 3)) + rng.normal(0, 10, (10, 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8), y


def _sift_encoder(features):
    return features.named_transformers["sift"] if hasattr(features, "named_transformers") else features


@pytest.mark.parametrize("name", SIFT_PRESETS)
def test_sift_presets_take_a_colour_mode(name, colour32):
    from classicvision.features import ColorSIFT, DenseSIFT

    images, y = colour32
    assert preset_params(name)["color"] == "gray"
    gray_pipe = make_preset(name)
    extractor = gray_pipe.get_params()["features__sift__extractor" if name == "nec2010" else "features__extractor"]
    assert type(extractor) is DenseSIFT  # the default is the paper's gray SIFT, as before
    assert make_preset(name, color="gray").get_params().keys() == gray_pipe.get_params().keys()
    widths = {}
    for color in ("gray", "opponent", "rgb"):
        pipe = make_preset(name, dataset="cifar10", color=color, random_state=0, **CIFAR[name])
        pipe.fit(images, y)  # the whole pipeline trains on them
        features = pipe.steps[0][1]
        fitted = _sift_encoder(features).extractor_
        assert (type(fitted) is DenseSIFT) == (color == "gray")
        if color != "gray":
            assert isinstance(fitted, ColorSIFT) and fitted.color == color
        assert fitted.n_features_out_ == (128 if color == "gray" else 384)
        X = features.transform(images)
        assert X.ndim == 2 and X.shape[0] == len(images) and np.all(np.isfinite(X))
        widths[color] = X.shape[1]
    assert widths["opponent"] == widths["rgb"] == widths["gray"]  # PCA / codebook absorb the 3x wider SIFT
    with pytest.raises(ValueError, match="color must be 'gray', 'opponent' or 'rgb'"):
        make_preset(name, color="hsv")


def test_linear_svm_presets_are_reproducible_with_random_state():
    """liblinear (the LinearSVM path at few samples) gets the preset's seed: refits agree."""
    from classicvision.datasets import load_digits_images

    d = load_digits_images(split="train")
    X, y = d.images[:40], d.target[:40]
    coefs = [make_preset("lbp_svm", random_state=0).fit(X, y).named_steps["svm"].coef_ for _ in range(3)]
    assert coefs[0].shape[1] > len(X)  # more features than samples: where liblinear varies unseeded
    np.testing.assert_array_equal(coefs[0], coefs[1])
    np.testing.assert_array_equal(coefs[0], coefs[2])


def test_max_descriptors_of_a_preset_is_the_image_encoders_pool_and_exists_once():
    """``max_descriptors`` of a preset: the descriptors kept to fit on (the ImageEncoder's
    ``fit_descriptors``); the encoder's own ``max_descriptors`` is the sample it fits on."""
    pipe = make_preset("lazebnik_spm", max_descriptors=1234)
    params = pipe.get_params()
    assert params["features__fit_descriptors"] == 1234
    assert "features__max_descriptors" not in params
    assert params["features__encoder__max_descriptors"] == 100_000
    pipe = make_preset("nec2010", max_descriptors=4321)
    assert pipe.get_params()["features__sift__fit_descriptors"] == 4321


def test_nec2010_super_vector_and_llc_share_one_hog_extraction(digits48):
    """``coding="supervector+llc"``: one extraction per HOG scale feeds both coders, and
    the features equal those of a super-vector and an LLC channel extracting on their own."""
    from classicvision.encoding import LLC, ImageEncoder, SuperVector

    Xtr, ytr = digits48[0][:60], digits48[1][:60]
    pipe = make_preset("nec2010", dataset="imagenet", n_words=4, hog_cells=(8,), fit_images=0.5, random_state=0)
    features = pipe.named_steps["features"].fit(Xtr, ytr)
    got = features.transform(Xtr)
    hog = dict(features.transformer_list)["hog8"]
    sv, llc = (ImageEncoder(clone(hog.extractor), coder, fit_images=0.5, random_state=0).fit(Xtr, ytr)
               for coder in (SuperVector(n_words=4, pyramid=hog.encoder.transformer_list[0][1].pyramid,
                                         random_state=0),
                             LLC(n_words=4, pyramid=hog.encoder.transformer_list[1][1].pyramid, random_state=0)))
    want = np.hstack([sv.transform(Xtr), llc.transform(Xtr)])
    np.testing.assert_array_equal(got[:, : want.shape[1]], want)
    assert got.shape[1] == want.shape[1] + dict(features.transformer_list)["lbp"].n_features_out_


def test_nec2010_imagenet_setting_follows_the_paper():
    pipe = make_preset("nec2010", dataset="imagenet")
    names = [n for n, _ in pipe.named_steps["features"].transformer_list]
    assert names == ["hog8", "hog16", "lbp"]  # HOG at two scales, LBP
    union = dict(pipe.named_steps["features"].transformer_list)
    # super-vector and LLC (LCC's fast approximation) coding of the same HOG descriptors
    coders = dict(union["hog8"].encoder.transformer_list)
    assert [type(c).__name__ for c in coders.values()] == ["SuperVector", "LLC"]
    assert union["hog16"].extractor.pixels_per_cell == 16
    assert union["hog16"].fit_images == 0.1  # codebooks from a tenth of the training images
    assert union["lbp"].encoder.pyramid.levels == (1, 2, (3, 1))
    assert pipe.named_steps["svm"].solver == "minibatch-asgd"
    assert PRESETS["nec2010"]["published"]["imagenet"]["metric"] == "top5"
    # the default (no dataset) keeps the SIFT + LBP super-vector recipe
    default = make_preset("nec2010")
    assert [n for n, _ in default.named_steps["features"].transformer_list] == ["sift", "lbp"]
    with pytest.raises(ValueError, match="descriptor"):
        make_preset("nec2010", descriptor="surf")
    with pytest.raises(ValueError, match="coding"):
        make_preset("nec2010", coding="lcc")
