"""MirrorAugmented: training on mirror images, test-time averaging, scikit-learn behaviour."""

import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from classicvision.augment import MirrorAugmented, MirrorSymmetric, mirror_images, with_mirrors


def _flatten(images):
    return np.array([np.asarray(im, np.float64).ravel() for im in images])


class _LeftRight(ClassifierMixin, BaseEstimator):
    """Scores an image by its left-half minus right-half brightness; records what it saw."""

    def fit(self, X, y):
        self.seen_ = [np.asarray(im).copy() for im in X]
        self.seen_y_ = np.asarray(y)
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        return np.array([im[:, : im.shape[1] // 2].mean() - im[:, im.shape[1] // 2 :].mean() for im in X])

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(40, 8, 10, 3), dtype=np.uint8)
    y = np.repeat([0, 1], 20)
    X[y == 1, :4] //= 4  # class 1: darker top half (a mirror-symmetric difference)
    return X, y


def test_fit_sees_every_image_and_its_mirror(images):
    X, y = images
    clf = MirrorAugmented(_LeftRight()).fit(X, y)
    assert len(clf.estimator_.seen_) == 80
    np.testing.assert_array_equal(clf.estimator_.seen_[40 + 3], X[3][:, ::-1])
    np.testing.assert_array_equal(clf.estimator_.seen_y_, np.concatenate([y, y]))
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert not hasattr(clf.estimator, "seen_")  # the given estimator is cloned, not fitted


def test_test_time_averaging(images):
    X, y = images
    inner = _LeftRight().fit(X, y)
    tta = MirrorAugmented(_LeftRight(), test_time=True).fit(X, y)
    plain = MirrorAugmented(_LeftRight(), test_time=False).fit(X, y)
    d = inner.decision_function(X)
    d_mirror = inner.decision_function(mirror_images(X))
    np.testing.assert_allclose(plain.decision_function(X), d)
    np.testing.assert_allclose(tta.decision_function(X), 0.5 * (d + d_mirror))
    # a left-right antisymmetric score averages to zero over an image and its mirror
    np.testing.assert_allclose(tta.decision_function(X), 0, atol=1e-12)
    np.testing.assert_array_equal(plain.predict(X), inner.predict(X))


def test_public_pieces_give_what_fit_and_predict_give(images):
    """with_mirrors, from_fitted and average_mirrored: fitting the steps outside the
    wrapper (as bench does, to cache features) gives the wrapper's own results."""
    X, y = images
    Xa, ya = with_mirrors(X, y)
    assert isinstance(Xa, np.ndarray) and Xa.shape == (80, 8, 10, 3)
    np.testing.assert_array_equal(Xa[40 + 5], X[5][:, ::-1])
    np.testing.assert_array_equal(ya, np.concatenate([y, y]))
    as_list = with_mirrors(list(X))
    assert isinstance(as_list, list) and len(as_list) == 80
    np.testing.assert_array_equal(as_list[41], X[1][:, ::-1])

    own = MirrorAugmented(_LeftRight()).fit(X, y)
    built = MirrorAugmented.from_fitted(_LeftRight().fit(Xa, ya))
    np.testing.assert_array_equal(built.classes_, own.classes_)
    np.testing.assert_array_equal(built.decision_function(X), own.decision_function(X))
    scores = built.estimator_.decision_function(with_mirrors(X))
    np.testing.assert_array_equal(MirrorAugmented.average_mirrored(scores), own.decision_function(X))
    with pytest.raises(ValueError, match="pairs"):
        MirrorAugmented.average_mirrored(np.zeros(3))
    with pytest.raises(Exception, match="not fitted"):
        MirrorAugmented.from_fitted(_LeftRight())


def test_multiclass_pipeline_clone_pickle_and_cross_validation(images):
    X, y = images
    y3 = np.arange(40) % 3
    pipe = make_pipeline(FunctionTransformer(_flatten), LogisticRegression(max_iter=200))
    clf = MirrorAugmented(pipe).fit(X, y3)
    proba = clf.predict_proba(X)
    assert proba.shape == (40, 3)
    np.testing.assert_allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[np.argmax(clf.decision_function(X), 1)])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))
    params = clone(clf).get_params()
    assert params["test_time"] is True and "estimator__logisticregression__C" in params
    scores = cross_val_score(MirrorAugmented(pipe), X, y, cv=2)
    assert scores.shape == (2,) and (scores > 0.9).all()  # the top half is darker for class 1


def test_errors_name_the_problem(images):
    X, y = images
    with pytest.raises(ValueError, match="40 images but 39 labels"):
        MirrorAugmented(_LeftRight()).fit(X, y[:-1])
    with pytest.raises(ValueError, match="empty"):
        MirrorAugmented(_LeftRight()).fit([], [])
    with pytest.raises(AttributeError):
        MirrorAugmented(_LeftRight()).fit(X, y).predict_proba(X)  # the inner model has none


class _Columns(BaseEstimator):
    """Features: the column means of an image (not mirror-invariant); records what it was fitted on."""

    def fit(self, X, y=None):
        self.n_fit_ = len(X)
        self.fit_y_ = None if y is None else np.asarray(y)
        self.n_features_out_ = np.asarray(X[0]).shape[1]
        return self

    def transform(self, X):
        return np.array([np.asarray(im, np.float32).mean(axis=(0, 2)) for im in X])


def test_mirror_symmetric_sums_image_and_mirror(images):
    X, y = images
    sym = MirrorSymmetric(_Columns()).fit(X, y)
    F = sym.transform(X)
    cols = _Columns().transform(X)
    np.testing.assert_allclose(F, cols + cols[:, ::-1], rtol=1e-6)
    np.testing.assert_array_equal(sym.transform(mirror_images(X)), F)  # exactly invariant
    assert sym.n_features_out_ == 10
    assert sym.transformer_.n_fit_ == 80  # fitted on the images and their mirrors
    np.testing.assert_array_equal(sym.transformer_.fit_y_, np.concatenate([y, y]))
    assert not hasattr(sym.transformer, "n_fit_")
    assert MirrorSymmetric(_Columns(), fit_mirrors=False).fit(X).transformer_.n_fit_ == 40
    with pytest.raises(ValueError, match="40 images but 39 labels"):
        MirrorSymmetric(_Columns()).fit(X, y[:-1])


def test_mirror_symmetric_contract(images):
    from classicvision.encoding import BagOfWords, ImageEncoder
    from classicvision.features import RawPatches

    X, y = images
    enc = ImageEncoder(RawPatches(patch_size=4, step=2, normalize=False), BagOfWords(n_words=6, random_state=0))
    sym = MirrorSymmetric(enc)
    assert clone(sym).get_params()["transformer__encoder__n_words"] == 6
    F = sym.fit(X).transform(X)
    np.testing.assert_array_equal(clone(sym).fit(X).transform(X), F)  # reproducible with random_state
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(sym)).transform(X), F)
    assert len(sym.get_feature_names_out()) == F.shape[1]
    pipe = make_pipeline(MirrorSymmetric(enc), LogisticRegression(max_iter=500))
    assert cross_val_score(pipe, X, y, cv=2).mean() > 0.8
