"""Presets: registry, overrides, and every preset fitted end to end at small scale."""

import pickle

import cv2
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from classicvision.datasets import load_digits_images
from classicvision.presets import PRESETS, make_preset, preset_names

EXPECTED = {"hog_svm", "lbp_svm", "lazebnik_spm", "scspm", "llc", "fisher", "vlad",
            "coates_kmeans", "nec2010"}

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
        for dataset, top1 in info["published"].items():
            assert dataset in {"cifar10", "scene15"} and 0 < top1 < 1


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


def test_too_small_images_are_named_in_the_error():
    tiny = np.zeros((4, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="image 0 .*8x8"):
        make_preset("lazebnik_spm", n_words=2).fit(tiny, [0, 1, 0, 1])
