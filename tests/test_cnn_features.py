"""Tests of cnn.CNNFeatures: a CNN's pooled penultimate features as a scikit-learn transformer.

Small fits only: ``small_convnet`` for 2 epochs on 500 of the bundled 8x8 digits.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from classicvision.datasets import load_digits_images
from classicvision.kernels import LinearSVM
from cnn import CNNClassifier, CNNFeatures, create_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")

N_TRAIN = 500


@pytest.fixture(scope="module")
def digits():
    tr = load_digits_images(split="train")
    te = load_digits_images(split="test")
    return tr.images[:N_TRAIN], tr.target[:N_TRAIN], te.images, te.target


@pytest.fixture(scope="module")
def fitted(digits):
    X, y, _, _ = digits
    return CNNFeatures(model="small_convnet", epochs=2, random_state=0).fit(X, y)


def test_pipeline_with_linear_svm_fits_and_scores_above_chance(digits):
    X, y, Xt, yt = digits
    pipe = make_pipeline(CNNFeatures(model="small_convnet", epochs=2, random_state=0), LinearSVM())
    score = pipe.fit(X, y).score(Xt, yt)
    assert score > 0.5  # 10 classes: chance is 0.1
    feats = pipe[0].transform(Xt[:7])
    assert feats.shape == (7, 128) and feats.dtype == np.float32  # small_convnet: 4 x width 32
    assert pipe[0].n_features_out_ == 128


def test_shapes_attributes_and_feature_names(fitted, digits):
    X, y, Xt, _ = digits
    assert fitted.input_size_ == 8 and fitted.in_chans_ == 1
    assert fitted.device_ == torch.device("cpu")
    assert len(fitted.mean_) == len(fitted.std_) == 1
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))
    assert len(fitted.history_) == 2
    assert not fitted.model_.training
    names = fitted.get_feature_names_out()
    assert names.shape == (128,) and names[0] == "cnnfeatures0" and names[-1] == "cnnfeatures127"
    feats = fitted.transform(list(Xt[:5]))  # a list of images works as the array does
    np.testing.assert_array_equal(feats, fitted.transform(Xt[:5]))
    assert np.isfinite(feats).all()


def test_features_are_the_networks_pre_logits(fitted, digits):
    Xt = digits[2][:6]
    x = (torch.from_numpy(Xt).float()[:, None] / 255 - fitted.mean_[0]) / fitted.std_[0]
    with torch.no_grad():
        ref = fitted.model_.forward_head(fitted.model_.forward_features(x), pre_logits=True)
        logits = fitted.model_(x)
    np.testing.assert_allclose(fitted.transform(Xt), ref.numpy(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fitted.model_.fc(ref), logits)


def test_deterministic_with_a_seed(fitted, digits):
    X, y, Xt, _ = digits
    again = CNNFeatures(model="small_convnet", epochs=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(again.transform(Xt[:20]), fitted.transform(Xt[:20]))
    other = CNNFeatures(model="small_convnet", epochs=2, random_state=1).fit(X, y)
    assert not np.array_equal(other.transform(Xt[:20]), fitted.transform(Xt[:20]))


def test_pooled_layer_differs_from_pre_logits_where_the_head_has_hidden_layers(tmp_path, digits):
    X, _, Xt, _ = digits
    torch.manual_seed(0)
    path = tmp_path / "vgg.pth"
    torch.save(create_model("vgg_bn_drop", 10).state_dict(), path)
    pooled = CNNFeatures(model="vgg_bn_drop", pretrained=path, train=False, layer="pooled", input_size=32)
    pre = clone(pooled).set_params(layer="pre_logits")
    a, b = pooled.fit(X[:20]).transform(Xt[:3]), pre.fit(X[:20]).transform(Xt[:3])
    assert a.shape == b.shape == (3, 512)
    assert not np.allclose(a, b)  # the two FC-512 layers lie between them
    assert pooled.in_chans_ == 3  # the weights' first convolution takes 3 channels; gray is replicated


def test_frozen_pretrained_network_from_a_saved_classifier(tmp_path, digits):
    X, y, Xt, _ = digits
    clf = CNNClassifier(model="small_convnet", epochs=1, flip=False, random_state=0).fit(X[:200], y[:200])
    path = tmp_path / "clf.pt"
    clf.save(path)
    frozen = CNNFeatures(model="small_convnet", pretrained=path, train=False).fit(X[:10])
    # the normalization and channels saved with the classifier are used, and every layer but the head is loaded
    assert frozen.mean_ == pytest.approx(clf.mean_) and frozen.in_chans_ == clf.in_chans_ == 1
    assert set(frozen.pretrained_report_["skipped"]) == {"fc.weight", "fc.bias"}
    assert frozen.pretrained_report_["file"] == str(path)
    assert frozen.classes_ is None and frozen.history_ == []
    x = (torch.from_numpy(Xt[:4]).float()[:, None] / 255 - clf.mean_[0]) / clf.std_[0]
    with torch.no_grad():
        ref = clf.model_.forward_head(clf.model_.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(frozen.transform(Xt[:4]), ref, rtol=1e-5, atol=1e-5)


def test_pickle_stores_arrays_and_rebuilds_the_network(fitted, digits):
    Xt = digits[2][:8]
    state = fitted.__getstate__()
    assert isinstance(state["model_"]["state_dict"]["fc.weight"], np.ndarray)
    assert not any(isinstance(v, (torch.nn.Module, torch.Tensor)) for v in state.values())
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.transform(Xt), fitted.transform(Xt))
    assert back.device_ == fitted.device_ and not back.model_.training


def test_skops_round_trip(fitted, digits):
    sio = pytest.importorskip("skops.io")
    Xt = digits[2][:8]
    data = sio.dumps(fitted)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == ["cnn.features.CNNFeatures"]  # numpy arrays and plain containers besides
    back = sio.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(back.transform(Xt), fitted.transform(Xt))


def test_clone_and_params():
    est = CNNFeatures(model="resnet20", epochs=3, layer="pooled", random_state=4)
    params = clone(est).get_params()
    assert params["model"] == "resnet20" and params["epochs"] == 3 and params["layer"] == "pooled"
    assert params["train"] is True and params["pretrained"] is None


def test_errors_are_clear(digits, tmp_path):
    X, y, _, _ = digits
    with pytest.raises(ValueError, match="needs labels y"):
        CNNFeatures(epochs=1).fit(X[:10])
    with pytest.raises(ValueError, match="train=False.*pretrained"):
        CNNFeatures(train=False).fit(X[:10])
    with pytest.raises(ValueError, match="layer"):
        CNNFeatures(layer="fc9").fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="unknown model 'smal_convnet'"):
        CNNFeatures(model="smal_convnet", epochs=1).fit(X[:10], y[:10])
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        CNNFeatures(pretrained=tmp_path / "nothere.pt", train=False).fit(X[:10])
    with pytest.raises(ValueError, match=r"must not repeat.*\['epochs'\]"):
        CNNFeatures(classifier_params={"epochs": 3}).fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="device must be"):
        CNNFeatures(pretrained=tmp_path / "x.pt", train=False, device="gpu0").fit(X[:10])
    with pytest.raises(TypeError, match="images must be"):
        CNNFeatures().fit("images", y)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CNNFeatures().transform(X[:2])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_for_without_cuda(digits, tmp_path):
    with pytest.raises(ValueError, match="device='cuda' was asked for but CUDA is not available"):
        CNNFeatures(pretrained=tmp_path / "x.pt", train=False, device="cuda").fit(digits[0][:10])


def test_transformer_contract_and_grid_search(digits):
    from sklearn.model_selection import GridSearchCV

    X, y = digits[0][:120], digits[1][:120]
    est = CNNFeatures(model="small_convnet", epochs=1, random_state=0)
    tags = est.__sklearn_tags__()
    assert tags.input_tags.two_d_array is False and tags.input_tags.three_d_array is True
    params = est.get_params()
    out = est.fit(X, y).transform(X)
    assert est.get_params() == params  # fit does not touch the public parameters
    np.testing.assert_array_equal(clone(est).fit_transform(X, y), out)  # fit_transform == fit + transform
    pipe = make_pipeline(CNNFeatures(model="small_convnet", epochs=1, random_state=0), LinearSVM())
    search = GridSearchCV(pipe, {"linearsvm__C": [0.1, 1.0]}, cv=2).fit(X, y)
    assert search.best_params_["linearsvm__C"] in (0.1, 1.0)
    assert search.predict(X[:5]).shape == (5,)
